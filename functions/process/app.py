"""Process function: consumes the intake queue (FIFO, batches, partial failures reported)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailintake.batches import BatchFailed, GroupSkipped, QueuedRecord, process_batch
from mailintake.handover import key_of
from mailintake.processing import Outcome
from mailintake.runtime import Runtime
from mailintake.telemetry import put_metric

logger = Logger()
# Only botocore is patched (boto3 and pynamodb go through it): patching every library the X-Ray SDK knows
# imports requests, sqlite3 and others at every cold start (about 40 ms) for calls this code never makes.
tracer = Tracer(patch_modules=("botocore",))
metrics = Metrics()
# This container's state, for its lifetime: built once, when Lambda imports the handler.
runtime = Runtime.from_environment()


def count_mail(mailbox: str, status: str) -> None:
    """Per mailbox and outcome for the dashboard (a metric of its own: a batch mixes mailboxes); failed mail
    also without a Mailbox dimension, which its alarm watches."""
    put_metric("Mails", MetricUnit.Count, 1, Mailbox=mailbox or "(unknown)", Outcome=status)
    if status == "failed":
        metrics.add_metric(name="MailsFailed", unit=MetricUnit.Count, value=1)


def report(record: dict[str, Any], result: Outcome | Exception) -> bool:
    """Log and count one record's result (its lines carry its raw mail's key); whether it succeeded."""
    key, mailbox = key_of(record["body"])
    logger.set_correlation_id(key)
    if isinstance(result, GroupSkipped):
        logger.info("message returned unprocessed", extra={"reason": str(result)})
        return False
    if isinstance(result, Exception):
        count_mail(mailbox, "failed")  # recorded failed in the ledger, retried by the queue
        return False
    count_mail(result.mailbox, result.status)
    if result.latency_seconds is not None:
        put_metric("ArrivalToItemSeconds", MetricUnit.Seconds, result.latency_seconds, Mailbox=result.mailbox)
    logger.info("message processed", extra={"outcome": result.outcome, "status": result.status,
                                            "mailbox": result.mailbox, "latency_seconds": result.latency_seconds})
    return True


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, list[dict[str, str]]]:
    logger.set_correlation_id(None)  # lines before the first mail belong to no mail
    # The event's records as Lambda's SQS event source sends them (read as plain dicts: Powertools' data
    # classes and batch utility would add ~100 ms to every cold start for three fields).
    records: list[dict[str, Any]] = event["Records"]
    queued = [QueuedRecord(r["body"], int(r.get("attributes", {}).get("ApproximateReceiveCount") or 1),
                           r.get("attributes", {}).get("MessageGroupId") or r["messageId"]) for r in records]
    results = process_batch(queued, runtime, lambda: context.get_remaining_time_in_millis() / 1000,
                            logger.set_correlation_id)
    failed = [(record, result) for record, result in zip(records, results, strict=True)
              if not report(record, result)]
    logger.set_correlation_id(None)
    if records and len(failed) == len(records):
        raise BatchFailed([result for _, result in failed if isinstance(result, Exception)])
    return {"batchItemFailures": [{"itemIdentifier": record["messageId"]} for record, _ in failed]}
