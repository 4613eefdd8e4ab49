"""The batch rules of the process function: which mails of a batch are written together, and FIFO order
after a failure. A recording stand-in for the processor: what it is asked, in order (the writes themselves
are proven on the local stack in tests/integration/test_batched_writes.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from mailintake.batches import GroupSkipped, QueuedRecord, _Batch
from mailintake.bounds import Deadline
from mailintake.handover import QueuedMessage
from mailintake.message import Address, ParsedMessage
from mailintake.processing import Outcome, Processor, Ready
from mailintake.settings import Settings
from mailintake.store import TOGETHER_MAX, CommentRecord, NewComment, NewItem, Source


@dataclass(frozen=True)
class Mail:
    key: str
    sender: str = "ann@example.org"
    group: str = ""
    comment_on: int | None = None  # a comment on this item, else a new item
    refused: bool = False  # judged without an item or comment (a rejection, a discard)
    fails: bool = False  # judging it raises
    write_fails: bool = False
    size: int = 2_000
    message_id: str = ""


@dataclass
class RecordingProcessor:
    mails: dict[str, Mail]
    calls: list[tuple[str, Any]] = field(default_factory=list)
    settings: Any = None

    def prepare(self, job: QueuedMessage, attempt: int, deadline: Deadline,
                before_facts: Callable[[ParsedMessage], None]) -> Outcome | Ready:
        mail = self.mails[job.key]
        self.calls.append(("judge", job.key))
        before_facts(ParsedMessage(mail.message_id or job.key, "subject", Address(mail.sender)))
        if mail.fails:
            raise RuntimeError("poisoned")
        if mail.refused:
            return Outcome("rejected", "rejected: unknown sender")
        source = Source(job.key, "box", mail.message_id or job.key, mail.sender, "subject")
        record: NewItem | NewComment
        if mail.comment_on is not None:
            record = NewComment(CommentRecord("ITEM#x", f"COMMENT#{job.key}", item_number=mail.comment_on), source)
        else:
            record = NewItem(lambda n: cast(Any, None), source)
        parsed = ParsedMessage(mail.message_id or job.key, "subject", Address(mail.sender))
        return Ready(job, attempt, record, mail.size, parsed, cast(Any, None), cast(Any, None),
                     Deadline.after(60))

    def write(self, ready: Sequence[Ready],
              correlate: Callable[[str], None] | None = None) -> list[Outcome | Exception]:
        keys = [r.job.key for r in ready]
        self.calls.append(("write", keys))
        return [RuntimeError("write failed") if self.mails[k].write_fails else Outcome("item", f"item for {k}")
                for k in keys]


def run(*mails: Mail) -> tuple[list[Outcome | Exception], list[tuple[str, Any]]]:
    processor = RecordingProcessor({m.key: m for m in mails},
                                   settings=Settings.from_mapping({"MAILINTAKE_TABLE": "t", "MAILINTAKE_BUCKET": "b",
                                                                   "MAILINTAKE_QUEUE_URL": "q"}))
    records = [QueuedRecord(json.dumps({"bucket": "b", "key": m.key, "mailbox": "box", "sha256": "0", "size": 1}), 1,
                            m.group or m.key) for m in mails]
    results = _Batch(cast(Processor, processor), lambda: 100.0, lambda key: None).run(records)
    return results, processor.calls


def writes(calls: list[tuple[str, Any]]) -> list[list[str]]:
    return [keys for what, keys in calls if what == "write"]


def test_mails_of_different_conversations_and_senders_are_written_in_one_write() -> None:
    results, calls = run(*(Mail(f"m{n}", sender=f"s{n}@example.org") for n in range(10)))
    assert writes(calls) == [[f"m{n}" for n in range(10)]]
    assert all(isinstance(r, Outcome) for r in results)


def test_a_mail_whose_conversation_has_a_mail_waiting_is_judged_after_that_one_is_written() -> None:
    _results, calls = run(Mail("original", sender="a@example.org", group="thread"),
                          Mail("other", sender="b@example.org"),
                          Mail("reply", sender="c@example.org", group="thread", comment_on=1))
    assert calls == [("judge", "original"), ("judge", "other"), ("write", ["original", "other"]),
                     ("judge", "reply"), ("write", ["reply"])]


def test_a_mail_from_a_sender_with_a_mail_waiting_is_judged_after_that_one_is_written() -> None:
    _results, calls = run(Mail("first", sender="Ann@Example.org"), Mail("second", sender="ann@example.org"))
    assert calls == [("judge", "first"), ("judge", "second"), ("write", ["first"]), ("write", ["second"])]


def test_two_comments_on_one_item_or_two_copies_of_one_message_are_not_written_together() -> None:
    _results, calls = run(Mail("c1", sender="a@example.org", comment_on=7),
                          Mail("c2", sender="b@example.org", comment_on=7))
    assert writes(calls) == [["c1"], ["c2"]]
    _results, calls = run(Mail("copy1", sender="a@example.org", message_id="same@example.org"),
                          Mail("copy2", sender="b@example.org", message_id="same@example.org"))
    assert writes(calls) == [["copy1"], ["copy2"]]


def test_mails_needing_no_write_keep_their_outcome_and_do_not_break_up_the_write() -> None:
    results, calls = run(Mail("a", sender="a@example.org"), Mail("spam", sender="x@example.org", refused=True),
                         Mail("b", sender="b@example.org"))
    assert writes(calls) == [["a", "b"]]
    assert [r.status for r in results if isinstance(r, Outcome)] == ["item", "rejected", "item"]


def test_after_a_failure_the_rest_of_its_conversation_is_returned_unprocessed_and_others_go_on() -> None:
    results, calls = run(Mail("bad", sender="a@example.org", group="thread", fails=True),
                         Mail("other", sender="b@example.org"),
                         Mail("after", sender="c@example.org", group="thread"))
    assert isinstance(results[0], RuntimeError) and isinstance(results[2], GroupSkipped)
    assert isinstance(results[1], Outcome)
    assert ("judge", "after") not in calls


def test_a_failed_write_returns_the_rest_of_that_conversation_unprocessed() -> None:
    results, calls = run(Mail("lost", sender="a@example.org", group="thread", write_fails=True),
                         Mail("reply", sender="b@example.org", group="thread"))
    assert isinstance(results[0], RuntimeError) and isinstance(results[1], GroupSkipped)
    assert ("judge", "reply") not in calls


@pytest.mark.parametrize("count", [TOGETHER_MAX + 3])
def test_a_write_holds_at_most_together_max_mails_and_three_megabytes(count: int) -> None:
    _results, calls = run(*(Mail(f"m{n}", sender=f"s{n}@example.org") for n in range(count)))
    assert [len(keys) for keys in writes(calls)] == [TOGETHER_MAX, 3]
    _results, calls = run(*(Mail(f"m{n}", sender=f"s{n}@example.org", size=1_000_000) for n in range(5)))
    assert [len(keys) for keys in writes(calls)] == [3, 2]
