"""Fetching a mailbox: read what was not read before, store it raw in S3, queue it, then settle it.

Order is what makes it safe. For each batch of up to ten mails: every raw message is written to S3 under
a deterministic key, the batch is sent to the FIFO intake queue, and only then are the mails marked,
moved or deleted on the server and the cursor advanced. A crash anywhere before that re-reads the same
mails next time into the same keys; processing recognises them, so nothing is lost and nothing doubled.
"""

from __future__ import annotations

import contextlib
import hashlib
import imaplib
import poplib
import re
import ssl
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities import parameters
from imap_tools import AND, BaseMailBox, MailBox, MailBoxStartTls, MailBoxUnencrypted, MailMessageFlags, U

from mailintake.aws_clients import client
from mailintake.config_check import ConfigurationError, checked_run
from mailintake.handover import HEADER_SCAN_BYTES, QueuedMessage, conversation_group
from mailintake.mailboxes import get_mailbox
from mailintake.settings import Settings
from mailintake.store import (
    MailboxRecord,
    acquire_lease,
    add_uidls,
    compact_uidls,
    load_cursor,
    load_uidls,
    release_lease,
    save_cursor,
    utcnow,
)

logger = Logger(child=True)

BATCH = 10  # SQS SendMessageBatch maximum
# Batches settled between two writes of the cursor. Forgetting settled mail only makes a crashed run's
# successor read it again (into the same keys, deduplicated), so one write per batch would buy nothing.
REMEMBER_EVERY = 5
SOCKET_TIMEOUT = 30
# Mails larger than this go from the server to S3 in parts (a multipart upload), never whole in memory, so
# the fetch function's memory does not depend on the largest mail in the mailbox.
STREAM_ABOVE_BYTES = 8 * 1024 * 1024
PART_BYTES = 8 * 1024 * 1024  # S3 parts must be at least 5 MiB, except the last
_FETCH_ITEM = re.compile(rb"(UID|RFC822\.SIZE) (\d+)")


@dataclass
class FetchReport:
    mailbox: str
    fetched: int = 0
    # done | more (stopped before the deadline) | interrupted (the server went away mid-run) | locked |
    # disabled | unknown | config-error
    status: str = "done"
    error: str = ""
    keys: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Pending:
    """One mail on the server that has not been stored yet."""

    ref: str  # the server's handle: IMAP UID, or POP3 message number
    key_suffix: str  # the stable part of its S3 key
    size: int = 0  # as the server announces it (RFC822.SIZE, POP3 LIST); 0 when unknown


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """Verifying context; a mailbox's own CA bundle (PEM) is trusted in addition to the system's."""
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cadata=ca_bundle)
    return context


