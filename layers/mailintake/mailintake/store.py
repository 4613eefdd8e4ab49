"""The item store: pynamodb models of the one DynamoDB table, and the writes that must be atomic.

Single-table design. Every record has ``pk``/``sk``; records an admin lists also carry ``kind`` and
``sort`` so the ``by-kind`` index returns them in order. An item, its message-id record and its ledger
record are written in one transaction, so a retried or duplicated message can never make a second item.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist, PutError, TransactWriteError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from mailintake.outcomes import Status
from mailintake.settings import Settings


def utcnow() -> datetime:
    return datetime.now(UTC)


class _TableMeta:
    """Shared by every model; :func:`bind` points it at the stack's table."""

    table_name = "mailintake"
    region = "us-east-1"


class ByKind(GlobalSecondaryIndex["Record"]):
    class Meta:
        index_name = "by-kind"
        projection = AllProjection()

    kind = UnicodeAttribute(hash_key=True)
    sort = UnicodeAttribute(range_key=True)


class Record(Model):
    class Meta(_TableMeta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute(null=True)
    sort = UnicodeAttribute(null=True)
    by_kind = ByKind()


class AttachmentMap(MapAttribute[str, Any]):
    filename = UnicodeAttribute()
    content_type = UnicodeAttribute()
    size = NumberAttribute()
    key = UnicodeAttribute()
    content_id = UnicodeAttribute(null=True)
    inline = BooleanAttribute(default=False)


class MailboxRecord(Record):
    class Meta(_TableMeta):
        pass

    name = UnicodeAttribute()
    protocol = UnicodeAttribute()  # imap | pop3
    host = UnicodeAttribute()
    port = NumberAttribute()
    security = UnicodeAttribute()  # ssl | starttls | none
    username = UnicodeAttribute()
    secret_name = UnicodeAttribute()
    folder = UnicodeAttribute(default="INBOX")
    after = UnicodeAttribute()  # imap: seen | move | delete; pop3: delete | keep
    move_to = UnicodeAttribute(null=True)
    workspace = UnicodeAttribute(default="default")
    enabled = BooleanAttribute(default=True)
    poll_minutes = NumberAttribute(default=5)
    ca_bundle = UnicodeAttribute(null=True)  # PEM text of extra CAs to trust
    system = BooleanAttribute(default=False)  # the system-wide mailbox (at most one)
    # How it logs in: None or "password" (secret_name holds the password), "microsoft" or "google" (OAuth 2.0
    # XOAUTH2; secret_name holds the JSON mailintake.tokens reads). Absent on records from before OAuth.
    auth = UnicodeAttribute(null=True)
    oauth_flow = UnicodeAttribute(null=True)  # microsoft: app | delegated; google: service-account | refresh-token
    tenant = UnicodeAttribute(null=True)  # microsoft: the Directory (tenant) ID
    client_id = UnicodeAttribute(null=True)
    oauth_endpoint = UnicodeAttribute(null=True)  # authority host / token URL, when not the provider's own
    secret_expires = UnicodeAttribute(null=True)  # YYYY-MM-DD the client secret expires, as the admin gave it
    created = UTCDateTimeAttribute(default_for_new=utcnow)
    # Recipient routing: the mailbox's own addresses (for sub-addresses; the user name counts when it is
    # one), address (or "+detail") -> workspace, and whether a sub-address names a workspace by itself.
    addresses = ListAttribute[str](of=UnicodeAttribute, null=True)  # type: ignore[arg-type]
    routes = MapAttribute[str, Any](null=True)  # type: ignore[no-untyped-call]
    subaddress = BooleanAttribute(default=False)
    start = UnicodeAttribute(null=True)  # where reading started when it was added: new | unread | all

    @staticmethod
    def key(name: str) -> tuple[str, str]:
        return f"MAILBOX#{name}", "MAILBOX"


class ItemRecord(Record):
    class Meta(_TableMeta):
        pass

    number = NumberAttribute()
    title = UnicodeAttribute()
    description = UnicodeAttribute(default="")
    html = UnicodeAttribute(null=True)
    author = UnicodeAttribute()
    author_name = UnicodeAttribute(default="")
    # The address that wrote the mail, when the author is someone else (the guest, for an unknown sender
    # with intake.unknownSenders=guest): a party to the item like its author.
    reporter = UnicodeAttribute(null=True)
    workspace = UnicodeAttribute()
    created = UTCDateTimeAttribute()
    message_id = UnicodeAttribute()
    source_key = UnicodeAttribute()
    mailbox = UnicodeAttribute()
    attachments = ListAttribute(of=AttachmentMap, default=list)
    # What the intake rules add: people, type, priority and free fields.
    readers = UnicodeSetAttribute(null=True)
    editors = UnicodeSetAttribute(null=True)
    item_type = UnicodeAttribute(null=True)
    priority = UnicodeAttribute(null=True)
    fields = MapAttribute[str, Any](null=True)  # type: ignore[no-untyped-call]
    # Set when the item would pass DynamoDB's item limit: the S3 key of the whole texts (mailintake.bodies);
    # description (and title) are then previews, html is none.
    body_key = UnicodeAttribute(null=True)
    # What was simplified because the mail passed a bound (mailintake.bounds), in words. Annotated: pynamodb
    # types ListAttribute(of=UnicodeAttribute) as a list of UnicodeAttribute, but the values are str.
    simplified: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[arg-type]

    @staticmethod
    def key(number: int) -> tuple[str, str]:
        return f"ITEM#{number:010d}", "ITEM"


class CommentRecord(Record):
    class Meta(_TableMeta):
        pass

    item_number = NumberAttribute()
    text = UnicodeAttribute(default="")
    full_text = UnicodeAttribute(default="")
    html = UnicodeAttribute(null=True)
    author = UnicodeAttribute()
    author_name = UnicodeAttribute(default="")
    created = UTCDateTimeAttribute()
    message_id = UnicodeAttribute()
    source_key = UnicodeAttribute()
    mailbox = UnicodeAttribute()
    attachments = ListAttribute(of=AttachmentMap, default=list)
    body_key = UnicodeAttribute(null=True)  # as ItemRecord.body_key: text and full_text are then previews
    # as ItemRecord.simplified
    simplified: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, null=True)  # type: ignore[arg-type]


