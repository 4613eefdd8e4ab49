"""Helpers for the fault and replay tests: raw mails staged in S3 and queued as the fetch function does,
the queue drained as Lambda's event source mapping does (with the knobs a fault test needs), and the
invariant every such test ends with."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from botocore.awsrequest import AWSResponse

from mailintake import store
from mailintake.aws_clients import client
from mailintake.batches import BatchFailed
from mailintake.handover import QueuedMessage, conversation_group
from mailintake.localrun import _queue_arn, invoke, run_cycle, sqs_event
from mailintake.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageTypeDef


def stage(settings: Settings, raw: bytes, mailbox: str = "faults", inline: bool = True) -> QueuedMessage:
    """Store a raw mail as the fetch function does; the queue message that points at it."""
    key = f"raw/{mailbox}/{uuid.uuid4().hex}.eml"
    client("s3", settings.region).put_object(Bucket=settings.bucket, Key=key, Body=raw)
    job = QueuedMessage.of(settings.bucket, key, mailbox, raw)
    return job if inline else dataclasses.replace(job, raw=None)


def enqueue(settings: Settings, job: QueuedMessage, group: str | None = None) -> None:
    client("sqs", settings.region).send_message(
        QueueUrl=settings.queue_url, MessageBody=job.to_json(),
        MessageGroupId=group or hashlib.sha256(job.key.encode()).hexdigest()[:64],
        MessageDeduplicationId=hashlib.sha256(job.key.encode()).hexdigest(),
    )


def record(job: QueuedMessage, receive_count: int = 1, raw: bytes | None = None) -> dict[str, Any]:
    """An SQS message as receive_message returns it (the same message id on every delivery)."""
    message_id = hashlib.sha256(job.key.encode()).hexdigest()[:32]
    return {"MessageId": message_id, "ReceiptHandle": f"{message_id}-{receive_count}", "Body": job.to_json(),
            "Attributes": {"ApproximateReceiveCount": str(receive_count),
                           "MessageGroupId": conversation_group(raw) if raw else message_id}}


def process(settings: Settings, records: Sequence[Mapping[str, Any]], instance: int = 0) -> set[str]:
    """One batch through the process handler; the ids it reported as failed."""
    try:
        result = invoke("process", sqs_event(records, _queue_arn(settings), settings.region), instance=instance)
    except BatchFailed:
        # The handler raises when every record failed: Lambda then returns the whole batch to the queue.
        return {r["MessageId"] for r in records}
    return {f["itemIdentifier"] for f in result["batchItemFailures"]}


@dataclasses.dataclass
class DrainReport:
    batches: int = 0
    failures: Counter[str] = dataclasses.field(default_factory=Counter)  # message id -> failed deliveries


def drain(settings: Settings, max_batches: int = 40) -> DrainReport:
    """Receive and process until the queue is empty, as the event source mapping does.

    Failed messages are made visible again at once (instead of after the 720 s visibility timeout), so
    maxReceiveCount is reached within the test; the queue's redrive policy then moves them to the DLQ.
    """
    sqs = client("sqs", settings.region)
    report = DrainReport()
    for _ in range(max_batches):
        received = sqs.receive_message(QueueUrl=settings.queue_url, MaxNumberOfMessages=10,
                                       AttributeNames=["All"], WaitTimeSeconds=0).get("Messages", [])
        if not received:
            return report
        report.batches += 1
        failed = process(settings, received)
        for message in received:
            if message["MessageId"] in failed:
                report.failures[message["MessageId"]] += 1
                sqs.change_message_visibility(QueueUrl=settings.queue_url, ReceiptHandle=message["ReceiptHandle"],
                                              VisibilityTimeout=0)
            else:
                sqs.delete_message(QueueUrl=settings.queue_url, ReceiptHandle=message["ReceiptHandle"])
    raise AssertionError(f"queue not drained after {max_batches} batches")


def take_over_after_a_killed_fetch(settings: Settings, mailbox: str) -> None:
    """After a fetch run was killed: its lease outlives it and locks the next run out; once it expires, the
    next scheduled cycles take over (until one fetches nothing, at most three)."""
    assert invoke("fetch", {"mailbox": mailbox})["status"] == "locked"
    lease = store.LeaseRecord.get(*store.LeaseRecord.key_for(mailbox))
    lease.update(actions=[store.LeaseRecord.expires.set(int(time.time()) - 1)])
    for _ in range(3):
        if sum(f["fetched"] for f in run_cycle(settings).fetches) == 0:
            break


def queue_bodies(settings: Settings, url: str) -> list[MessageTypeDef]:
    """Every message now visible in a queue (left visible again afterwards)."""
    sqs = client("sqs", settings.region)
    found: list[MessageTypeDef] = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"],
                                    WaitTimeSeconds=0, VisibilityTimeout=30).get("Messages", [])
        if not batch:
            break
        found.extend(batch)
    for message in found:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    return found


def recorded(key: str) -> store.LedgerRecord:
    """The ledger record of the mail stored under ``key``, which the test expects to exist."""
    found = store.get_ledger(key)
    assert found is not None, f"no ledger record for {key}"
    return found


def assert_one_outcome_each(expected: dict[str, str]) -> None:
    """The invariant: every delivered raw mail (by S3 key) has exactly one ledger outcome, the expected
    one; no raw mail made two items or two comments; no item or comment exists without its ledger record."""
    ledger = store.list_ledger()
    assert Counter(r.key for r in ledger) == Counter(set(expected)), "a mail lacks an outcome or has two"
    assert {r.key: r.status for r in ledger} == expected
    items = store.list_items()
    by_source = Counter(i.source_key for i in items)
    assert all(n == 1 for n in by_source.values()), f"a mail made two items: {by_source}"
    comments = [c for i in items for c in store.list_comments(int(i.number))]
    by_comment_source = Counter(c.source_key for c in comments)
    assert all(n == 1 for n in by_comment_source.values()), f"a mail made two comments: {by_comment_source}"
    made = {k for k, status in expected.items() if status in ("item", "comment")}
    assert set(by_source) | set(by_comment_source) == made


# --- client-side fault injection ----------------------------------------------------------------------


class _Raw:
    """Just enough of a urllib3 response for botocore to read an injected error."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, *args: Any, **kwargs: Any) -> Iterator[bytes]:
        yield self._body


