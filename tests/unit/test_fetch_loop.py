"""The fetch loop (mailintake.fetching.Fetcher) driven by in-memory fakes of its interfaces: a mail server
behind MailSource, a CursorStore, a RawMailStore and an IntakeQueue. No network, no AWS: milliseconds.

The same behaviours are proven on the real local stack (Dovecot, moto server) by tests/integration:
test_fetch_faults.py (the fetch killed at each step, the server going away) and test_end_to_end.py (a crash
between storing and marking). These tests pin the loop's own reasoning, one behaviour each.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from imap_tools.errors import MailboxLoginError

from mailintake import fetching
from mailintake.fetching import Fetcher, FetchReport, FetchServices, Interrupted
from mailintake.handover import QueuedMessage, conversation_group
from mailintake.settings import Settings
from mailintake.sources import PART_BYTES, CursorStore, FolderCount, ImapCursor, MailSource, Pending, StartAt
from mailintake.sources.cursors import GraphCursor, UidlParts
from mailintake.store import MailboxRecord
from mailintake.system_settings import ConfigCache
from mailintake.tokens import MailboxLogin

MARGIN_MS = Settings().deadline_margin_seconds * 1000


def mail(n: int, body: bytes = b"Hello.\r\n") -> bytes:
    return (f"From: sender{n}@example.com\r\nTo: help@example.com\r\nSubject: Mail {n:02d}\r\n"
            f"Message-ID: <m{n}@example.com>\r\n\r\n").encode() + body


class Crash(Exception):
    """Stands in for the process dying (not a server interruption: nothing catches it)."""


# --- fakes ----------------------------------------------------------------------------------------------


@dataclass
class World:
    """A mail server's folder, the cursor table, the bucket and the queue, and one log of what happened."""

    mails: dict[int, bytes] = field(default_factory=dict)  # UID -> raw mail, on the server
    log: list[tuple[str, Any]] = field(default_factory=list)
    crash_on: dict[str, int] = field(default_factory=dict)  # operation -> the call that fails
    calls: dict[str, int] = field(default_factory=dict)

    def deliver(self, *raws: bytes) -> None:
        for raw in raws:
            self.mails[max(self.mails, default=0) + 1] = raw

    def step(self, operation: str, detail: Any, fault: type[BaseException] = Crash) -> None:
        self.calls[operation] = self.calls.get(operation, 0) + 1
        if self.crash_on.get(operation) == self.calls[operation]:
            raise fault(f"injected at {operation} #{self.calls[operation]}")
        self.log.append((operation, detail))

    def steps(self, operation: str) -> list[Any]:
        return [detail for op, detail in self.log if op == operation]


