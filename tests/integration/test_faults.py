"""Faults injected into processing, over the real local stack (moto's server; the real process handler).

Each test ends with the invariant: every delivered mail has exactly one ledger outcome, and no mail made
an item or a comment twice.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from mailintake import processing, store
from mailintake.aws_clients import client
from mailintake.localrun import run_cycle

from .conftest import make_mail
from .fault_support import (
    assert_one_outcome_each,
    drain,
    enqueue,
    process,
    queue_bodies,
    record,
    recorded,
    stage,
    throttled,
)

pytestmark = pytest.mark.integration


def test_same_sqs_message_delivered_twice_makes_one_item(settings: Any) -> None:
    raw = make_mail("Delivered twice")
    job = stage(settings, raw)

    assert process(settings, [record(job, raw=raw)]) == set()
    # SQS is at-least-once: the same message again, even with a receive count of 1 (a second copy).
    assert process(settings, [record(job, raw=raw)]) == set()
    assert process(settings, [record(job, 2, raw=raw)]) == set()

    assert [i.title for i in store.list_items()] == ["Delivered twice"]
    assert_one_outcome_each({job.key: "item"})


def deliver_concurrently(settings: Any, job: Any, raw: bytes) -> list[set[str]]:
    """The same SQS record to two handler instances at once (two Lambda containers, own module state)."""
    start = threading.Barrier(2)
    failures: list[set[str]] = []
    errors: list[BaseException] = []

    def deliver(instance: int) -> None:
        try:
            start.wait(timeout=10)
            failures.append(process(settings, [record(job, raw=raw)], instance=instance))
        except BaseException as exc:  # surfaced in the test's thread below
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    return failures


def test_same_message_processed_concurrently_by_two_containers_makes_one_item_and_one_comment(
    settings: Any,
) -> None:
    original = make_mail("Concurrent original", message_id="concurrent-orig")
    reply = make_mail("Re: Concurrent original", "Me too.\n", headers={"In-Reply-To": "<concurrent-orig@example.org>"})
    jobs = [stage(settings, original), stage(settings, reply)]

    for job, raw in zip(jobs, (original, reply), strict=True):
        # Both deliveries end well: the loser of the race finds the winner's outcome.
        assert deliver_concurrently(settings, job, raw) == [set(), set()]

    (item,) = store.list_items()
    assert [c.source_key for c in store.list_comments(int(item.number))] == [jobs[1].key]
    assert_one_outcome_each({jobs[0].key: "item", jobs[1].key: "comment"})


def test_killed_after_the_item_transaction_before_the_queue_ack_makes_no_second_item(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = make_mail("Killed before the ack")
    job = stage(settings, raw)
    enqueue(settings, job)
    sqs = client("sqs", settings.region)

    # The first delivery writes the item (and its ledger record, in the same transaction), then dies
    # before anything else happens: the handler reports the message as failed, so it is not deleted.
    def die(self: Any, *args: Any) -> None:
        raise RuntimeError("injected: killed after the item transaction")

    monkeypatch.setattr(processing.Processor, "_acknowledge", die)
    (first,) = sqs.receive_message(QueueUrl=settings.queue_url, AttributeNames=["All"])["Messages"]
    assert process(settings, [first]) == {first["MessageId"]}
    assert recorded(job.key).status == "item"  # the failure record did not overwrite it
    monkeypatch.undo()

    # Redelivered (ApproximateReceiveCount=2): the ledger says it is done, nothing is written again.
    sqs.change_message_visibility(QueueUrl=settings.queue_url, ReceiptHandle=first["ReceiptHandle"],
                                  VisibilityTimeout=0)
    report = drain(settings)
    assert report.failures == {}
    assert [i.title for i in store.list_items()] == ["Killed before the ack"]
    assert_one_outcome_each({job.key: "item"})
    assert queue_bodies(settings, settings.queue_url) == []


def test_handler_success_without_ack_redelivered_with_receive_count_two_makes_no_second_item(
    settings: Any,
) -> None:
    raw = make_mail("Acked too late")
    job = stage(settings, raw)
    assert process(settings, [record(job, 1, raw=raw)]) == set()
    # The container died between the handler's return and the event source mapping's delete.
    assert process(settings, [record(job, 2, raw=raw)]) == set()
    assert_one_outcome_each({job.key: "item"})


def test_poisoned_message_fails_alone_ends_in_dlq_and_ledger_while_the_others_land(settings: Any) -> None:
    good = [make_mail(f"Healthy {n}") for n in range(3)]
    good_jobs = [stage(settings, raw) for raw in good]
    # Poisoned twice over: its S3 object is gone (it is too large to travel inline), and an inline copy
    # that does not match its hash.
    missing = stage(settings, make_mail("Vanished", "x" * 20_000), inline=False)
    client("s3", settings.region).delete_object(Bucket=settings.bucket, Key=missing.key)
    mismatched = stage(settings, make_mail("Tampered"))
    mismatched = type(mismatched)(**{**mismatched.__dict__, "sha256": "0" * 64})
    # The poisoned ones first: in a FIFO batch, a failure must not drag the messages behind it along.
    for job in (missing, mismatched, *good_jobs):
        enqueue(settings, job)

    report = drain(settings)

    # maxReceiveCount is 5: each poisoned message failed that often, then moved to the dead-letter queue.
    assert sorted(report.failures.values()) == [5, 5]
    dead = queue_bodies(settings, settings.dlq_url)
    assert sorted(m["Body"] for m in dead) == sorted(j.to_json() for j in (missing, mismatched))
    assert queue_bodies(settings, settings.queue_url) == []
    assert sorted(i.title for i in store.list_items()) == ["Healthy 0", "Healthy 1", "Healthy 2"]
    assert_one_outcome_each({**{j.key: "item" for j in good_jobs}, missing.key: "failed",
                             mismatched.key: "failed"})
    errors = {r.key: r for r in store.list_ledger() if r.status == "failed"}
    assert "NoSuchKey" in (errors[missing.key].error or "")
    assert "InlineMismatch" in (errors[mismatched.key].error or "")
    assert int(errors[missing.key].attempts) == 5


def test_dynamodb_throttling_on_the_item_transaction_is_retried_with_backoff(settings: Any) -> None:
    raw = make_mail("Throttled once")
    job = stage(settings, raw)
    dynamodb = store.shared_connection().client
    with throttled(dynamodb, "dynamodb", "TransactWriteItems", times=2) as injected:
        assert process(settings, [record(job, raw=raw)]) == set()
    assert injected() == 2  # both throttles really happened; the client's retry absorbed them
    assert_one_outcome_each({job.key: "item"})
    assert int(recorded(job.key).attempts) == 1


def test_s3_errors_reading_the_raw_mail_are_retried_with_backoff(settings: Any) -> None:
    raw = make_mail("Large enough for S3", "y" * 20_000)
    job = stage(settings, raw, inline=False)
    with throttled(client("s3", settings.region), "s3", "GetObject", times=2) as injected:
        assert process(settings, [record(job, raw=raw)]) == set()
    assert injected() == 2
    assert_one_outcome_each({job.key: "item"})


def test_throttling_beyond_the_client_retries_fails_the_message_and_redelivery_ends_well(settings: Any) -> None:
    raw = make_mail("Throttled for long")
    job = stage(settings, raw)
    dynamodb = store.shared_connection().client
    with throttled(dynamodb, "dynamodb", "TransactWriteItems", times=100):
        assert process(settings, [record(job, raw=raw)]) == {record(job)["MessageId"]}
    failed = recorded(job.key)
    assert failed is not None and failed.status == "failed"
    assert "ThrottlingException" in (failed.error or "")  # the cause, not only pynamodb's generic message
    assert store.list_items() == []

    # The queue redelivers it once the throttling is over.
    assert process(settings, [record(job, 2, raw=raw)]) == set()
    assert_one_outcome_each({job.key: "item"})


def test_a_cycle_whose_whole_batch_fails_records_the_failure_instead_of_raising(settings: Any) -> None:
    # The one message of the batch cannot be read (its S3 object is gone): Powertools raises when every
    # record fails, and the local runner must then do what Lambda does, not crash the poll.
    missing = stage(settings, make_mail("Vanished", "x" * 20_000), inline=False)
    client("s3", settings.region).delete_object(Bucket=settings.bucket, Key=missing.key)
    enqueue(settings, missing)

    report = run_cycle(settings)

    assert (report.processed, report.failed) == (0, 1)
    assert_one_outcome_each({missing.key: "failed"})
