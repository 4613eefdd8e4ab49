"""The health rules behind `mailintake status` and the two stack-wide alarms, and the hand-over of a
mail's arrival time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailintake.handover import QueuedMessage, key_of
from mailintake.health import RunSummary, after_run, assess
from mailintake.sources.imap import _arrival

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def runs(*statuses: str) -> RunSummary | None:
    summary = None
    for n, status in enumerate(statuses):
        summary = after_run(summary, "box", status, 0, f"error {n}" if status != "done" else "",
                            NOW - timedelta(minutes=5 * (len(statuses) - n)))
    return summary


def test_three_config_errors_or_interruptions_in_a_row_make_a_mailbox_failing() -> None:
    summary = runs("done", "config-error", "interrupted", "config-error")
    health = assess("box", True, 5, None, summary, NOW)
    assert health.failing and health.problems[0].startswith("the last 3 runs ended config-error")


def test_a_successful_run_or_a_locked_one_breaks_or_keeps_the_count() -> None:
    assert not assess("box", True, 5, None, runs("config-error", "config-error", "done"), NOW).failing
    # "locked" and "disabled" say nothing about the mailbox's server: the count is kept, not reset.
    assert assess("box", True, 5, None, runs("config-error", "config-error", "locked", "config-error"),
                  NOW).failing


def test_no_successful_run_for_three_intervals_is_overdue_whatever_the_reason() -> None:
    added = NOW - timedelta(minutes=16)
    assert assess("box", True, 5, added, None, NOW).overdue  # never ran: its schedule is broken
    assert not assess("box", True, 5, NOW - timedelta(minutes=14), None, NOW).overdue  # new: first intervals
    assert not assess("box", False, 5, added, None, NOW).overdue  # disabled on purpose
    stale = runs("done", "more", "locked", "locked", "locked", "locked")  # last success 25 minutes ago
    assert assess("box", True, 5, added, stale, NOW).overdue
    assert not assess("box", True, 10, added, stale, NOW).overdue


def test_the_arrival_time_travels_in_the_queue_body_and_old_bodies_still_read() -> None:
    queued = QueuedMessage.of("bucket", "raw/box/1.eml", "box", b"Subject: x\r\n\r\nhi", arrived=1795600000.0)
    assert QueuedMessage.from_json(queued.to_json()).arrived == 1795600000.0
    old = '{"bucket":"b","key":"raw/box/2.eml","mailbox":"box","sha256":"00","size":3}'
    assert QueuedMessage.from_json(old).arrived is None
    assert key_of(old) == ("raw/box/2.eml", "box") and key_of("not json") == ("", "")


def test_internaldate_is_read_as_an_instant() -> None:
    line = b'1 (UID 7 RFC822.SIZE 120 INTERNALDATE "17-Jul-1996 02:44:25 -0700")'
    assert _arrival(line) == datetime(1996, 7, 17, 9, 44, 25, tzinfo=UTC).timestamp()
    assert _arrival(b"1 (UID 7 RFC822.SIZE 120)") is None


def test_a_client_secrets_expiry_on_the_mailbox_record_is_read_as_an_instant() -> None:
    from mailintake.status import token_expiry
    from mailintake.store import MailboxRecord

    oauth = MailboxRecord(*MailboxRecord.key("m365"), name="m365", secret_expires="2026-12-01")
    assert token_expiry(oauth) == datetime(2026, 12, 1, tzinfo=UTC)
    assert token_expiry(MailboxRecord(*MailboxRecord.key("plain"), name="plain")) is None


def test_graphs_received_date_time_is_read_as_an_instant() -> None:
    from mailintake.sources.graph import _arrival as graph_arrival

    assert graph_arrival("2026-11-25T10:00:00Z") == datetime(2026, 11, 25, 10, tzinfo=UTC).timestamp()
    assert graph_arrival("") is None and graph_arrival("not a date") is None