class ImapSource:
    def __init__(self, mailbox: MailboxRecord, password: str) -> None:
        self.mailbox = mailbox
        self.cursor = cursor = load_cursor(mailbox.name)
        self.box = self._connect(mailbox)
        self.box.login(mailbox.username, password, initial_folder=mailbox.folder)
        status = self.box.folder.status(mailbox.folder, ["UIDVALIDITY"])
        uidvalidity = int(status["UIDVALIDITY"])
        self.changed = cursor.uidvalidity != uidvalidity  # the cursor needs writing
        if self.changed:
            if cursor.uidvalidity is not None:
                # UIDs were renumbered: read the folder again. Keys include UIDVALIDITY and processing
                # deduplicates by Message-ID, so mails read before make nothing new.
                logger.warning("UIDVALIDITY changed; rereading folder", extra={"mailbox": mailbox.name})
            cursor.uidvalidity = uidvalidity
            cursor.last_uid = 0

    @staticmethod
    def _connect(mailbox: MailboxRecord) -> BaseMailBox:
        host, port = mailbox.host, int(mailbox.port)
        if mailbox.security == "ssl":
            return MailBox(host, port, timeout=SOCKET_TIMEOUT, ssl_context=tls_context(mailbox.ca_bundle))
        if mailbox.security == "starttls":
            return MailBoxStartTls(host, port, timeout=SOCKET_TIMEOUT, ssl_context=tls_context(mailbox.ca_bundle))
        return MailBoxUnencrypted(host, port, timeout=SOCKET_TIMEOUT)

    def pending(self) -> Iterator[Pending]:
        last = int(self.cursor.last_uid or 0)
        # "UID n:*" always matches the newest mail, even when its UID is below n: filter.
        uids = sorted(int(u) for u in self.box.uids(AND(uid=U(str(last + 1), "*"))) if int(u) > last)
        sizes = self._sizes(uids)
        for uid in uids:
            yield Pending(str(uid), f"{self.cursor.uidvalidity}-{uid:010d}", sizes.get(uid, 0))

    def _sizes(self, uids: list[int]) -> dict[int, int]:
        """RFC822.SIZE of every new mail, in one command."""
        if not uids:
            return {}
        typ, data = self.box.client.uid("FETCH", f"{uids[0]}:{uids[-1]}", "(RFC822.SIZE)")
        sizes: dict[int, int] = {}
        for line in data if typ == "OK" else ():
            if isinstance(line, bytes):
                found = dict(_FETCH_ITEM.findall(line))
                if b"UID" in found and b"RFC822.SIZE" in found:
                    sizes[int(found[b"UID"])] = int(found[b"RFC822.SIZE"])
        return sizes

    def download(self, item: Pending) -> bytes:
        # BODY.PEEK leaves \Seen alone: the mailbox's own action decides what happens to the mail.
        typ, data = self.box.client.uid("FETCH", item.ref, "(BODY.PEEK[])")
        if typ != "OK":
            raise imaplib.IMAP4.error(f"FETCH {item.ref} failed: {data!r}")
        for part in data:
            if isinstance(part, tuple):
                return bytes(part[1])
        raise imaplib.IMAP4.error(f"FETCH {item.ref} returned no message")

    def chunks(self, item: Pending) -> Iterator[bytes]:
        """The mail in parts of PART_BYTES, by partial FETCH (RFC 3501 6.4.5), until one comes back short."""
        offset = 0
        while True:
            typ, data = self.box.client.uid("FETCH", item.ref, f"(BODY.PEEK[]<{offset}.{PART_BYTES}>)")
            if typ != "OK":
                raise imaplib.IMAP4.error(f"FETCH {item.ref} failed: {data!r}")
            part = next((bytes(d[1]) for d in data if isinstance(d, tuple)), b"")
            if part:
                yield part
            if len(part) < PART_BYTES:
                return
            offset += len(part)

    def settle(self, items: list[Pending]) -> None:
        uids = [i.ref for i in items]
        if self.mailbox.after == "seen":
            self.box.flag(uids, MailMessageFlags.SEEN, True)
        elif self.mailbox.after == "move":
            self.box.move(uids, self.mailbox.move_to or "")
        elif self.mailbox.after == "delete":
            self.box.delete(uids)
        self.cursor.last_uid = max(int(self.cursor.last_uid or 0), *(int(u) for u in uids))
        self.changed = True

    def remember(self) -> None:
        if self.changed:
            save_cursor(self.cursor)
            self.changed = False

    def __enter__(self) -> ImapSource:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            self.box.logout()