class FakeCursors:
    """CursorStore in memory."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.imap: dict[str, ImapCursor] = {}
        self.uidls: dict[str, UidlParts] = {}
        self.delta: dict[str, GraphCursor] = {}
        self.skipped: dict[str, set[str]] = {}

    def load_imap(self, mailbox: str) -> ImapCursor:
        saved = self.imap.get(mailbox, ImapCursor())
        return ImapCursor(saved.uidvalidity, saved.last_uid)

    def save_imap(self, mailbox: str, cursor: ImapCursor) -> None:
        self.world.step("remember", cursor.last_uid)
        self.imap[mailbox] = ImapCursor(cursor.uidvalidity, cursor.last_uid)

    def load_uidls(self, mailbox: str) -> UidlParts:
        return {part: set(uidls) for part, uidls in self.uidls.get(mailbox, {}).items()}

    def add_uidls(self, mailbox: str, part: str, uidls: set[str]) -> str:
        self.uidls.setdefault(mailbox, {})[part] = set(uidls)
        return part

    def compact_uidls(self, mailbox: str, parts: UidlParts, keep: set[str]) -> None:
        self.uidls[mailbox] = {"all": set(keep)}

    def load_delta(self, mailbox: str) -> GraphCursor:
        saved = self.delta.get(mailbox, GraphCursor())
        return GraphCursor(saved.link, saved.round, saved.done)

    def save_delta(self, mailbox: str, cursor: GraphCursor) -> None:
        self.delta[mailbox] = GraphCursor(cursor.link, cursor.round, cursor.done)

    def load_skipped(self, mailbox: str) -> set[str]:
        return set(self.skipped.get(mailbox, ()))

    def add_skipped(self, mailbox: str, uidls: set[str]) -> None:
        self.skipped.setdefault(mailbox, set()).update(uidls)


class FakeImapSource:
    """MailSource over World.mails as an IMAP folder whose mailbox deletes after storing (UIDVALIDITY 7)."""

    def __init__(self, world: World, mailbox: MailboxRecord, cursors: CursorStore) -> None:
        self.world, self.mailbox, self.cursors = world, mailbox, cursors
        self.cursor = cursors.load_imap(mailbox.name)
        self.changed = self.cursor.uidvalidity != 7
        if self.changed:
            self.cursor = ImapCursor(7, 0)

    def __enter__(self) -> FakeImapSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.world.log.append(("logout", None))

    def pending(self) -> Iterator[Pending]:
        for uid in sorted(u for u in self.world.mails if u > self.cursor.last_uid):
            yield Pending(str(uid), f"7-{uid:010d}", len(self.world.mails[uid]))

    def download(self, item: Pending) -> bytes:
        self.world.step("download", item.ref, OSError)
        return self.world.mails[int(item.ref)]

    def chunks(self, item: Pending) -> Iterator[bytes]:
        self.world.step("chunks", item.ref, OSError)
        raw = self.world.mails[int(item.ref)]
        for start in range(0, len(raw), PART_BYTES):
            yield raw[start:start + PART_BYTES]

    def settle(self, items: list[Pending]) -> None:
        self.world.step("settle", [int(i.ref) for i in items])
        for item in items:
            del self.world.mails[int(item.ref)]
        self.cursor.last_uid = max(self.cursor.last_uid, *(int(i.ref) for i in items))
        self.changed = True

    def remember(self) -> None:
        if self.changed:
            self.cursors.save_imap(self.mailbox.name, self.cursor)
            self.changed = False

    def begin(self, start: StartAt) -> FolderCount:
        total = len(self.world.mails)
        self.cursor = ImapCursor(7, max(self.world.mails, default=0) if start == "new" else 0)
        self.cursors.save_imap(self.mailbox.name, self.cursor)
        return FolderCount(total, None, 0 if start == "new" else total)


class FakeBucket:
    """RawMailStore in memory: objects by key, a put at a time."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.objects: dict[str, bytes] = {}
        self.parts: dict[str, int] = {}  # key -> parts of its multipart upload

    def put(self, key: str, raw: bytes, metadata: Mapping[str, str]) -> None:
        self.world.step("store", key)
        self.objects[key] = raw

    def put_in_parts(self, key: str, parts: Iterable[bytes], metadata: Mapping[str, str]) -> None:
        received = list(parts)  # an exception here leaves nothing, as an aborted multipart upload
        self.world.step("store", key)
        self.objects[key] = b"".join(received)
        self.parts[key] = len(received)


