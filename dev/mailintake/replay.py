"""Replay: run stored raw mails through processing again, and move dead letters back to the intake queue.

The raw mail in S3 is the durable copy of everything fetched, so a mail whose processing failed (a bug
since fixed, a script error, a service outage) can be processed again from it. Processing is idempotent
(the item, its message-id record and its ledger record are one transaction), and a mail whose ledger
outcome is final is left as it is: replaying never makes a second item or comment.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from botocore.exceptions import ClientError

from mailintake.aws_clients import client
from mailintake.bounds import Deadline
from mailintake.handover import QueuedMessage
from mailintake.outcomes import FINAL
from mailintake.processing import Processor
from mailintake.runtime import Runtime
from mailintake.settings import Settings
from mailintake.store import LedgerRecord, get_ledger, list_ledger


@dataclass(frozen=True)
class Replayed:
    key: str
    action: str  # reprocessed | accepted | unchanged | failed | missing
    status: str  # the ledger status afterwards ("" when there is none)
    outcome: str


def failed_keys() -> list[str]:
    return [r.key for r in list_ledger() if r.status == "failed"]


def _job(settings: Settings, key: str, ledger: LedgerRecord | None) -> QueuedMessage:
    """The queue message the fetch function made for ``key``, rebuilt from the stored object.

    Never inline: processing then streams the raw mail from S3, whatever its size.
    """
    s3 = client("s3", settings.region)
    head = s3.head_object(Bucket=settings.bucket, Key=key)
    metadata = head.get("Metadata", {})
    sha256 = metadata.get("sha256")
    if not sha256:  # stored by something other than the fetch function: hash it, streaming
        digest = hashlib.sha256()
        with s3.get_object(Bucket=settings.bucket, Key=key)["Body"] as body:
            for chunk in iter(lambda: body.read(1 << 16), b""):
                digest.update(chunk)
        sha256 = digest.hexdigest()
    mailbox = (ledger.mailbox if ledger is not None else "") or metadata.get("mailbox") or _mailbox_of(key)
    return QueuedMessage(settings.bucket, key, mailbox, sha256, int(head["ContentLength"]))


def _mailbox_of(key: str) -> str:
    # raw/<mailbox>/<...>: the layout fetching.raw_key writes.
    parts = key.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "raw" else ""


def reprocess(settings: Settings, keys: list[str], budget: float | None = None) -> list[Replayed]:
    """Process the stored raw mails ``keys`` again; final outcomes are left as they are.

    Each mail gets ``budget`` seconds (default: the processing budget setting); a mail recorded as over
    budget can be given more here, where no Lambda timeout applies.
    """
    processor = Processor(Runtime(settings))
    results = []
    for key in keys:
        ledger = get_ledger(key)
        if ledger is not None and ledger.status in FINAL:
            results.append(Replayed(key, "unchanged", ledger.status, ledger.outcome))
            continue
        try:
            job = _job(settings, key, ledger)
        except ClientError as exc:
            results.append(Replayed(key, "missing", ledger.status if ledger else "",
                                    f"raw mail not readable: {exc.response.get('Error', {}).get('Code', exc)}"))
            continue
        # A later attempt than any recorded: process() first re-checks the ledger for a final outcome,
        # which covers a concurrent replay or a redelivery that finished meanwhile.
        attempt = int(ledger.attempts) + 1 if ledger is not None else 1
        deadline = Deadline.after(budget if budget is not None else settings.processing_budget_seconds)
        try:
            outcome = processor.process(job, attempt, deadline=deadline)
        except Exception as exc:  # recorded in the ledger as failed by process()
            results.append(Replayed(key, "failed", "failed", f"{type(exc).__name__}: {exc}"[:500]))
            continue
        results.append(Replayed(key, "reprocessed", outcome.status, outcome.outcome))
    return results


# Discards an admin may override: machine-made mail and filter-list matches. A duplicate stays one.
ACCEPTABLE_STEPS = frozenset({"automail", "filter"})


def discarded_keys() -> list[str]:
    return [r.key for r in list_ledger() if r.status == "discarded" and r.step in ACCEPTABLE_STEPS]


def accept(settings: Settings, keys: list[str]) -> list[Replayed]:
    """File discarded mails after all: each is judged again without its automail or filter-list discard.

    The other rules still apply (a guard script, permissions), and the mail is never answered
    automatically. Processing writes the item and overwrites the discarded ledger record in one
    transaction, so accepting twice makes one item.
    """
    processor = Processor(Runtime(settings))
    results = []
    for key in keys:
        ledger = get_ledger(key)
        if ledger is None or ledger.status != "discarded" or ledger.step not in ACCEPTABLE_STEPS:
            status = ledger.status if ledger is not None else ""
            why = "not recorded" if ledger is None else f"{ledger.outcome} (only a mail discarded as machine-made" \
                " or by a filter list can be accepted; use `messages reprocess` for failed mail)"
            results.append(Replayed(key, "unchanged", status, why))
            continue
        try:
            job = _job(settings, key, ledger)
        except ClientError as exc:
            results.append(Replayed(key, "missing", ledger.status,
                                    f"raw mail not readable: {exc.response.get('Error', {}).get('Code', exc)}"))
            continue
        try:
            outcome = processor.process(job, int(ledger.attempts) + 1, admitted_over=ledger.outcome)
        except Exception as exc:  # recorded in the ledger as failed by process()
            results.append(Replayed(key, "failed", "failed", f"{type(exc).__name__}: {exc}"[:500]))
            continue
        results.append(Replayed(key, "accepted", outcome.status, outcome.outcome))
    return results


@dataclass(frozen=True)
class Redriven:
    message_id: str
    key: str


def redrive(settings: Settings, limit: int | None = None) -> list[Redriven]:
    """Move the dead-letter queue's messages back to the intake queue (each sent, then deleted).

    A message is deleted from the DLQ only after the intake queue took it, so a crash in between leaves
    a copy in both, which processing absorbs. Each gets a new deduplication id: the original one may
    still be inside SQS's five-minute deduplication window, which would drop it silently.
    """
    sqs = client("sqs", settings.region)
    moved: list[Redriven] = []
    while limit is None or len(moved) < limit:
        batch = sqs.receive_message(
            QueueUrl=settings.dlq_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0,
        ).get("Messages", [])
        if not batch:
            break
        room = len(batch) if limit is None else limit - len(moved)
        for message in batch[room:]:  # over the limit: back to visible at once, for the next redrive
            sqs.change_message_visibility(QueueUrl=settings.dlq_url, ReceiptHandle=message["ReceiptHandle"],
                                          VisibilityTimeout=0)
        for message in batch[:room]:
            group = message.get("Attributes", {}).get("MessageGroupId") or message["MessageId"]
            dedup = hashlib.sha256(f"redrive:{message['MessageId']}".encode()).hexdigest()
            sqs.send_message(QueueUrl=settings.queue_url, MessageBody=message["Body"], MessageGroupId=group,
                             MessageDeduplicationId=dedup)
            sqs.delete_message(QueueUrl=settings.dlq_url, ReceiptHandle=message["ReceiptHandle"])
            moved.append(Redriven(message["MessageId"], _key_of(message["Body"])))
    return moved


def _key_of(body: str) -> str:
    try:
        return QueuedMessage.from_json(body).key
    except (ValueError, KeyError, TypeError):
        return ""
