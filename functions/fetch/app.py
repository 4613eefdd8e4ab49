"""Fetch function: run by a mailbox's EventBridge Scheduler schedule with {"mailbox": NAME}."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailintake.fetching import fetch_scheduled, mailbox_prefix
from mailintake.runtime import Runtime
from mailintake.telemetry import put_metric

logger = Logger()
# Only botocore is patched (boto3 and pynamodb go through it): patching every library the X-Ray SDK knows
# imports requests, sqlite3 and others at every cold start (about 40 ms) for calls this code never makes.
tracer = Tracer(patch_modules=("botocore",))
metrics = Metrics()
# This container's state, for its lifetime: built once, when Lambda imports the handler.
runtime = Runtime.from_environment()
settings = runtime.settings


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Logged here rather than by inject_lambda_context(log_event=True): after the correlation id is set.
    logger.set_correlation_id(mailbox_prefix(str(event.get("mailbox", ""))))
    # DEBUG: most runs find no mail, and "fetch finished" names the mailbox; a line less in every idle run.
    logger.debug("fetch event", extra={"event": event})
    report = fetch_scheduled(event, runtime, context.get_remaining_time_in_millis, context.aws_request_id,
                             logger.set_correlation_id)
    # Per mailbox for the dashboard (one line per mailbox); the two counts without a Mailbox dimension for
    # the alarms, which cannot name mailboxes added after deployment (mailintake.health says why).
    metrics.add_dimension(name="Mailbox", value=report.mailbox)
    metrics.add_metric(name="MessagesFetched", unit=MetricUnit.Count, value=report.fetched)
    put_metric("FetchRuns", MetricUnit.Count, 1, Mailbox=report.mailbox, Status=report.status)
    for name, count in (("MailboxesFailing", report.mailboxes_failing),
                        ("MailboxesOverdue", report.mailboxes_overdue)):
        if count is not None:
            put_metric(name, MetricUnit.Count, count)
    logger.set_correlation_id(mailbox_prefix(report.mailbox))  # the run's own line, not its last mail's
    logger.info("fetch finished", extra={"mailbox": report.mailbox, "fetched": report.fetched,
                                          "status": report.status, "error": report.error})
    return asdict(report)
