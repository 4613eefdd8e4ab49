"""How mailintake.store writes an item or comment when DynamoDB cancels its transaction: a conflict waits a
jittered moment and tries again within the time left, a number taken by another writer is tried again at
once with the counter's value, a duplicate stops. No network: the transaction is a stand-in that fails as
told, with the cancellation reasons pynamodb hands over."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pynamodb.exceptions import CancellationReason, TransactWriteError, VerboseClientError

from mailintake import store

SOURCE = store.Source("raw/box/1.eml", "box", "id@example.org", "a@example.org", "Subject", "fp")


def cancelled(*codes: str | None, counter_value: int | None = None) -> TransactWriteError:
    """A cancellation as pynamodb raises it, one reason per operation (None: not the reason)."""
    reasons = [CancellationReason(code=code, raw_item={"value": {"N": str(counter_value)}}
                                  if code == "ConditionalCheckFailed" and counter_value is not None else None)
               if code else None for code in codes]
    cause = VerboseClientError({"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"}},
                               "TransactWriteItems", {}, cancellation_reasons=reasons)
    return TransactWriteError("Failed to write transaction items", cause=cause)


class Script:
    """Stands in for pynamodb's TransactWrite: each commit raises the next scripted error, or succeeds."""

    def __init__(self, errors: list[TransactWriteError | None]) -> None:
        self.errors = errors
        self.tried: list[int] = []  # the item number each try wrote

    def __call__(self, **kwargs: Any) -> Script:
        return self

    def __enter__(self) -> Script:
        return self

    def __exit__(self, *exc: object) -> None:
        error = self.errors.pop(0) if self.errors else None
        if error is not None:
            raise error

    def save(self, record: Any, condition: Any = None) -> None:
        if isinstance(record, store.ItemRecord):
            self.tried.append(int(record.number))

    def update(self, *args: Any, **kwargs: Any) -> None:
        pass

    def condition_check(self, *args: Any, **kwargs: Any) -> None:
        pass


@pytest.fixture()
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    waited: list[float] = []
    monkeypatch.setattr("mailintake.store.time.sleep", waited.append)
    monkeypatch.setattr(store, "shared_connection", lambda: None)
    monkeypatch.setattr(store.LedgerRecord, "save", lambda self, *a, **k: None)
    yield waited


def item(number: int) -> store.ItemRecord:
    return store.ItemRecord(*store.ItemRecord.key(number), number=number, title="t", author="a", workspace="w",
                            created=store.utcnow(), message_id="m", source_key="k", mailbox="b")


def numbering(last: int) -> store.Numbering:
    taken = store.Numbering()
    taken.last = last
    return taken


def test_a_conflict_on_the_counter_waits_a_few_milliseconds_and_tries_the_number_after_the_one_in_flight(
        monkeypatch: pytest.MonkeyPatch, sleeps: list[float]) -> None:
    # puts: message id 0, item 1, ledger 2; update: counter 3
    script = Script([cancelled(None, None, None, "TransactionConflict"),
                     cancelled(None, None, None, "TransactionConflict")])
    monkeypatch.setattr(store, "TransactWrite", script)
    ledger = store.write_item(item, SOURCE, numbering(6), time_left=lambda: 50.0)
    assert script.tried == [7, 8, 9]
    assert ledger.item_number == 9
    assert len(sleeps) == 2 and all(0 <= s <= store.BACKOFF.cap for s in sleeps)


def test_a_number_taken_meanwhile_is_tried_again_at_once_from_the_counters_value(
        monkeypatch: pytest.MonkeyPatch, sleeps: list[float]) -> None:
    script = Script([cancelled(None, None, None, "ConditionalCheckFailed", counter_value=11)])
    monkeypatch.setattr(store, "TransactWrite", script)
    store.write_item(item, SOURCE, numbering(6), time_left=lambda: 50.0)
    assert script.tried == [7, 12]
    assert sleeps == []


def test_a_conflict_that_outlasts_the_time_left_raises_contention_for_a_retry_through_the_queue(
        monkeypatch: pytest.MonkeyPatch, sleeps: list[float]) -> None:
    monkeypatch.setattr(store, "TransactWrite", Script([cancelled(None, None, None, "TransactionConflict")] * 100))
    left = iter([5.0, 3.0, 1.2, 1.0, 0.5])
    with pytest.raises(store.Contention):
        store.write_item(item, SOURCE, numbering(6), time_left=lambda: next(left))
    assert 1 <= len(sleeps) <= 3


def test_a_known_message_id_stops_as_a_duplicate_even_when_another_operation_conflicted(
        monkeypatch: pytest.MonkeyPatch, sleeps: list[float]) -> None:
    monkeypatch.setattr(store, "TransactWrite", Script([cancelled("ConditionalCheckFailed", None, None,
                                                                  "TransactionConflict")]))
    monkeypatch.setattr(store, "get_stored_copy", lambda source: None)
    with pytest.raises(store.DuplicateMessage):
        store.write_item(item, SOURCE, numbering(6), time_left=lambda: 50.0)
    assert sleeps == []


def test_a_comment_whose_item_check_conflicted_is_written_on_the_next_try(
        monkeypatch: pytest.MonkeyPatch, sleeps: list[float]) -> None:
    # condition check: item 0; puts: message id 1, comment 2, ledger 3
    script = Script([cancelled("TransactionConflict", None, None, None)])
    monkeypatch.setattr(store, "TransactWrite", script)
    comment = store.CommentRecord(*store.comment_key(3, store.utcnow(), SOURCE.key), item_number=3, author="a",
                                  created=store.utcnow(), message_id="m", source_key=SOURCE.key, mailbox="b")
    ledger = store.write_comment(comment, SOURCE, time_left=lambda: 50.0)
    assert ledger.item_number == 3
    assert len(sleeps) == 1 and script.errors == []


def test_backoff_waits_grow_with_jitter_up_to_the_cap() -> None:
    backoff = store.Backoff(base=0.004, cap=0.2)
    for attempt in range(30):
        waits = [backoff.delay(attempt) for _ in range(50)]
        assert all(0 <= w <= min(0.2, 0.004 * 2 ** attempt) for w in waits)
        assert len(set(waits)) > 1