class Pop3Source:
    def __init__(self, mailbox: MailboxRecord, password: str) -> None:
        self.mailbox = mailbox
        self.parts = load_uidls(mailbox.name)  # the UIDLs already stored, as recorded
        self.known: set[str] = set().union(*self.parts.values())
        self.settled: set[str] = set()  # settled in this run, not yet remembered
        self.deleted: set[str] = set()
        self.run = utcnow().strftime("%Y%m%dT%H%M%S%f")
        host, port = mailbox.host, int(mailbox.port)
        self.conn: poplib.POP3
        if mailbox.security == "ssl":
            self.conn = poplib.POP3_SSL(host, port, timeout=SOCKET_TIMEOUT, context=tls_context(mailbox.ca_bundle))
        else:
            self.conn = poplib.POP3(host, port, timeout=SOCKET_TIMEOUT)
            if mailbox.security == "starttls":
                self.conn.stls(context=tls_context(mailbox.ca_bundle))
        self.conn.user(mailbox.username)
        self.conn.pass_(password)
        self.listing: dict[str, str] = {}  # uidl -> message number, in server order
        for line in self.conn.uidl()[1]:
            number, uidl = line.decode("ascii", "replace").split(" ", 1)
            self.listing[uidl] = number
        self.sizes: dict[str, int] = {}  # message number -> octets
        for line in self.conn.list()[1]:
            number, octets = line.decode("ascii", "replace").split(" ", 1)
            self.sizes[number] = int(octets.split()[0])

    def pending(self) -> Iterator[Pending]:
        if self.mailbox.after == "delete":
            # Stored and queued in an earlier run that died before QUIT committed its deletes.
            leftovers = [Pending(n, "") for u, n in self.listing.items() if u in self.known]
            if leftovers:
                self._delete(leftovers)
        for uidl, number in self.listing.items():
            if uidl not in self.known:
                yield Pending(number, "pop3-" + hashlib.sha256(uidl.encode()).hexdigest()[:32],
                              self.sizes.get(number, 0))

    def download(self, item: Pending) -> bytes:
        return b"".join(self.chunks(item))

    def chunks(self, item: Pending) -> Iterator[bytes]:
        """RETR, read in parts of about PART_BYTES, dot-unstuffed, with CRLF line ends.

        poplib's own retr() refuses lines over 2,048 bytes ("line too long"), which real mail (unwrapped
        HTML) has, and holds the whole mail as a list of lines: this reads the same response from the
        connection's file, with no line limit.
        """
        # poplib has no public way to read a multi-line response in parts: speak RETR on its socket.
        self.conn.sock.sendall(f"RETR {int(item.ref)}\r\n".encode("ascii"))
        stream = self.conn.file
        status = stream.readline(512)
        if not status.startswith(b"+OK"):
            raise poplib.error_proto(status.decode("ascii", "replace").strip() or "-ERR EOF")
        buffer = bytearray()
        at_line_start = True
        while True:
            line = stream.readline(PART_BYTES)
            if line.endswith(b"\r"):
                line += stream.read(1)  # a CRLF split by the read limit stays one line end
            if not line:
                raise poplib.error_proto("-ERR EOF in RETR")
            if at_line_start:
                if line in (b".\r\n", b".\n"):
                    break
                if line.startswith(b".."):
                    line = line[1:]  # dot-unstuffing (RFC 1939 3)
            at_line_start = line.endswith(b"\n")
            if at_line_start:
                buffer += line[:-2] if line.endswith(b"\r\n") else line[:-1]
                buffer += b"\r\n"
            else:
                buffer += line  # the rest of this line comes with the next read
            if len(buffer) >= PART_BYTES:
                yield bytes(buffer)
                buffer.clear()
        if buffer:
            yield bytes(buffer)

    def _delete(self, items: list[Pending]) -> None:
        numbers = {i.ref for i in items}
        for uidl, number in self.listing.items():
            if number in numbers:
                self.conn.dele(int(number))
                self.deleted.add(uidl)

    def settle(self, items: list[Pending]) -> None:
        numbers = {i.ref for i in items}
        settled = {u for u, n in self.listing.items() if n in numbers}
        self.settled |= settled
        self.known |= settled
        if self.mailbox.after == "delete":
            self._delete(items)

    def remember(self) -> None:
        if not self.settled:
            return
        part = add_uidls(self.mailbox.name, f"{self.run}-{len(self.parts):05d}", self.settled)
        self.parts[part] = self.settled
        self.settled = set()

    def __enter__(self) -> Pop3Source:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            # Leave without QUIT: the server rolls back the deletes, and the cursor still knows the UIDLs.
            with contextlib.suppress(OSError):
                self.conn.close()
            return
        self.conn.quit()  # commits the deletes
        # Forget UIDLs no longer on the server, and merge this run's small records.
        compact_uidls(self.mailbox.name, self.parts,
                      {u for u in self.known if u in self.listing and u not in self.deleted})


