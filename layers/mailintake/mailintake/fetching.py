"""Fetching a mailbox: read what was not read before, store it raw in S3, queue it, then settle it.

Order is what makes it safe. For each batch of up to ten mails: every raw message is written to S3 under
a deterministic key, the batch is sent to the FIFO intake queue, and only then are the mails marked,
moved or deleted on the server and the cursor advanced. A crash anywhere before that re-reads the same
mails next time into the same keys; processing recognises them, so nothing is lost and nothing doubled.

The loop talks to its collaborators through interfaces, bundled in :class:`FetchServices`: the mail server
(:class:`~mailintake.sources.MailSource`, whose contract is in :mod:`mailintake.sources.protocol`), the
cursor (:class:`~mailintake.sources.CursorStore`), the raw mail (:class:`RawMailStore`, S3) and the queue
(:class:`IntakeQueue`, SQS). ``FetchServices.on_aws`` is the real stack; tests give fakes.
"""

from __future__ import annotations

import contextlib
import hashlib
import poplib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities import parameters
from imap_tools.errors import MailboxLoginError

from mailintake import runs
from mailintake.aws_clients import client
from mailintake.config_check import ConfigurationError, checked_run
from mailintake.handover import HEADER_SCAN_BYTES, QueuedMessage, conversation_group
from mailintake.mailboxes import get_mailbox
from mailintake.outcomes import FetchStatus
from mailintake.runtime import Runtime
from mailintake.settings import Settings
from mailintake.sources import (
    INTERRUPTIONS,
    CursorStore,
    DynamoCursorStore,
    MailSource,
    Pending,
    SourceFactory,
    open_source,
)
from mailintake.store import MailboxRecord, acquire_lease, release_lease
from mailintake.system_settings import ConfigCache
from mailintake.tls import TlsContexts
from mailintake.tokens import MailboxLogin, TokenProvider

logger = Logger(child=True)

# What a mail server answers to a wrong password (IMAP: a NO to LOGIN; POP3: -ERR to USER/PASS).
LOGIN_REFUSED = (MailboxLoginError, poplib.error_proto)

BATCH = 10  # SQS SendMessageBatch maximum
# Batches settled between two writes of the cursor. Forgetting settled mail only makes a crashed run's
# successor read it again (into the same keys, deduplicated), so one write per batch would buy nothing.
REMEMBER_EVERY = 5
# Mails larger than this go from the server to S3 in parts (a multipart upload), never whole in memory, so
# the fetch function's memory does not depend on the largest mail in the mailbox.
STREAM_ABOVE_BYTES = 8 * 1024 * 1024
# Raw mails of a batch are written to S3 side by side while the next ones download: each write waits on
# the network (20-30 ms in AWS), and one after another they were most of a run's time. At most this many
# writes, and this many bytes of mail waiting to be written, at once (memory stays bounded whatever the
# sizes: a mail over STREAM_ABOVE_BYTES is written in parts, on its own).
RAW_WRITERS = 4
RAW_BYTES_IN_FLIGHT = 16 * 1024 * 1024


@dataclass
class FetchReport:
    mailbox: str
    fetched: int = 0
    # done | more (stopped before the deadline) | interrupted (the server went away mid-run) | locked |
    # disabled | unknown | config-error
    status: FetchStatus = "done"
    error: str = ""
    keys: list[str] = field(default_factory=list)
    # Of every mailbox, after this run (mailintake.health): the alarms' two stack-wide counts. None when this
    # run changed nothing to judge by (unknown mailbox, or locked: another run is at work).
    mailboxes_failing: int | None = None
    mailboxes_overdue: int | None = None


def raw_key(mailbox: str, key_suffix: str) -> str:
    return f"raw/{mailbox}/{key_suffix}.eml"


def mailbox_prefix(mailbox: str) -> str:
    """What every raw key of ``mailbox`` starts with: the correlation id of a run's lines about no one mail."""
    return raw_key(mailbox, "")[: -len(".eml")]


class Interrupted(Exception):
    """The server went away after the mailbox was opened. What was handed over stays; the rest waits."""


class RawMailStore(Protocol):
    """Where raw mails are kept (S3), each whole under its key."""

    def put(self, key: str, raw: bytes, metadata: Mapping[str, str]) -> None:
        """Store a mail held in memory."""

    def put_in_parts(self, key: str, parts: Iterable[bytes], metadata: Mapping[str, str]) -> None:
        """Store a mail part by part as ``parts`` yields them; nothing is left under ``key`` if they fail."""


class IntakeQueue(Protocol):
    """The queue to processing (SQS FIFO): a message per mail, first in first out within a conversation."""

    def send(self, batch: Sequence[tuple[QueuedMessage, str]]) -> int:
        """Queue each (message, conversation group) of at most ten; how many were refused. A message whose
        key was queued shortly before is dropped as a duplicate (FIFO deduplication by key)."""