class FakeFifoQueue:
    """IntakeQueue in memory, with SQS FIFO's deduplication: a key queued before is dropped."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.delivered: list[tuple[QueuedMessage, str]] = []
        self.dedup_ids: set[str] = set()
        self.refuse = 0  # how many messages of the next batch are refused

    def send(self, batch: Sequence[tuple[QueuedMessage, str]]) -> int:
        self.world.step("queue", [q.key for q, _ in batch])
        if self.refuse:
            refused, self.refuse = self.refuse, 0
            return refused
        for queued, group in batch:
            dedup_id = hashlib.sha256(queued.key.encode()).hexdigest()
            if dedup_id not in self.dedup_ids:
                self.dedup_ids.add(dedup_id)
                self.delivered.append((queued, group))
        return 0


class Stack:
    """The fakes wired into a FetchServices, and a way to run the loop over one mailbox."""

    def __init__(self, *raws: bytes) -> None:
        self.world = World()
        self.world.deliver(*raws)
        self.cursors = FakeCursors(self.world)
        self.bucket = FakeBucket(self.world)
        self.queue = FakeFifoQueue(self.world)
        self.mailbox = MailboxRecord(*MailboxRecord.key("support"), name="support", protocol="imap",
                                     host="mail.example.com", port=993, security="ssl", username="support",
                                     secret_name="mailbox/support", after="delete")

        self.password_reads: list[bool] = []  # each read of the password: fresh from Secrets Manager or not
        self.cached_password = "secret"

        def open_source(mailbox: MailboxRecord, login: MailboxLogin, cursors: CursorStore,
                        seconds_left: Callable[[], float]) -> MailSource:
            if login.password() != "secret":
                raise MailboxLoginError(("NO", [b"[AUTHENTICATIONFAILED] Authentication failed."]), "OK")
            return FakeImapSource(self.world, mailbox, cursors)

        def password(box: MailboxRecord) -> str:
            self.password_reads.append(False)
            return self.cached_password

        def reread(box: MailboxRecord) -> str:
            self.password_reads.append(True)
            self.cached_password = "secret"
            return self.cached_password

        self.services = FetchServices(open_source, self.cursors, self.bucket, self.queue, password,
                                      reread_password=reread)

    def fetch(self, remaining_ms: Iterator[int] | None = None) -> FetchReport:
        clock = remaining_ms or iter(lambda: 300_000, None)
        settings = Settings(bucket="bucket")
        fetcher = Fetcher(settings, ConfigCache(settings), lambda: next(clock), "run", self.services)
        report = FetchReport(self.mailbox.name)
        fetcher.drain(self.mailbox, report)
        return report

    def queued_subjects(self) -> list[str]:
        return sorted(self.bucket.objects[q.key].split(b"Subject: ")[1].split(b"\r\n")[0].decode()
                      for q, _ in self.queue.delivered)


# --- the loop -------------------------------------------------------------------------------------------


def test_each_mail_is_stored_then_its_batch_queued_then_settled_and_the_cursor_remembered_at_the_end() -> None:
    stack = Stack(*(mail(n) for n in range(1, 13)))

    report = stack.fetch()

    keys = [f"raw/support/7-{uid:010d}.eml" for uid in range(1, 13)]
    assert [op for op, _ in stack.world.log if op != "download"] == [
        *["store"] * 10, "queue", "settle", *["store"] * 2, "queue", "settle", "remember", "logout"]
    assert stack.world.steps("store") == keys
    assert stack.world.steps("queue") == [keys[:10], keys[10:]]
    assert stack.world.steps("settle") == [list(range(1, 11)), [11, 12]]
    assert stack.world.steps("remember") == [12]
    assert (report.status, report.fetched, report.keys) == ("done", 12, keys)
    assert stack.world.mails == {}
    # What is queued is what is stored: hash and size of the object, the small mail inlined.
    for queued, group in stack.queue.delivered:
        raw = stack.bucket.objects[queued.key]
        assert (queued.sha256, queued.size, queued.inline_bytes()) == (hashlib.sha256(raw).hexdigest(), len(raw), raw)
        assert group == conversation_group(raw)


def test_the_cursor_is_written_every_five_batches_and_at_the_end_not_after_every_batch() -> None:
    stack = Stack(*(mail(n) for n in range(1, 63)))

    assert stack.fetch().fetched == 62

    assert len(stack.world.steps("settle")) == 7
    assert stack.world.steps("remember") == [50, 62]


def test_a_crash_between_storing_and_settling_loses_nothing_and_the_next_run_doubles_nothing() -> None:
    stack = Stack(*(mail(n) for n in range(1, 16)))
    stack.world.crash_on["settle"] = 2  # the second batch is in S3 and queued, not yet deleted on the server

    with pytest.raises(Crash):
        stack.fetch()
    assert sorted(stack.world.mails) == list(range(11, 16))  # nothing removed that was not settled
    assert stack.cursors.imap["support"].last_uid == 10  # remembered on the way out: the first batch only

    report = stack.fetch()

    # The five are read again into the keys they were stored under; the queue drops them as duplicates.
    assert report.fetched == 5
    assert len(stack.bucket.objects) == 15
    assert len(stack.queue.delivered) == 15
    assert stack.queued_subjects() == [f"Mail {n:02d}" for n in range(1, 16)]
    assert stack.world.mails == {}
    assert stack.cursors.imap["support"].last_uid == 15


def test_a_crash_after_settling_before_remembering_rereads_nothing_the_server_no_longer_has() -> None:
    stack = Stack(*(mail(n) for n in range(1, 6)))
    stack.world.crash_on["remember"] = 1

    with pytest.raises(Crash):
        stack.fetch()
    assert stack.world.mails == {} and "support" not in stack.cursors.imap

    assert stack.fetch().fetched == 0  # deleted on the server: nothing to read again
    assert len(stack.queue.delivered) == 5


def test_time_running_out_stops_cleanly_settles_what_was_handed_over_and_leaves_the_rest_for_the_next_run() -> None:
    stack = Stack(*(mail(n) for n in range(1, 21)))
    # Plenty of time for thirteen mails, then less than the margin kept before the deadline.
    clock = iter([MARGIN_MS + 1000] * 13 + [MARGIN_MS - 1] * 100)

    report = stack.fetch(clock)

    assert (report.status, report.fetched) == ("more", 13)
    assert stack.world.steps("settle") == [list(range(1, 11)), [11, 12, 13]]  # the partial batch too
    assert stack.world.steps("remember") == [13]
    assert sorted(stack.world.mails) == list(range(14, 21))

    assert (stack.fetch().status, len(stack.queue.delivered)) == ("done", 20)
    assert stack.queued_subjects() == [f"Mail {n:02d}" for n in range(1, 21)]


def test_a_mail_over_the_size_limit_is_streamed_to_s3_in_parts_and_queued_with_its_whole_size_to_be_rejected() -> None:
    limit = Settings().max_message_bytes
    large = mail(2, b"x" * limit)
    stack = Stack(mail(1), large, mail(3))

    report = stack.fetch()

    assert report.fetched == 3
    key = "raw/support/7-0000000002.eml"
    assert stack.world.steps("chunks") == ["2"] and stack.world.steps("download") == ["1", "3"]
    assert stack.bucket.parts == {key: -(-len(large) // PART_BYTES)}
    assert stack.bucket.objects[key] == large
    queued = {q.key: q for q, _ in stack.queue.delivered}[key]
    assert (queued.size, queued.sha256, queued.raw) == (len(large), hashlib.sha256(large).hexdigest(), None)
    # Over the limit by its queued size: processing records it "rejected: message too large" from its
    # header block alone (tests/integration/test_large_mail.py proves that part on the local stack).
    assert queued.size > limit
    assert stack.world.mails == {}


def test_the_server_going_away_midway_queues_what_was_stored_unsettled_and_the_next_run_doubles_nothing() -> None:
    stack = Stack(*(mail(n) for n in range(1, 16)))
    stack.world.crash_on["download"] = 13  # the connection drops reading the thirteenth mail

    with pytest.raises(Interrupted, match="OSError"):
        stack.fetch()
    # The first batch was handed over and settled; the two stored after it are queued, not settled.
    assert stack.world.steps("settle") == [list(range(1, 11))]
    assert stack.world.steps("queue")[-1] == [f"raw/support/7-{uid:010d}.eml" for uid in (11, 12)]
    assert stack.cursors.imap["support"].last_uid == 10
    assert sorted(stack.world.mails) == list(range(11, 16))

    assert stack.fetch().fetched == 5
    assert len(stack.queue.delivered) == 15
    assert stack.queued_subjects() == [f"Mail {n:02d}" for n in range(1, 16)]


def test_a_large_mail_whose_download_fails_leaves_no_object_and_is_read_again() -> None:
    stack = Stack(mail(1), mail(2, b"x" * (fetching.STREAM_ABOVE_BYTES + 1)))
    stack.world.crash_on["chunks"] = 1

    with pytest.raises(Interrupted):
        stack.fetch()
    assert list(stack.bucket.objects) == ["raw/support/7-0000000001.eml"]  # the first is stored and queued
    assert [q.key for q, _ in stack.queue.delivered] == ["raw/support/7-0000000001.eml"]

    assert stack.fetch().fetched == 2
    assert len(stack.bucket.objects) == len(stack.queue.delivered) == 2


def test_a_batch_the_queue_refuses_is_not_settled_and_is_read_again() -> None:
    stack = Stack(*(mail(n) for n in range(1, 4)))
    stack.queue.refuse = 1

    with pytest.raises(RuntimeError, match="queueing failed for 1 of 3"):
        stack.fetch()
    assert stack.world.steps("settle") == [] and sorted(stack.world.mails) == [1, 2, 3]

    assert stack.fetch().fetched == 3
    assert stack.queued_subjects() == ["Mail 01", "Mail 02", "Mail 03"]


def test_a_password_changed_since_the_container_cached_it_is_read_again_and_the_run_goes_on() -> None:
    rig = Stack(mail(1), mail(2))
    rig.cached_password = "changed since"
    report = rig.fetch()
    assert report.fetched == 2
    assert rig.password_reads == [False, True, False]  # the cached one was refused: read afresh, login again
