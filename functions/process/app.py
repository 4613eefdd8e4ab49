"""Process function: consumes the intake queue (FIFO, batches, partial failures reported)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailintake.processing import deadline_for, process_queued
from mailintake.runtime import Runtime

logger = Logger()
tracer = Tracer()
metrics = Metrics()
# This container's state, for its lifetime: built once, when Lambda imports the handler.
runtime = Runtime.from_environment()
settings = runtime.settings
# FIFO: after a failure the rest of that message group (one conversation) is returned unprocessed, keeping
# its order; other conversations in the batch go on, so one poisoned mail cannot take them to the DLQ.
processor = SqsFifoPartialProcessor(skip_group_on_error=True)


@tracer.capture_method
def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> str:
    # Each mail's deadline: its budget, or what this invocation has left after the mails before it.
    deadline = deadline_for(settings, lambda_context.get_remaining_time_in_millis() / 1000)
    outcome = process_queued(record.body, int(record.attributes.approximate_receive_count or 1), runtime, deadline)
    metrics.add_metric(name=f"Outcome_{outcome.status}", unit=MetricUnit.Count, value=1)
    logger.info("message processed", extra={"outcome": outcome.outcome, "status": outcome.status})
    return outcome.outcome


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                    context=context)