class S3RawMailStore:
    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def put(self, key: str, raw: bytes, metadata: Mapping[str, str]) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=raw, ContentType="message/rfc822",
                           Metadata=dict(metadata))

    def put_in_parts(self, key: str, parts: Iterable[bytes], metadata: Mapping[str, str]) -> None:
        """A multipart upload, aborted if anything fails before it is complete."""
        bucket = self.bucket
        upload_id = self.s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType="message/rfc822",
                                                    Metadata=dict(metadata))["UploadId"]
        uploaded = []
        try:
            for number, part in enumerate(parts, start=1):
                etag = self.s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                           Body=part)["ETag"]
                uploaded.append({"PartNumber": number, "ETag": etag})
            self.s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                              MultipartUpload={"Parts": uploaded})
        except BaseException:
            with contextlib.suppress(Exception):
                self.s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            raise


class SqsIntakeQueue:
    def __init__(self, sqs: Any, queue_url: str) -> None:
        self.sqs = sqs
        self.queue_url = queue_url

    def send(self, batch: Sequence[tuple[QueuedMessage, str]]) -> int:
        entries: list[dict[str, Any]] = [
            {
                "Id": str(i),
                "MessageBody": queued.to_json(),
                "MessageGroupId": group,  # one conversation: an original before its replies
                "MessageDeduplicationId": hashlib.sha256(queued.key.encode()).hexdigest(),
            }
            for i, (queued, group) in enumerate(batch)
        ]
        response = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
        return len(response.get("Failed") or ())


# How long a container keeps a mailbox's password. An hour: a mailbox polled every five minutes reads its
# secret 12 times a day, not 288 (Secrets Manager bills each read: $0.04 a month per mailbox at five-minute
# reads, of the $0.10 an idle mailbox may cost; bench/cost.py). A password changed meanwhile costs one
# refused login: the run reads the secret afresh and logs in again (Fetcher.drain).
PASSWORD_MAX_AGE_SECONDS = 3600


def mailbox_password(mailbox: MailboxRecord) -> str:
    """The mailbox's password, from Secrets Manager (cached per container for PASSWORD_MAX_AGE_SECONDS)."""
    return str(parameters.get_secret(mailbox.secret_name, max_age=PASSWORD_MAX_AGE_SECONDS))


def reread_mailbox_password(mailbox: MailboxRecord) -> str:
    """The mailbox's password read anew from Secrets Manager (and cached again)."""
    return str(parameters.get_secret(mailbox.secret_name, max_age=PASSWORD_MAX_AGE_SECONDS, force_fetch=True))


@dataclass(frozen=True)
class FetchServices:
    """Everything a fetch run reads from and writes to, besides the mailbox's record and its lease."""

    open_source: SourceFactory
    cursors: CursorStore
    raw_mail: RawMailStore
    queue: IntakeQueue
    password: Callable[[MailboxRecord], str] = mailbox_password
    tokens: TokenProvider | None = None  # OAuth mailboxes' tokens: the container's (Runtime.tokens)
    reread_password: Callable[[MailboxRecord], object] = reread_mailbox_password
    tls: TlsContexts | None = None  # the container's TLS contexts (Runtime.tls)

    @classmethod
    def on_aws(cls, settings: Settings, tokens: TokenProvider | None = None,
               tls: TlsContexts | None = None) -> FetchServices:
        """The real ones: mail servers, DynamoDB, S3, SQS, Secrets Manager, the identity providers."""
        return cls(open_source, DynamoCursorStore(), S3RawMailStore(client("s3", settings.region), settings.bucket),
                   SqsIntakeQueue(client("sqs", settings.region), settings.queue_url),
                   tokens=tokens or TokenProvider.for_settings(settings), tls=tls)

    def login(self, mailbox: MailboxRecord) -> MailboxLogin:
        return MailboxLogin(mailbox, self.tokens or TokenProvider(_NoSecrets()), self.password, self.tls)


class _NoSecrets:
    """The secret store of services built without token provider (tests of password mailboxes)."""

    def read(self, name: str) -> str:
        raise LookupError(f"no secret store to read {name} from")

    def write(self, name: str, value: str) -> None:
        raise LookupError(f"no secret store to write {name} to")


# A mail read and stored: what the server calls it, its queue message, its conversation group.
Stored = tuple[Pending, QueuedMessage, str]