THROTTLED = {
    "dynamodb": (400, {"x-amzn-RequestId": "injected", "Content-Type": "application/x-amz-json-1.0"},
                 b'{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate exceeded"}'),
    "s3": (503, {"x-amz-request-id": "injected", "Content-Type": "application/xml"},
           b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"),
}


@contextmanager
def throttled(botocore_client: Any, service: str, operation: str, times: int) -> Iterator[Callable[[], int]]:
    """Answer the next ``times`` calls of ``operation`` with the service's throttling error, on the wire.

    The error is injected below botocore's retry handler (at ``before-send``), so the client's own retry
    with backoff is what is under test. Yields a function giving the number of calls answered so far.
    """
    status, headers, body = THROTTLED[service]
    calls = {"injected": 0}

    def answer(request: Any, **kwargs: Any) -> AWSResponse | None:
        if calls["injected"] >= times:
            return None
        calls["injected"] += 1
        return AWSResponse(request.url, status, headers, _Raw(body))  # type: ignore[arg-type]

    event = f"before-send.{botocore_client.meta.service_model.service_name}.{operation}"
    botocore_client.meta.events.register_first(event, answer, unique_id=f"fault-{event}")
    try:
        yield lambda: calls["injected"]
    finally:
        botocore_client.meta.events.unregister(event, unique_id=f"fault-{event}")


# --- transaction conflicts ----------------------------------------------------------------------------


@dataclasses.dataclass
class Conflicts:
    """What :func:`conflicting` did: transactions seen, and those it cancelled, by the key that conflicted."""

    seen: int = 0
    cancelled: Counter[str] = dataclasses.field(default_factory=Counter)
    _first: set[str] = dataclasses.field(default_factory=set)  # kinds cancelled once already for sure
    _held: dict[str, int] = dataclasses.field(default_factory=dict)  # key -> thread whose transaction is in flight
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


def _transaction_keys(body: bytes) -> list[str]:
    """The table keys of a TransactWriteItems request's operations, in the order DynamoDB reports on them."""
    keys = []
    for operation in json.loads(body)["TransactItems"]:
        ((_, action),) = operation.items()
        key = action["Key"] if "Key" in action else {k: action["Item"][k] for k in ("pk", "sk")}
        keys.append(f"{key['pk']['S']}|{key['sk']['S']}")
    return keys


def _cancelled(keys: list[str], conflicting: set[int]) -> bytes:
    reasons = [{"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
               if i in conflicting else {"Code": "None"} for i in range(len(keys))]
    summary = ", ".join(r["Code"] for r in reasons)
    return json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                       "Message": f"Transaction cancelled, please refer cancellation reasons for specific reasons "
                                  f"[{summary}]", "CancellationReasons": reasons}).encode()


