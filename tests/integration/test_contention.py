"""Transactions cancelled by other transactions (TransactionConflict) cost a retry in the function, not a
trip round the queue: every mail is written once, no item number is given twice or skipped, nothing is
dead-lettered.

moto never cancels a transaction for a conflict, so :func:`fault_support.conflicting` makes them on the wire
as DynamoDB does (a transaction touching an item another one has in flight) and, to make them frequent,
for a share of the others; the real client code path (botocore, pynamodb, mailintake.store) handles them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mailintake import store
from mailintake.localrun import run_cycle

from .conftest import make_mail
from .fault_support import conflicting, queue_bodies


def test_conflicting_transactions_are_retried_in_the_function_and_every_mail_lands_once_with_unique_numbers(
        settings: Any, mailbox: Callable[..., Any], deliver: Callable[[Any, bytes], None]) -> None:
    box = mailbox("imap", "ssl")
    originals = 40
    for n in range(originals):
        # Ten senders, each with four conversations: new users, cached users, new items.
        deliver(box, make_mail(f"Conflict test {n}", body=f"Mail number {n}.\n",
                               sender=f"Writer {n % 10} <writer{n % 10}@example.org>", message_id=f"conflict-{n}"))
    replies = 15
    for n in range(replies):
        # Answers by the same writer to its own mail: comments on items made in the same cycle.
        deliver(box, make_mail(f"Re: Conflict test {n}", body=f"Answer to {n}.\n",
                               sender=f"Writer {n % 10} <writer{n % 10}@example.org>",
                               message_id=f"conflict-reply-{n}",
                               headers={"In-Reply-To": f"<conflict-{n}@example.org>",
                                        "References": f"<conflict-{n}@example.org>"}))

    with conflicting(store.shared_connection().client, share=0.35) as conflicts:
        # Three consumers, each its own process-function container with its own idea of the next number.
        report = run_cycle(settings, workers=3)

    # Conflicts happened, on the counter and on commented items, and none cost a redelivery. (A batch's mails
    # share one transaction: a few dozen transactions for these 55 mails, so no count of them is asserted.)
    assert conflicts.cancelled["COUNTER"] >= 1, conflicts
    assert conflicts.cancelled["ITEM"] >= 1, conflicts
    assert report.failed == 0
    assert report.processed == originals + replies

    ledger = store.list_ledger()
    assert len(ledger) == originals + replies and len({r.key for r in ledger}) == originals + replies
    assert sorted(r.status for r in ledger) == ["comment"] * replies + ["item"] * originals
    assert all(r.attempts == 1 for r in ledger)

    items = store.list_items()
    numbers = sorted(int(i.number) for i in items)
    assert numbers == list(range(1, originals + 1)), "a number given twice or skipped"
    assert sorted(i.title for i in items) == sorted(f"Conflict test {n}" for n in range(originals))
    counter = store.CounterRecord.get("COUNTER#items", "COUNTER", consistent_read=True)
    assert int(counter.value) == originals
    by_title = {i.title: int(i.number) for i in items}
    for n in range(replies):
        comments = store.list_comments(by_title[f"Conflict test {n}"])
        assert [c.full_text.strip() for c in comments] == [f"Answer to {n}."]

    # Nothing waits for a retry and nothing went to the dead-letter queue.
    assert queue_bodies(settings, settings.queue_url) == []
    assert queue_bodies(settings, settings.dlq_url) == []