class _Writes:
    """Raw mails being written to S3 by a run's writer threads; :meth:`wait` until all are written."""

    def __init__(self, pool: ThreadPoolExecutor, raw_mail: RawMailStore) -> None:
        self.pool = pool
        self.raw_mail = raw_mail
        self.pending: deque[tuple[Future[None], int]] = deque()

    def put(self, key: str, raw: bytes, metadata: Mapping[str, str]) -> None:
        # Bounded: past RAW_WRITERS writes or RAW_BYTES_IN_FLIGHT bytes waiting, the oldest is waited for.
        while self.pending and (len(self.pending) >= RAW_WRITERS
                                or sum(size for _, size in self.pending) + len(raw) > RAW_BYTES_IN_FLIGHT):
            # A failed write stays pending, so that wait() raises it again: its batch must never be queued.
            self.pending[0][0].result()
            self.pending.popleft()
        self.pending.append((self.pool.submit(self.raw_mail.put, key, raw, metadata), len(raw)))

    def wait(self) -> None:
        """Until every write submitted is done; the first that failed raises (after all have ended), and
        again on every later wait: a batch with a write that failed is never queued."""
        failure: BaseException | None = None
        for future, _ in self.pending:
            error = future.exception()
            failure = failure or error
        if failure is not None:
            raise failure
        self.pending.clear()


class Fetcher:
    """One run over one mailbox."""

    def __init__(self, settings: Settings, config: ConfigCache, remaining_ms: Callable[[], int], run_id: str,
                 services: FetchServices | None = None, tokens: TokenProvider | None = None,
                 correlate: Callable[[str], None] | None = None, tls: TlsContexts | None = None) -> None:
        self.settings = settings
        # Sets the correlation id of the handler's log lines (Powertools Logger.set_correlation_id).
        self.correlate = correlate or _no_correlation
        self.config = config  # the container's settings snapshot
        self.remaining_ms = remaining_ms
        self.run_id = run_id
        self.services = services or FetchServices.on_aws(settings, tokens, tls)
        self.batches = 0

    def run(self, name: str) -> FetchReport:
        report = FetchReport(name)
        # Until a mail is at hand, the lines of this run carry the prefix every key of the mailbox shares.
        self.correlate(mailbox_prefix(name))
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
            with checked_run(self.settings, self.config.current(), mailbox):
                try:
                    self.drain(mailbox, report)
                except Interrupted as exc:
                    # Not a configuration problem (the login and the folder worked): no admin mail. If the
                    # server stays away, the next run's check reports it.
                    report.status = "interrupted"
                    report.error = str(exc.__cause__ or exc)[:500]
                    logger.warning("mail server went away mid-run; the rest waits for the next run",
                                   extra={"mailbox": name, "fetched": report.fetched, "error": report.error})
        except ConfigurationError as exc:
            report.status = "config-error"  # logged and reported by the check; other mailboxes go on
            report.error = str(exc)[:500]  # what to fix, for `mailintake poll` (never a secret or token)
        finally:
            release_lease(name, self.run_id)
        return report

    def drain(self, mailbox: MailboxRecord, report: FetchReport) -> None:
        """Open the mailbox and read it until it is empty or time runs short; raises Interrupted when the
        server goes away midway."""
        services = self.services
        margin_ms = self.settings.deadline_margin_seconds * 1000
        def seconds_left() -> float:
            return (self.remaining_ms() - margin_ms) / 1000  # a throttled server is waited for until then

        login = services.login(mailbox)
        try:
            source = services.open_source(mailbox, login, services.cursors, seconds_left)
        except LOGIN_REFUSED:
            if login.oauth:
                raise  # tokens are replaced by the source itself (MailboxLogin.rejected)
            # Perhaps the password was changed since this container read it: read it again, log in once more.
            # A login refused with the current password is the configuration problem the check reports.
            services.reread_password(mailbox)
            source = services.open_source(mailbox, services.login(mailbox), services.cursors, seconds_left)
        with source:
            self._read(source, mailbox, report, margin_ms)

    def _read(self, source: MailSource, mailbox: MailboxRecord, report: FetchReport, margin_ms: int) -> None:
        batch: list[Stored] = []
        with ThreadPoolExecutor(max_workers=RAW_WRITERS, thread_name_prefix="raw-writer") as pool:
            writes = _Writes(pool, self.services.raw_mail)
            try:
                for item in source.pending():
                    if self.remaining_ms() < margin_ms:
                        report.status = "more"
                        break
                    # Every log line about this mail, here and in the process function, carries its key.
                    self.correlate(raw_key(mailbox.name, item.key_suffix))
                    if item.size > STREAM_ABOVE_BYTES:
                        batch.append((item, *self._store_in_parts(mailbox.name, item, source.chunks(item))))
                    else:
                        raw = source.download(item)
                        batch.append((item, self._store(mailbox.name, item, raw, writes), conversation_group(raw)))
                        del raw  # the inlined copy (small mails only) and the pending write are all that stay
                    if len(batch) == BATCH:
                        writes.wait()  # every raw mail of the batch in S3 before any is queued
                        self._hand_over(source, batch, report)
                if batch:
                    writes.wait()
                    self._hand_over(source, batch, report)
            except INTERRUPTIONS as exc:
                cause: BaseException = exc
                if batch:
                    # Once written, these are safely in S3: queue them now, so they get an outcome even if
                    # they vanish from the server before the next run. Unsettled, they are read again next
                    # run into the same keys, which the queue's deduplication and processing both recognise.
                    try:
                        writes.wait()
                    except INTERRUPTIONS as failed_write:
                        cause = failed_write  # not all in S3: nothing of the batch is queued or settled
                    else:
                        self._enqueue(batch)
                        report.fetched += len(batch)
                        report.keys.extend(q.key for _, q, _ in batch)
                raise Interrupted(f"{type(cause).__name__}: {cause}") from cause
            finally:
                # Also after an interruption: what was settled is remembered (the cursor is in DynamoDB).
                source.remember()

    def _store(self, mailbox: str, item: Pending, raw: bytes, writes: _Writes) -> QueuedMessage:
        queued = QueuedMessage.of(self.settings.bucket, raw_key(mailbox, item.key_suffix), mailbox, raw, item.arrived)
        writes.put(queued.key, raw, {"mailbox": mailbox, "sha256": queued.sha256})
        return queued

    def _store_in_parts(self, mailbox: str, item: Pending, chunks: Iterator[bytes]) -> tuple[QueuedMessage, str]:
        """Store a large mail part by part; its queue message and conversation group."""
        key = raw_key(mailbox, item.key_suffix)
        digest, size, head = hashlib.sha256(), 0, b""

        def measured() -> Iterator[bytes]:
            nonlocal size, head
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                if len(head) < HEADER_SCAN_BYTES:
                    head += chunk[: HEADER_SCAN_BYTES - len(head)]
                yield chunk

        # No sha256 in the metadata: it is known only at the end. The queue message carries it.
        self.services.raw_mail.put_in_parts(key, measured(), {"mailbox": mailbox})
        queued = QueuedMessage(self.settings.bucket, key, mailbox, digest.hexdigest(), size, arrived=item.arrived)
        return queued, conversation_group(head)

    def _enqueue(self, batch: list[Stored]) -> None:
        failed = self.services.queue.send([(queued, group) for _item, queued, group in batch])
        if failed:
            # Nothing is settled: the whole batch is read again next run (same keys, deduplicated).
            raise RuntimeError(f"queueing failed for {failed} of {len(batch)} messages")

    def _hand_over(self, source: MailSource, batch: list[Stored], report: FetchReport) -> None:
        self._enqueue(batch)
        items = [item for item, _, _ in batch]
        report.fetched += len(items)
        report.keys.extend(q.key for _, q, _ in batch)
        batch.clear()  # queued: from here on, an interruption has nothing left to salvage
        source.settle(items)
        self.batches += 1
        if self.batches % REMEMBER_EVERY == 0:
            source.remember()


