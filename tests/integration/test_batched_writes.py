"""The mails of one queue batch are written in one transaction (mailintake.batches), on the local stack:
one TransactWriteItems for the batch, numbers in order without gaps, a reply in the same batch as its
original still a comment on it, a copy stored before making the batch fall back to one write each, and a
redelivered batch changing nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mailintake import store

from .conftest import make_mail
from .fault_support import assert_one_outcome_each, process, record, recorded, stage


@contextmanager
def transactions() -> Iterator[list[int]]:
    """The TransactWriteItems requests sent meanwhile: the number of operations in each."""
    sent: list[int] = []

    def count(params: dict[str, Any], **kwargs: Any) -> None:
        sent.append(len(params["TransactItems"]))

    events = store.shared_connection().client.meta.events
    events.register("provide-client-params.dynamodb.TransactWriteItems", count, unique_id="count-transactions")
    try:
        yield sent
    finally:
        events.unregister("provide-client-params.dynamodb.TransactWriteItems", unique_id="count-transactions")


def test_a_batch_of_ten_mails_is_written_in_one_transaction_numbered_in_order(settings: Any) -> None:
    raws = [make_mail(f"Batch {n}", body=f"Mail {n}.\n", sender=f"Writer {n} <writer{n}@example.org>")
            for n in range(10)]
    jobs = [stage(settings, raw) for raw in raws]

    with transactions() as sent:
        assert process(settings, [record(job, raw=raw) for job, raw in zip(jobs, raws, strict=True)]) == set()

    assert sent == [10 * 3 + 1]  # one request: item, Message-ID and ledger records of each, one counter update
    assert_one_outcome_each({job.key: "item" for job in jobs})
    numbers = {item.title: int(item.number) for item in store.list_items()}
    assert numbers == {f"Batch {n}": n + 1 for n in range(10)}
    assert int(store.CounterRecord.get("COUNTER#items", "COUNTER", consistent_read=True).value) == 10


def test_a_reply_in_the_same_batch_as_its_original_is_a_comment_on_the_item_the_original_made(
        settings: Any) -> None:
    original = make_mail("Printer on fire", sender="Ann <ann@example.org>", message_id="fire-1")
    unrelated = make_mail("Coffee machine", sender="Bob <bob@example.org>")
    reply = make_mail("Re: Printer on fire", body="It is out now.\n", sender="Ann <ann@example.org>",
                      headers={"In-Reply-To": "<fire-1@example.org>", "References": "<fire-1@example.org>"})
    raws = [original, unrelated, reply]
    jobs = [stage(settings, raw) for raw in raws]

    with transactions() as sent:
        assert process(settings, [record(job, raw=raw) for job, raw in zip(jobs, raws, strict=True)]) == set()

    # The original and the unrelated mail together; the reply judged after its original was written.
    assert len(sent) == 2
    assert_one_outcome_each({jobs[0].key: "item", jobs[1].key: "item", jobs[2].key: "comment"})
    fire = next(item for item in store.list_items() if item.title == "Printer on fire")
    assert [c.source_key for c in store.list_comments(int(fire.number))] == [jobs[2].key]


def test_a_copy_stored_before_makes_the_batch_write_each_mail_alone_and_nothing_doubles(settings: Any) -> None:
    first = make_mail("Invoice 17", sender="Dee <dee@example.org>", message_id="invoice-17")
    earlier = stage(settings, first, mailbox="sales")
    assert process(settings, [record(earlier, raw=first)]) == set()

    # The same mail again from a second mailbox, between two new ones.
    raws = [make_mail("New one", sender="Eve <eve@example.org>"), first,
            make_mail("Another one", sender="Fay <fay@example.org>")]
    jobs = [stage(settings, raws[0]), stage(settings, raws[1], mailbox="support"), stage(settings, raws[2])]
    with transactions() as sent:
        assert process(settings, [record(job, raw=raw) for job, raw in zip(jobs, raws, strict=True)]) == set()

    # Refused together (the copy's Message-ID is taken), then one by one: the copy alone is refused again.
    assert sent == [3 * 3 + 1, 4, 4, 4]
    assert_one_outcome_each({earlier.key: "item", jobs[0].key: "item", jobs[1].key: "discarded",
                             jobs[2].key: "item"})
    assert recorded(jobs[1].key).outcome == f"discarded: duplicate of {earlier.key}"
    assert sorted(int(item.number) for item in store.list_items()) == [1, 2, 3]


def test_a_batch_delivered_again_after_its_transaction_changes_nothing(settings: Any) -> None:
    raws = [make_mail(f"Twice {n}", sender=f"W{n} <w{n}@example.org>") for n in range(5)]
    jobs = [stage(settings, raw) for raw in raws]
    assert process(settings, [record(job, raw=raw) for job, raw in zip(jobs, raws, strict=True)]) == set()

    # The container died after the transaction, before the queue heard of it: the batch comes again.
    with transactions() as sent:
        assert process(settings, [record(job, 2, raw=raw) for job, raw in zip(jobs, raws, strict=True)],
                       instance=1) == set()

    assert sent == []
    assert_one_outcome_each({job.key: "item" for job in jobs})
    assert sorted(int(item.number) for item in store.list_items()) == [1, 2, 3, 4, 5]