class LedgerRecord(Record):
    """What became of one fetched raw message (one S3 object)."""

    class Meta(_TableMeta):
        pass

    key = UnicodeAttribute()  # the raw message's S3 key
    mailbox = UnicodeAttribute()
    message_id = UnicodeAttribute(null=True)
    sender = UnicodeAttribute(default="")
    subject = UnicodeAttribute(default="")
    status = UnicodeAttribute()  # item | comment | rejected | discarded | failed
    outcome = UnicodeAttribute()  # human line: "item 12 created", "rejected: empty subject", ...
    item_number = NumberAttribute(null=True)
    step = UnicodeAttribute(null=True)  # which intake step decided
    error = UnicodeAttribute(null=True)
    attempts = NumberAttribute(default=1)
    created = UTCDateTimeAttribute()
    reply = UnicodeAttribute(null=True)  # the reply the sender got, or why none
    # Filter-list changes; the sender's authentication; "simplified: ..." for what a bound simplified.
    notes = ListAttribute(of=UnicodeAttribute, null=True)
    # Epoch seconds when DynamoDB's TTL removes the record (Source.keep_days after it was written); none: kept.
    expires_at = NumberAttribute(null=True)
    # Epoch seconds the mail arrived on its server (IMAP INTERNALDATE), when the fetch knew it.
    arrived = NumberAttribute(null=True)

    @staticmethod
    def key_for(source_key: str) -> tuple[str, str]:
        return f"MSG#{source_key}", "MSG"


class MessageIdRecord(Record):
    """A stored mail's identity -> the item it made or was threaded into; guards against doubles and
    drives threading.

    Keyed by Message-ID and a fingerprint (``Source.fingerprint_of``) of the From address and the Date
    header: a copy of one mail (a retry, a second poll, the same mail delivered to two mailboxes, also
    through a gateway that tags the subject or adds a banner to the body) has both equal; different mails
    that reuse a Message-ID (broken mailers, hand-edited copies) differ in one of them. Threading looks up
    the Message-ID alone.
    """

    class Meta(_TableMeta):
        pass

    message_id = UnicodeAttribute()
    item_number = NumberAttribute(null=True)
    source_key = UnicodeAttribute()

    @staticmethod
    def key_for(message_id: str, fingerprint: str) -> tuple[str, str]:
        return f"MSGID#{message_id}", f"MSGID#{fingerprint}"


class CounterRecord(Record):
    class Meta(_TableMeta):
        pass

    value = NumberAttribute(default=0)


class CursorRecord(Record):
    """Where an IMAP mailbox's reading stands: UIDVALIDITY and the last UID stored; for Microsoft Graph, the
    link its next delta request starts from."""

    class Meta(_TableMeta):
        pass

    uidvalidity = NumberAttribute(null=True)
    last_uid = NumberAttribute(default=0)
    delta_link = UnicodeAttribute(null=True)
    delta_round = UnicodeAttribute(null=True)  # the round the link belongs to
    delta_done = BooleanAttribute(default=False)  # the link is the round's deltaLink: the round is over
    unread_below = NumberAttribute(null=True)  # started with "unread": below it only unread mail is taken
    updated = UTCDateTimeAttribute(default_for_new=utcnow)

    @staticmethod
    def key_for(mailbox: str) -> tuple[str, str]:
        return f"CURSOR#{mailbox}", "CURSOR"