@contextmanager
def conflicting(botocore_client: Any, share: float, seed: int = 16) -> Iterator[Conflicts]:
    """Cancel transactions as DynamoDB does when another transaction is writing one of their items.

    moto applies transactions one at a time and never reports a conflict, so it is made here, on the wire
    (at ``before-send``, below botocore's retry handler: the real client code sees the real error body):
    - as DynamoDB would: a transaction touching a key that another transaction of this process has in
      flight (sent, not yet answered) is cancelled with TransactionConflict on that key;
    - and, so that conflicts are frequent whatever the timing, ``share`` of the other transactions that
      update the item counter or check an item (a comment's) are cancelled on that key as if another
      writer held it (the counter of an item's transaction, the item a comment's checks). Nothing of a
      cancelled transaction reaches moto;
    - and, whatever the share, the first transaction that updates the counter and the first that checks an
      item are cancelled on that key: a batch's mails share one transaction, so there are few transactions,
      and a test must not depend on the share hitting each kind.
    """
    rng = random.Random(seed)
    state = Conflicts()
    json_headers = {"x-amzn-RequestId": "injected", "Content-Type": "application/x-amz-json-1.0"}

    def send(request: Any, **kwargs: Any) -> AWSResponse | None:
        keys = _transaction_keys(request.body)
        me = threading.get_ident()
        checks = {i for i, operation in enumerate(json.loads(request.body)["TransactItems"])
                  if "ConditionCheck" in operation}
        with state._lock:
            state.seen += 1
            clash = {i for i, key in enumerate(keys) if state._held.get(key, me) != me}
            counter = {i for i, key in enumerate(keys) if key.startswith("COUNTER#")}
            if not clash and counter and "counter" not in state._first:
                clash = counter
                state._first.add("counter")
            elif not clash and checks and "item" not in state._first:
                clash = checks
                state._first.add("item")
            elif not clash and rng.random() < share:
                # The counter of an item's transaction, else the item a comment's transaction checks.
                clash = ({i for i, key in enumerate(keys) if key.startswith("COUNTER#")}
                         or {i for i, key in enumerate(keys) if key.startswith("ITEM#")})
            if not clash:
                state._held.update((key, me) for key in keys)
                return None
            state.cancelled.update(keys[i].split("|")[0].split("#")[0] for i in clash)
        return AWSResponse(request.url, 400, json_headers, _Raw(_cancelled(keys, clash)))  # type: ignore[arg-type]

    def answered(**kwargs: Any) -> None:
        me = threading.get_ident()
        with state._lock:
            for key in [k for k, owner in state._held.items() if owner == me]:
                del state._held[key]

    events = botocore_client.meta.events
    events.register_first("before-send.dynamodb.TransactWriteItems", send, unique_id="conflicts-send")
    for event in ("after-call.dynamodb.TransactWriteItems", "after-call-error.dynamodb.TransactWriteItems"):
        events.register(event, answered, unique_id=f"conflicts-{event}")
    try:
        yield state
    finally:
        events.unregister("before-send.dynamodb.TransactWriteItems", unique_id="conflicts-send")
        for event in ("after-call.dynamodb.TransactWriteItems", "after-call-error.dynamodb.TransactWriteItems"):
            events.unregister(event, unique_id=f"conflicts-{event}")
