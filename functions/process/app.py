"""Process function: consumes the intake queue (FIFO, batches, partial failures reported)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailintake.handover import key_of
from mailintake.processing import deadline_for, process_queued
from mailintake.runtime import Runtime
from mailintake.telemetry import put_metric

logger = Logger()
tracer = Tracer()
metrics = Metrics()
# This container's state, for its lifetime: built once, when Lambda imports the handler.
runtime = Runtime.from_environment()
settings = runtime.settings
# FIFO: after a failure the rest of that message group (one conversation) is returned unprocessed, keeping
# its order; other conversations in the batch go on, so one poisoned mail cannot take them to the DLQ.
processor = SqsFifoPartialProcessor(skip_group_on_error=True)


def count_mail(mailbox: str, status: str) -> None:
    """Per mailbox and outcome for the dashboard (a metric of its own: a batch mixes mailboxes); failed mail
    also without a Mailbox dimension, which its alarm watches."""
    put_metric("Mails", MetricUnit.Count, 1, Mailbox=mailbox or "(unknown)", Outcome=status)
    if status == "failed":
        metrics.add_metric(name="MailsFailed", unit=MetricUnit.Count, value=1)


@tracer.capture_method
def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> str:
    # Every log line about this mail carries its raw mail's key, as the fetch function's lines about it do.
    key, mailbox = key_of(record.body)
    logger.set_correlation_id(key)
    # Each mail's deadline: its budget, or what this invocation has left after the mails before it.
    deadline = deadline_for(settings, lambda_context.get_remaining_time_in_millis() / 1000)
    try:
        outcome = process_queued(record.body, int(record.attributes.approximate_receive_count or 1), runtime,
                                 deadline)
    except Exception:
        count_mail(mailbox, "failed")  # recorded failed in the ledger, retried by the queue
        raise
    count_mail(outcome.mailbox, outcome.status)
    if outcome.latency_seconds is not None:
        put_metric("ArrivalToItemSeconds", MetricUnit.Seconds, outcome.latency_seconds, Mailbox=outcome.mailbox)
    logger.info("message processed", extra={"outcome": outcome.outcome, "status": outcome.status,
                                            "mailbox": outcome.mailbox, "latency_seconds": outcome.latency_seconds})
    return outcome.outcome


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    logger.set_correlation_id(None)  # lines before the first mail belong to no mail
    return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                    context=context)