class UidlsRecord(Record):
    """A part of the POP3 UIDLs of a mailbox already stored, beside its cursor.

    POP3 has no order to resume from, only the set of UIDLs seen. One record for the whole set would be
    rewritten whole after every batch and stop at DynamoDB's 400 KB item limit (about 25,000 UIDLs of a
    mailbox that keeps its mail), so each batch adds a small record and the end of a run compacts them.
    """

    class Meta(_TableMeta):
        pass

    uidls = UnicodeSetAttribute()

    @staticmethod
    def key_for(mailbox: str, part: str) -> tuple[str, str]:
        return f"CURSOR#{mailbox}", f"UIDLS#{part}"


class LeaseRecord(Record):
    class Meta(_TableMeta):
        pass

    owner = UnicodeAttribute()
    expires = NumberAttribute()  # epoch seconds

    @staticmethod
    def key_for(mailbox: str) -> tuple[str, str]:
        return f"LEASE#{mailbox}", "LEASE"


_MODELS: tuple[type[Model], ...] = (
    Record, MailboxRecord, ItemRecord, CommentRecord, LedgerRecord, MessageIdRecord, CounterRecord,
    CursorRecord, UidlsRecord, LeaseRecord,
)


def bind(settings: Settings) -> Connection:
    """Point every model at the configured table, all through one connection; returns that connection.

    The one step that changes this module's state after import, called by :class:`mailintake.runtime.Runtime`
    when it is built. pynamodb keeps a model's table name, region and connection on the model class, so
    the binding is the process's by the library's design, not an object's; binding again to the same table
    and region keeps the binding there is (the local runner's handler containers share one process).

    pynamodb gives each model class, and each transaction, a connection of its own, and each makes its
    own botocore client; making one costs ~100 ms of service-model loading. One shared connection makes
    that a one-off per container.
    """
    if _TableMeta.table_name == settings.table and _TableMeta.region == settings.region:
        bound = [model._connection for model in _MODELS]
        if all(table is not None for table in bound) and len({id(t.connection) for t in bound if t}) == 1:
            return shared_connection()
    _TableMeta.table_name = settings.table
    _TableMeta.region = settings.region
    shared = Connection(region=settings.region)
    for model in _MODELS:
        model._connection = None
        table = model._get_connection()  # builds the table's key/index description; no request
        if model is Record:  # every model describes the same table: one description serves all
            shared.add_meta_table(table.connection.get_meta_table(settings.table))
        table.connection = shared
    return shared


def shared_connection() -> Connection:
    """The one connection :func:`bind` gave the models, for transactions written outside this module."""
    table = Record._connection
    if table is None:
        raise RuntimeError("store.bind(settings) was not called")
    return table.connection


class Numbering:
    """Item numbers, taken inside the item's own transaction; one per container (a Runtime owns it).

    Numbers are system-wide (the marker ``[HD#n]`` names an item wherever it lives) and have no gaps: the
    counter update is conditional on the value this container last saw, and the take is atomic with the
    item, so a number is never given twice and never skipped. In the usual case taking a number costs no
    request of its own; when another writer got there first the condition fails and the failed condition
    hands back the counter's current value, so a retry costs no read either.
    """

    def __init__(self) -> None:
        self.last: int | None = None

    def next(self) -> int:
        if self.last is None:
            try:
                self.last = int(CounterRecord.get("COUNTER#items", "COUNTER", consistent_read=True).value)
            except DoesNotExist:
                self.last = 0
        return self.last + 1

    def take(self, tx: TransactWrite, number: int, last: int | None = None) -> None:
        """Take ``number`` (to ``last``, for several items in one transaction) in ``tx``."""
        counter = CounterRecord("COUNTER#items", "COUNTER")
        expected = CounterRecord.value == number - 1
        if number == 1:
            expected = CounterRecord.pk.does_not_exist() | expected
        tx.update(counter, actions=[CounterRecord.value.set(last or number)], condition=expected,
                  return_values="ALL_OLD")

    def learn(self, exc: TransactWriteError, index: int) -> None:
        """After the counter's condition failed: its current value, from the cancellation, else unknown."""
        reasons = exc.cancellation_reasons or []
        reason = reasons[index] if index < len(reasons) else None
        value = ((reason.raw_item if reason is not None else None) or {}).get("value", {}).get("N")
        self.last = int(value) if value is not None else None

    def passed(self, number: int) -> None:
        """Another transaction held the counter while this one tried ``number``: most likely it is taking
        that very number, so the next try asks for the one after. A guess that costs nothing when wrong:
        the counter's condition fails and hands back the true value (no number is skipped either way)."""
        self.last = number


class Contention(Exception):
    """A transaction kept being cancelled by other writers' transactions until its time ran out. Raised
    for a retry through the queue; rare by design (see :class:`Backoff` and MaximumConcurrency)."""


