"""Metrics with dimensions of their own, beside the handler's Powertools ``Metrics`` (CloudWatch EMF).

The handler's ``Metrics`` puts one set of dimensions on everything it flushes, while a fetch run reports
both per mailbox (for the dashboard) and for the whole stack (for the alarms), and a batch of queued mail
mixes mailboxes. Powertools' ``single_metric`` would serve, but it prints even with
POWERTOOLS_METRICS_DISABLED set (the local runner and the tests set it); ``EphemeralMetrics`` keeps its own
metric set, honours that switch, and adds the ``service`` dimension as the handler's metrics do.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit


def put_metric(name: str, unit: MetricUnit, value: float, **dimensions: str) -> None:
    """One metric value with ``dimensions`` (besides ``service``), written at once as one EMF line."""
    metric = EphemeralMetrics()
    for key, dimension in dimensions.items():
        metric.add_dimension(name=key, value=dimension)
    metric.add_metric(name=name, unit=unit, value=value)
    metric.flush_metrics()