# Both offer pending() -> download() or chunks() -> settle() -> remember(): settle applies the after-storing
# action to mails already stored and queued; remember records them as read (the IMAP cursor, or the POP3
# UIDLs of the batch).
MailSource = ImapSource | Pop3Source


def open_source(mailbox: MailboxRecord, password: str) -> MailSource:
    if mailbox.security == "none":
        # An explicit choice, but the password crosses the network in clear text: say so every run.
        logger.warning("mailbox uses security none: the password is sent unencrypted",
                       extra={"mailbox": mailbox.name, "host": mailbox.host})
    if mailbox.protocol == "imap":
        return ImapSource(mailbox, password)
    return Pop3Source(mailbox, password)


def raw_key(mailbox: str, key_suffix: str) -> str:
    return f"raw/{mailbox}/{key_suffix}.eml"


# What a mail server going away mid-run raises: a dropped connection, a BYE (imaplib's abort is an
# IMAP4.error), a timeout, a POP3 error reply to a command that worked a moment ago.
INTERRUPTIONS: tuple[type[BaseException], ...] = (imaplib.IMAP4.error, poplib.error_proto, OSError, EOFError)


class Interrupted(Exception):
    """The server went away after the mailbox was opened. What was handed over stays; the rest waits."""


class Fetcher:
    """One run over one mailbox."""

    def __init__(self, settings: Settings, remaining_ms: Callable[[], int], run_id: str) -> None:
        self.settings = settings
        self.remaining_ms = remaining_ms
        self.run_id = run_id
        self.s3 = client("s3", settings.region)
        self.sqs = client("sqs", settings.region)
        self.batches = 0

    def run(self, name: str) -> FetchReport:
        report = FetchReport(name)
        mailbox = get_mailbox(name)
        if mailbox is None:
            report.status = "unknown"
            return report
        if not mailbox.enabled:
            report.status = "disabled"
            return report
        lease_seconds = max(60, self.remaining_ms() // 1000 + 30)
        if not acquire_lease(name, self.run_id, lease_seconds):
            report.status = "locked"
            return report
        try:
            with checked_run(self.settings, mailbox):
                try:
                    self._drain(mailbox, report)
                except Interrupted as exc:
                    # Not a configuration problem (the login and the folder worked): no admin mail. If the
                    # server stays away, the next run's check reports it.
                    report.status = "interrupted"
                    report.error = str(exc.__cause__ or exc)[:500]
                    logger.warning("mail server went away mid-run; the rest waits for the next run",
                                   extra={"mailbox": name, "fetched": report.fetched, "error": report.error})
        except ConfigurationError:
            report.status = "config-error"  # logged and reported by the check; other mailboxes go on
        finally:
            release_lease(name, self.run_id)
        return report

    def _drain(self, mailbox: MailboxRecord, report: FetchReport) -> None:
        password = parameters.get_secret(mailbox.secret_name, max_age=300)
        margin_ms = self.settings.deadline_margin_seconds * 1000
        with open_source(mailbox, str(password)) as source:
            self._read(source, mailbox, report, margin_ms)

    def _read(self, source: MailSource, mailbox: MailboxRecord, report: FetchReport, margin_ms: int) -> None:
        batch: list[tuple[Pending, QueuedMessage, str]] = []
        try:
            for item in source.pending():
                if self.remaining_ms() < margin_ms:
                    report.status = "more"
                    break
                if item.size > STREAM_ABOVE_BYTES:
                    batch.append((item, *self._store_in_parts(mailbox.name, item, source.chunks(item))))
                else:
                    raw = source.download(item)
                    batch.append((item, self._store(mailbox.name, item, raw), conversation_group(raw)))
                    del raw  # the inlined copy (small mails only) is all that stays in memory
                if len(batch) == BATCH:
                    self._hand_over(source, batch, report)
            if batch:
                self._hand_over(source, batch, report)
        except INTERRUPTIONS as exc:
            if batch:
                # These are safely in S3: queue them now, so they get an outcome even if they vanish from
                # the server before the next run. Unsettled, they are read again next run into the same
                # keys, which the queue's deduplication and processing both recognise.
                self._enqueue(batch)
                report.fetched += len(batch)
                report.keys.extend(q.key for _, q, _ in batch)
            raise Interrupted(f"{type(exc).__name__}: {exc}") from exc
        finally:
            # Also after an interruption: what was settled is remembered (the cursor is in DynamoDB).
            source.remember()

    def _store(self, mailbox: str, item: Pending, raw: bytes) -> QueuedMessage:
        queued = QueuedMessage.of(self.settings.bucket, raw_key(mailbox, item.key_suffix), mailbox, raw)
        self.s3.put_object(
            Bucket=self.settings.bucket, Key=queued.key, Body=raw, ContentType="message/rfc822",
            Metadata={"mailbox": mailbox, "sha256": queued.sha256},
        )
        return queued

    def _store_in_parts(self, mailbox: str, item: Pending, chunks: Iterator[bytes]) -> tuple[QueuedMessage, str]:
        """Store a large mail part by part (multipart upload); its queue message and conversation group."""
        key = raw_key(mailbox, item.key_suffix)
        bucket = self.settings.bucket
        # No sha256 in the metadata: it is known only at the end. The queue message carries it.
        upload_id = self.s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType="message/rfc822",
                                                    Metadata={"mailbox": mailbox})["UploadId"]
        digest, size, head, parts = hashlib.sha256(), 0, b"", []
        try:
            for number, chunk in enumerate(chunks, start=1):
                digest.update(chunk)
                size += len(chunk)
                if len(head) < HEADER_SCAN_BYTES:
                    head += chunk[: HEADER_SCAN_BYTES - len(head)]
                etag = self.s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                           Body=chunk)["ETag"]
                parts.append({"PartNumber": number, "ETag": etag})
            self.s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                              MultipartUpload={"Parts": parts})
        except BaseException:
            with contextlib.suppress(Exception):
                self.s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            raise
        return QueuedMessage(bucket, key, mailbox, digest.hexdigest(), size), conversation_group(head)

    def _enqueue(self, batch: list[tuple[Pending, QueuedMessage, str]]) -> None:
        entries: list[dict[str, Any]] = [
            {
                "Id": str(i),
                "MessageBody": queued.to_json(),
                "MessageGroupId": group,  # one conversation: an original before its replies
                "MessageDeduplicationId": hashlib.sha256(queued.key.encode()).hexdigest(),
            }
            for i, (_item, queued, group) in enumerate(batch)
        ]
        response = self.sqs.send_message_batch(QueueUrl=self.settings.queue_url, Entries=entries)
        if response.get("Failed"):
            # Nothing is settled: the whole batch is read again next run (same keys, deduplicated).
            raise RuntimeError(f"queueing failed for {len(response['Failed'])} of {len(entries)} messages")

    def _hand_over(self, source: MailSource, batch: list[tuple[Pending, QueuedMessage, str]],
                   report: FetchReport) -> None:
        self._enqueue(batch)
        items = [item for item, _, _ in batch]
        report.fetched += len(items)
        report.keys.extend(q.key for _, q, _ in batch)
        batch.clear()  # queued: from here on, an interruption has nothing left to salvage
        source.settle(items)
        self.batches += 1
        if self.batches % REMEMBER_EVERY == 0:
            source.remember()


class BadEvent(ValueError):
    pass


def fetch_scheduled(event: Mapping[str, Any], settings: Settings, remaining_ms: Callable[[], int],
                    run_id: str) -> FetchReport:
    """A schedule's event, ``{"mailbox": NAME}``: read that mailbox once."""
    name = event.get("mailbox")
    if not isinstance(name, str) or not name:
        raise BadEvent('the fetch event must be {"mailbox": NAME}')
    return Fetcher(settings, remaining_ms, run_id).run(name)