@dataclass(frozen=True)
class Backoff:
    """Waits between tries of a transaction that another one cancelled (TransactionConflict).

    Full jitter (a random wait between 0 and an exponentially growing cap, as AWS's architecture blog
    "Exponential Backoff And Jitter" recommends): writers that collided spread out instead of colliding
    again in step. DynamoDB holds an item of a transaction for milliseconds, so the first waits are a few
    milliseconds and none is longer than ``cap``.
    """

    base: float = 0.004
    cap: float = 0.2
    # Tries whose condition failed because another writer took the number first (no wait: the failed
    # condition gave the new value) are bounded apart from time, in case the counter and the items disagree.
    max_number_retries: int = 200

    def delay(self, attempt: int) -> float:
        return random.uniform(0.0, min(self.cap, self.base * 2 ** min(attempt, 16)))


BACKOFF = Backoff()
# Kept free after the last try, for recording the outcome when contention outlasts the mail's time.
CONTENTION_RESERVE_SECONDS = 1.0


def _wait_or_give_up(attempt: int, time_left: Callable[[], float] | None, backoff: Backoff, what: str) -> None:
    """Sleep before try ``attempt + 1`` of a cancelled transaction, or raise Contention when that would
    pass the time left (``time_left()`` seconds; None: no limit but the number of tries)."""
    wait = backoff.delay(attempt)
    if time_left is not None and time_left() - wait < CONTENTION_RESERVE_SECONDS:
        raise Contention(f"{what}: cancelled by other transactions {attempt + 1} times, out of time")
    if time_left is None and attempt >= 60:
        raise Contention(f"{what}: cancelled by other transactions {attempt + 1} times")
    time.sleep(wait)


# --- leases ---------------------------------------------------------------------------------------


def acquire_lease(mailbox: str, owner: str, seconds: int) -> bool:
    """Take the mailbox's fetch lease unless an unexpired one is held by another run."""
    now = int(utcnow().timestamp())
    lease = LeaseRecord(*LeaseRecord.key_for(mailbox), owner=owner, expires=now + seconds)
    try:
        lease.save(
            condition=LeaseRecord.pk.does_not_exist() | (LeaseRecord.expires < now) | (LeaseRecord.owner == owner)
        )
    except PutError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


def release_lease(mailbox: str, owner: str) -> None:
    lease = LeaseRecord(*LeaseRecord.key_for(mailbox))
    try:
        lease.delete(condition=LeaseRecord.owner == owner)
    except Exception as exc:  # a lease taken over after expiry is not ours to delete
        if getattr(exc, "cause_response_code", "") != "ConditionalCheckFailedException":
            raise


# --- cursors --------------------------------------------------------------------------------------


def load_cursor(mailbox: str) -> CursorRecord:
    try:
        return CursorRecord.get(*CursorRecord.key_for(mailbox), consistent_read=True)
    except DoesNotExist:
        return CursorRecord(*CursorRecord.key_for(mailbox), last_uid=0)


def save_cursor(cursor: CursorRecord) -> None:
    cursor.updated = utcnow()
    cursor.save()


# A record of at most this many UIDLs stays under 300 KB even at RFC 1939's longest (70 characters).
UIDLS_PER_RECORD = 4000


def load_uidls(mailbox: str) -> dict[str, set[str]]:
    """The POP3 UIDLs already stored, by the part (record) that holds them."""
    pk, _ = UidlsRecord.key_for(mailbox, "")
    return {str(r.sk): set(r.uidls or ()) for r in
            UidlsRecord.query(pk, UidlsRecord.sk.startswith("UIDLS#"), consistent_read=True)}


def add_uidls(mailbox: str, part: str, uidls: set[str]) -> str:
    """Record some UIDLs as stored (one small write, whatever the number already known); the part's key
    as load_uidls names it."""
    record = UidlsRecord(*UidlsRecord.key_for(mailbox, part), uidls=uidls)
    record.save()
    return str(record.sk)


def compact_uidls(mailbox: str, parts: dict[str, set[str]], keep: set[str]) -> None:
    """Rewrite the parts so that they hold exactly ``keep`` in as few records as fit; unchanged parts
    are left alone. New records are written before old ones are deleted: a crash in between leaves
    UIDLs known twice, never forgotten."""
    full = {sk: uidls for sk, uidls in parts.items() if uidls <= keep and len(uidls) == UIDLS_PER_RECORD}
    stale = [sk for sk in parts if sk not in full]
    if len(stale) <= 1 and all(parts[sk] <= keep and len(parts[sk]) < UIDLS_PER_RECORD for sk in stale):
        return  # already compact: full parts and at most one other, nothing to forget
    rest = sorted(keep - set().union(*full.values()))
    chunks = [set(rest[i:i + UIDLS_PER_RECORD]) for i in range(0, len(rest), UIDLS_PER_RECORD)]
    stamp = utcnow().strftime("%Y%m%dT%H%M%S%f")
    with UidlsRecord.batch_write() as batch:
        for n, chunk in enumerate(chunks):
            batch.save(UidlsRecord(*UidlsRecord.key_for(mailbox, f"{stamp}-{n:04d}"), uidls=chunk))
    with UidlsRecord.batch_write() as batch:
        for sk in stale:
            batch.delete(UidlsRecord(UidlsRecord.key_for(mailbox, "")[0], sk))