def _no_correlation(key: str) -> None:
    del key


class BadEvent(ValueError):
    pass


def fetch_scheduled(event: Mapping[str, Any], runtime: Runtime, remaining_ms: Callable[[], int],
                    run_id: str, correlate: Callable[[str], None] | None = None) -> FetchReport:
    """A schedule's event, ``{"mailbox": NAME}``: read that mailbox once. ``correlate`` is given each
    mail's raw key as the run gets to it (the handler's log lines carry it)."""
    name = event.get("mailbox")
    if not isinstance(name, str) or not name:
        raise BadEvent('the fetch event must be {"mailbox": NAME}')
    report = Fetcher(runtime.settings, runtime.config, remaining_ms, run_id, tokens=runtime.tokens,
                     correlate=correlate, tls=runtime.tls).run(name)
    if report.status not in ("unknown", "locked"):
        _remember_run(report, runtime)
    return report


def _remember_run(report: FetchReport, runtime: Runtime) -> None:
    """Write the run's record and judge every mailbox by theirs (one query, one write). A failure here is
    logged, never the run's: the mail is stored and queued already."""
    try:
        summaries = runs.load_all()
        summaries[report.mailbox] = runs.record(summaries.get(report.mailbox), report.mailbox, report.status,
                                                report.fetched, report.error)
        health = runs.assess_all(runtime.config.current().mailboxes, summaries)
    except Exception:
        logger.exception("the run record could not be written", extra={"mailbox": report.mailbox})
        return
    report.mailboxes_failing = sum(1 for h in health if h.failing)
    report.mailboxes_overdue = sum(1 for h in health if h.overdue)
    for own in (h for h in health if h.name == report.mailbox and h.needs_attention):
        logger.warning("mailbox needs attention", extra={"mailbox": own.name, "problems": own.problems})