def load_skipped(mailbox: str) -> set[str]:
    """The POP3 UIDLs left alone when the mailbox was added with ``--start new``."""
    pk, _ = UidlsRecord.key_for(mailbox, "")
    skipped: set[str] = set()
    for record in UidlsRecord.query(pk, UidlsRecord.sk.startswith("SKIPPED#"), consistent_read=True):
        skipped |= set(record.uidls or ())
    return skipped


def add_skipped(mailbox: str, uidls: set[str]) -> None:
    """Record UIDLs as skipped, in records of at most UIDLS_PER_RECORD (apart from the stored ones)."""
    pk, _ = UidlsRecord.key_for(mailbox, "")
    ordered = sorted(uidls)
    stamp = utcnow().strftime("%Y%m%dT%H%M%S%f")
    with UidlsRecord.batch_write() as batch:
        for n in range(0, len(ordered), UIDLS_PER_RECORD):
            batch.save(UidlsRecord(pk, f"SKIPPED#{stamp}-{n // UIDLS_PER_RECORD:04d}",
                                   uidls=set(ordered[n:n + UIDLS_PER_RECORD])))


# --- item size ------------------------------------------------------------------------------------

# DynamoDB refuses an item over 400 KB (409,600 bytes), counting every attribute's name and value.
ITEM_LIMIT_BYTES = 400 * 1024


def utf8_size(text: str) -> int:
    """``len(text.encode("utf-8", "surrogatepass"))``, a slice at a time: a 25 MB text is not encoded whole
    (up to 75 MB) to be measured."""
    if text.isascii():
        return len(text)
    return sum(len(text[i:i + 65536].encode("utf-8", "surrogatepass")) for i in range(0, len(text), 65536))


def _value_size(value: dict[str, Any]) -> int:
    """The size DynamoDB counts for one serialised attribute value (as documented, rounded up)."""
    ((kind, data),) = value.items()
    if kind == "S":
        return utf8_size(str(data))
    if kind == "N":
        return len(str(data)) // 2 + 2  # about one byte per two digits, plus one
    if kind == "B":
        return len(data) if isinstance(data, bytes) else len(str(data)) * 3 // 4
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(v).encode("utf-8", "surrogatepass")) for v in data)
    if kind == "NS":
        return sum(len(str(v)) // 2 + 2 for v in data)
    if kind == "BS":
        return sum(len(v) if isinstance(v, bytes) else len(str(v)) * 3 // 4 for v in data)
    if kind == "L":
        return 3 + sum(1 + _value_size(v) for v in data)
    if kind == "M":
        return 3 + sum(1 + len(k.encode("utf-8", "surrogatepass")) + _value_size(v) for k, v in data.items())
    raise ValueError(f"unknown DynamoDB type {kind}")


def item_size(record: Model) -> int:
    """The bytes DynamoDB counts for ``record`` against its item limit: all attribute names and values."""
    return sum(len(name.encode("utf-8")) + _value_size(value) for name, value in record.serialize().items())


# --- outcomes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """The raw message a record comes from."""

    key: str
    mailbox: str
    message_id: str  # the Message-ID, or a content hash when the mail has none
    sender: str
    subject: str
    fingerprint: str = ""  # of From and Date: tells copies of one mail from other mails reusing its Message-ID
    keep_days: int = 0  # how long its ledger record is kept (Settings.ledger_retention_days); 0: for good
    arrived: float | None = None  # epoch seconds it arrived on its mail server, when known

    @staticmethod
    def fingerprint_of(sender: str, date: datetime | None, raw_date: str, subject: str, text: str,
                       attachments: list[tuple[str, int]]) -> str:
        """What makes two mails with one Message-ID the same mail: the From address and the Date header.

        Not the subject or the body: gateways rewrite those on the way (``[EXTERNAL]`` tags, "this mail
        came from outside" banners, disclaimers), and one mail copied through one must stay one item. The
        author's mailer sets From and Date once, and they survive forwarding gateways. Mails that reuse a
        Message-ID (broken mailers, templates, hand-edited copies) differ in the second they were written,
        or in their sender. The date is compared as an instant (``date``, parsed), so a gateway that only
        reformats the header does not split a mail; an unparsable header counts as its text. Only a mail
        without a Date falls back to its content: subject, decoded text and attachment names and sizes
        (decoded, so that a copy re-encoded on another route still matches).
        """
        address = sender.strip().lower()
        if date is not None:
            parts: tuple[str, ...] = ("from+date", address, str(int(date.timestamp())))
        elif raw_date.strip():
            parts = ("from+date-text", address, " ".join(raw_date.split()))
        else:
            body = "\n".join(line.rstrip() for line in text.splitlines()).strip()
            parts = ("content", address, subject, body, *(f"{name}:{size}" for name, size in attachments))
        return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def ledger_record(source: Source, status: Status, outcome: str, **fields: Any) -> LedgerRecord:
    now = utcnow()
    if source.keep_days and "expires_at" not in fields:
        fields["expires_at"] = int(now.timestamp()) + source.keep_days * 86400
    if source.arrived is not None and "arrived" not in fields:
        fields["arrived"] = source.arrived
    return LedgerRecord(
        *LedgerRecord.key_for(source.key),
        kind="message",
        sort=f"{now.isoformat()}#{source.key}",
        key=source.key,
        mailbox=source.mailbox,
        message_id=source.message_id,
        sender=source.sender,
        subject=source.subject[:1000],
        status=status,
        outcome=outcome,
        created=now,
        **fields,
    )


def get_ledger(source_key: str) -> LedgerRecord | None:
    try:
        return LedgerRecord.get(*LedgerRecord.key_for(source_key), consistent_read=True)
    except DoesNotExist:
        return None


def get_message_id(message_id: str) -> MessageIdRecord | None:
    """The first mail stored under this Message-ID (for threading: In-Reply-To and References)."""
    for record in MessageIdRecord.query(f"MSGID#{message_id}", MessageIdRecord.sk.startswith("MSGID#"), limit=1):
        return record
    return None


def get_stored_copy(source: Source) -> MessageIdRecord | None:
    """The record of an earlier copy of this very mail."""
    try:
        return MessageIdRecord.get(*MessageIdRecord.key_for(source.message_id, source.fingerprint),
                                   consistent_read=True)
    except DoesNotExist:
        return None


def get_item(number: int) -> ItemRecord | None:
    try:
        return ItemRecord.get(*ItemRecord.key(number))
    except DoesNotExist:
        return None


class DuplicateMessage(Exception):
    """The Message-ID was already stored by another raw message (or by this one, in an earlier try)."""

    def __init__(self, original: MessageIdRecord | None) -> None:
        super().__init__("duplicate message")
        self.original = original


# pynamodb sends a transaction's operations grouped, whatever the order they were added in: condition
# checks, then deletes, then puts, then updates. Cancellation reasons come back in that order.
CONFLICT = "TransactionConflict"


def _failed(exc: TransactWriteError, index: int, codes: tuple[str, ...]) -> bool:
    reasons = exc.cancellation_reasons or []
    return index < len(reasons) and getattr(reasons[index], "code", None) in codes


def _conflicted(exc: TransactWriteError) -> bool:
    """Cancelled because another transaction was writing one of its items: nothing was written."""
    return any(getattr(reason, "code", None) == CONFLICT for reason in exc.cancellation_reasons or [])


def _message_id_record(source: Source, number: int) -> MessageIdRecord:
    return MessageIdRecord(
        *MessageIdRecord.key_for(source.message_id, source.fingerprint),
        message_id=source.message_id,
        item_number=number,
        source_key=source.key,
    )


def write_item(build: Callable[[int], ItemRecord], source: Source, numbering: Numbering,
               notes: list[str] | None = None, time_left: Callable[[], float] | None = None,
               backoff: Backoff = BACKOFF) -> LedgerRecord:
    """Write a new item, its number, its message-id and ledger records in one transaction.

    ``build`` makes the item for a given number; ``numbering`` is the container's. Raises DuplicateMessage
    when the Message-ID is known. A transaction cancelled by another one (TransactionConflict: every item
    transaction updates the one counter) is tried again after a jittered wait while ``time_left()`` allows,
    then raises Contention; a number another writer took first is tried again at once with the next one.
    """
    conflicts = taken = 0
    while True:
        number = numbering.next()
        item = build(number)
        ledger = ledger_record(source, "item", f"item {number} created", item_number=number, notes=notes)
        try:
            with TransactWrite(connection=shared_connection()) as tx:
                tx.save(_message_id_record(source, number), condition=MessageIdRecord.pk.does_not_exist())
                numbering.take(tx, number)
                tx.save(item, condition=ItemRecord.pk.does_not_exist())
                tx.save(ledger)
        except TransactWriteError as exc:
            # puts: message id 0, item 1, ledger 2; update: counter 3
            if _failed(exc, 0, ("ConditionalCheckFailed",)):
                raise DuplicateMessage(get_stored_copy(source)) from exc
            if _failed(exc, 1, ("ConditionalCheckFailed",)) or _failed(exc, 3, ("ConditionalCheckFailed",)):
                numbering.learn(exc, 3)  # another writer took the number: start from theirs
                taken += 1
                if taken > backoff.max_number_retries:
                    raise Contention(f"no item number after {taken} tries") from exc
                continue
            if _conflicted(exc):
                if _failed(exc, 3, (CONFLICT,)):
                    numbering.passed(number)
                _wait_or_give_up(conflicts, time_left, backoff, f"item of {source.key}")
                conflicts += 1
                continue
            raise
        numbering.last = number
        return ledger


def write_comment(comment: CommentRecord, source: Source, notes: list[str] | None = None,
                  time_left: Callable[[], float] | None = None, backoff: Backoff = BACKOFF) -> LedgerRecord:
    """Write a comment with its message-id and ledger records, atomically. Raises DuplicateMessage.

    The item's condition check conflicts with other comments on the same item written at that moment (or
    a copy of the mail in flight): tried again after a jittered wait, as for items."""
    number = int(comment.item_number)
    ledger = ledger_record(source, "comment", f"comment on item {number}", item_number=number, notes=notes)
    conflicts = 0
    while True:
        try:
            with TransactWrite(connection=shared_connection()) as tx:
                tx.save(_message_id_record(source, number), condition=MessageIdRecord.pk.does_not_exist())
                tx.condition_check(ItemRecord, *ItemRecord.key(number), condition=ItemRecord.pk.exists())
                tx.save(comment, condition=CommentRecord.pk.does_not_exist())
                tx.save(ledger)
        except TransactWriteError as exc:
            # condition check: item 0; puts: message id 1, comment 2, ledger 3
            if _failed(exc, 1, ("ConditionalCheckFailed",)):
                raise DuplicateMessage(get_stored_copy(source)) from exc
            if _conflicted(exc):
                _wait_or_give_up(conflicts, time_left, backoff, f"comment of {source.key}")
                conflicts += 1
                continue
            raise
        return ledger


@dataclass(frozen=True)
class NewItem:
    """A mail's item, to be written with its records once it has a number (``build`` makes it for one)."""

    build: Callable[[int], ItemRecord]
    source: Source
    notes: list[str] | None = None


@dataclass(frozen=True)
class NewComment:
    """A mail's comment, to be written with its records."""

    comment: CommentRecord
    source: Source
    notes: list[str] | None = None


NewRecord = NewItem | NewComment


def write_one(record: NewRecord, numbering: Numbering, time_left: Callable[[], float] | None = None) -> LedgerRecord:
    """:func:`write_item` or :func:`write_comment`, as ``record`` is."""
    if isinstance(record, NewItem):
        return write_item(record.build, record.source, numbering, record.notes, time_left)
    return write_comment(record.comment, record.source, record.notes, time_left)


# A transaction holds at most 100 operations and 4 MB: each mail's write is four operations, one counter more.
TOGETHER_MAX = 24


def write_together(records: Sequence[NewRecord], numbering: Numbering, time_left: Callable[[], float] | None = None,
                   backoff: Backoff = BACKOFF) -> list[LedgerRecord] | None:
    """Write several mails' items and comments in one transaction, each with the message-id and ledger records
    :func:`write_item` and :func:`write_comment` write with it, the items numbered in order by one counter
    update. All or nothing: the ledger records in ``records``' order, or None when DynamoDB refused it for a
    reason only one mail's own write can sort out (a copy stored already, an item gone): the caller then
    writes them one by one, and nothing of this try was written. Another writer's number or transaction is
    tried again as in :func:`write_item`. The caller keeps the records apart (no two name one item) and
    within TOGETHER_MAX and the size limit.
    """
    conflicts = taken = 0
    while True:
        first = number = numbering.next()
        ledgers: list[LedgerRecord] = []
        try:
            with TransactWrite(connection=shared_connection()) as tx:
                for record in records:
                    if isinstance(record, NewItem):
                        ledger = ledger_record(record.source, "item", f"item {number} created", item_number=number,
                                               notes=record.notes)
                        tx.save(_message_id_record(record.source, number),
                                condition=MessageIdRecord.pk.does_not_exist())
                        tx.save(record.build(number), condition=ItemRecord.pk.does_not_exist())
                        number += 1
                    else:
                        on = int(record.comment.item_number)
                        ledger = ledger_record(record.source, "comment", f"comment on item {on}", item_number=on,
                                               notes=record.notes)
                        tx.save(_message_id_record(record.source, on), condition=MessageIdRecord.pk.does_not_exist())
                        tx.condition_check(ItemRecord, *ItemRecord.key(on), condition=ItemRecord.pk.exists())
                        tx.save(record.comment, condition=CommentRecord.pk.does_not_exist())
                    tx.save(ledger)
                    ledgers.append(ledger)
                if number > first:
                    numbering.take(tx, first, number - 1)  # an update: sent last, so its reason is the last
        except TransactWriteError as exc:
            reasons = exc.cancellation_reasons or []
            codes = [getattr(reason, "code", None) for reason in reasons]
            counter = len(codes) - 1 if number > first else None
            if counter is not None and codes[counter] == "ConditionalCheckFailed" and \
                    not any(code not in (None, "None") for code in codes[:counter]):
                numbering.learn(exc, counter)  # another writer took the number: start from theirs
                taken += 1
                if taken > backoff.max_number_retries:
                    return None
                continue
            if _conflicted(exc):
                if counter is not None and codes[counter] == CONFLICT:
                    numbering.passed(number - 1)
                _wait_or_give_up(conflicts, time_left, backoff, f"{len(records)} mails together")
                conflicts += 1
                continue
            if exc.cause_response_code == "TransactionCanceledException":
                return None
            raise
        if number > first:
            numbering.last = number - 1
        return ledgers


def comment_key(number: int, created: datetime, source_key: str) -> tuple[str, str]:
    digest = hashlib.sha256(source_key.encode()).hexdigest()[:16]
    return ItemRecord.key(number)[0], f"COMMENT#{created.isoformat()}#{digest}"


# --- listing --------------------------------------------------------------------------------------


def list_items() -> list[ItemRecord]:
    return [r for r in ItemRecord.by_kind.query("item") if isinstance(r, ItemRecord)]


def list_comments(number: int) -> list[CommentRecord]:
    return list(CommentRecord.query(ItemRecord.key(number)[0], CommentRecord.sk.startswith("COMMENT#")))


def list_ledger() -> list[LedgerRecord]:
    return [r for r in LedgerRecord.by_kind.query("message") if isinstance(r, LedgerRecord)]


def list_mailboxes() -> list[MailboxRecord]:
    return [r for r in MailboxRecord.by_kind.query("mailbox") if isinstance(r, MailboxRecord)]


# --- intake rules: directory, settings, alerts, reply counters (added for the intake rules) ---------


class UserRecord(Record):
    """A person who may write in: keyed by lower-cased address; roles map workspace (or ``*``) -> role."""

    class Meta(_TableMeta):
        pass

    email = UnicodeAttribute()
    name = UnicodeAttribute(default="")
    roles = MapAttribute[str, Any](default=dict)  # type: ignore[no-untyped-call]
    created_by = UnicodeAttribute(default="admin")  # admin | email (made from a sender)
    created = UTCDateTimeAttribute(default_for_new=utcnow)

    @staticmethod
    def key(email: str) -> tuple[str, str]:
        return f"USER#{email.strip().lower()}", "USER"


class WorkspaceRecord(Record):
    class Meta(_TableMeta):
        pass

    name = UnicodeAttribute()
    title = UnicodeAttribute(default="")
    default_role = UnicodeAttribute(null=True)  # role of users without their own role here
    created = UTCDateTimeAttribute(default_for_new=utcnow)

    @staticmethod
    def key(name: str) -> tuple[str, str]:
        return f"WORKSPACE#{name}", "WORKSPACE"


class SettingsRecord(Record):
    """One scope's settings: ``system``, or ``mailbox:<name>`` for a workspace mailbox's overrides."""

    class Meta(_TableMeta):
        pass

    scope = UnicodeAttribute()
    values = MapAttribute[str, Any](default=dict)  # type: ignore[no-untyped-call]
    updated = UTCDateTimeAttribute(default_for_new=utcnow)

    @staticmethod
    def key(scope: str) -> tuple[str, str]:
        return f"SETTINGS#{scope}", "SETTINGS"


class AlertRecord(Record):
    """A configuration problem of a mailbox already reported, so it is not reported again every poll."""

    class Meta(_TableMeta):
        pass

    mailbox = UnicodeAttribute()
    problem = UnicodeAttribute()
    detail = UnicodeAttribute(default="")
    since = UTCDateTimeAttribute(default_for_new=utcnow)

    @staticmethod
    def key(mailbox: str) -> tuple[str, str]:
        return f"ALERT#{mailbox}", "ALERT"


class ReplyCounterRecord(Record):
    """Replies sent to one address in one hour; expires by the table's TTL."""

    class Meta(_TableMeta):
        pass

    replies = NumberAttribute(default=0)
    expires_at = NumberAttribute()

    @staticmethod
    def key(address: str, hour: str) -> tuple[str, str]:
        return f"REPLYCOUNT#{address.strip().lower()}#{hour}", "REPLYCOUNT"


class RunRecord(Record):
    """How a mailbox's fetch runs went lately (mailintake.health.RunSummary): `status` and the alarms."""

    class Meta(_TableMeta):
        pass

    mailbox = UnicodeAttribute()
    last_run = UTCDateTimeAttribute()
    status = UnicodeAttribute()
    fetched = NumberAttribute(default=0)
    error = UnicodeAttribute(default="")
    last_success = UTCDateTimeAttribute(null=True)
    failing_in_a_row = NumberAttribute(default=0)

    @staticmethod
    def key(mailbox: str) -> tuple[str, str]:
        return f"RUN#{mailbox}", "RUN"


_MODELS = (*_MODELS, UserRecord, WorkspaceRecord, SettingsRecord, AlertRecord, ReplyCounterRecord, RunRecord)


def plain_map(value: Any) -> dict[str, Any]:
    """A raw MapAttribute as read back (a MapAttribute), or as set (a dict), as a plain dict."""
    if isinstance(value, MapAttribute):
        return dict(value.as_dict())
    return dict(value or {})
