"""Processing one stored raw message: parse, apply the intake rules, write the item or comment.

Every message ends with exactly one ledger record. Item and comment writes carry their ledger and
message-id records in the same transaction, so a retry, a second poll or the same mail in two mailboxes
never makes a second item or comment.

Each mail has a time budget (``Settings.processing_budget_seconds``), enforced by a
:class:`~mailintake.bounds.Deadline` that parsing and this module check between steps. A mail over its
budget is recorded ``failed: processing budget exceeded`` with the sender and subject of its header block
and is not retried (it would fail the same way five times and hold up its conversation); it stays in S3 and
``mailintake messages reprocess KEY --budget SECONDS`` replays it. Why a cooperative deadline and not
something that stops the work from outside:

* a thread cannot be stopped in Python: an abandoned parse would go on using the container's CPU through
  the next mails and invocations;
* a child process (fork) would copy or pickle the parsed mail back, doubling the memory of a 25 MB mail
  (the budget is 200 MB of 512), and Lambda has no /dev/shm for multiprocessing's queues;
* SIGALRM works only in the main thread (the local runner's consumers are threads), can raise inside any
  library holding a lock, and cannot interrupt a C or Rust call either.

What a check cannot interrupt (one call into nh3, the stdlib feed parser on one 64 KB chunk) is kept short
by the bounds of :mod:`mailintake.bounds`, which make every stage's work linear in the mail's size.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from urllib.parse import quote

from aws_lambda_powertools import Logger
from pynamodb.exceptions import PutError

from mailintake import bodies, directory, facts, outcomes, outgoing, system_settings
from mailintake.aws_clients import client
from mailintake.bounds import (
    ATTACHMENT_WRITERS,
    DEADLINE_RESERVE_SECONDS,
    MAX_ATTACHMENTS,
    BudgetExceeded,
    Deadline,
    check,
)
from mailintake.handover import HEADER_SCAN_BYTES, InlineMismatch, QueuedMessage, header_block
from mailintake.intake import Decision, decide
from mailintake.markers import make_marker
from mailintake.message import Attachment, ParsedMessage
from mailintake.outcomes import FINAL, Status
from mailintake.parsing import parse_message
from mailintake.runtime import Runtime
from mailintake.settings import Settings
from mailintake.store import (
    AttachmentMap,
    CommentRecord,
    DuplicateMessage,
    ItemRecord,
    LedgerRecord,
    NewComment,
    NewItem,
    NewRecord,
    Source,
    comment_key,
    get_ledger,
    item_size,
    ledger_record,
    utcnow,
    write_one,
    write_together,
)

logger = Logger(child=True)



@dataclass(frozen=True)
class Outcome:
    status: Status
    outcome: str
    item_number: int | None = None
    mailbox: str = ""
    # Seconds from the mail's arrival on its server to its item or comment, when both are known (a metric).
    latency_seconds: float | None = None

    @classmethod
    def of(cls, ledger: LedgerRecord) -> Outcome:
        number = int(ledger.item_number) if ledger.item_number is not None else None
        latency = None
        if ledger.arrived is not None and ledger.status in ("item", "comment"):
            latency = max(0.0, ledger.created.timestamp() - float(ledger.arrived))
        return cls(outcomes.status(ledger.status), ledger.outcome, number, str(ledger.mailbox), latency)


@dataclass(frozen=True)
class Verdict:
    """What the intake rules decided for one mail, before anything is written: :meth:`Processor.judge`."""

    source: Source
    parsed: ParsedMessage  # only the header block, for a mail judged by its size alone
    decision: Decision
    config: system_settings.Config | None  # the settings snapshot judged by; None when judged by size alone


@dataclass(frozen=True)
class Ready:
    """A mail judged and its attachments stored, its item or comment ready to be written (:meth:`Processor.write`)."""

    job: QueuedMessage
    attempt: int
    record: NewRecord
    size: int  # the item's or comment's bytes, for a transaction's size limit
    parsed: ParsedMessage
    decision: Decision
    config: system_settings.Config
    deadline: Deadline


def attachment_prefix(source_key: str) -> str:
    """Where a raw message's attachments go.

    Keyed by the raw message, not the item number, so a retry overwrites rather than adds.
    """
    return "attachments/" + hashlib.sha256(source_key.encode()).hexdigest()[:24]


def attachment_key(source_key: str, index: int, safe_name: str) -> str:
    """The S3 key of one attachment: ``safe_name`` (from parsing.safe_name) is its last segment."""
    return f"{attachment_prefix(source_key)}/{index:03d}/{safe_name}"


def deadline_for(settings: Settings, remaining_seconds: float | None) -> Deadline:
    """A mail's deadline: its budget, or less when the invocation (``remaining_seconds`` of it left, None
    outside Lambda) ends sooner; DEADLINE_RESERVE_SECONDS are kept to record the outcome.

    A batch of ten shares one invocation: the first mail always gets its whole budget (60 of 120 s), a later
    one what is left. A mail whose budget was cut short that way and runs out is retried (another
    invocation gives it its whole budget) rather than recorded as over budget.
    """
    budget = settings.processing_budget_seconds
    if remaining_seconds is None:
        return Deadline.after(budget)
    available = remaining_seconds - DEADLINE_RESERVE_SECONDS
    if available < budget:
        return Deadline.after(max(available, 0.0), shortened=True)
    return Deadline.after(budget)


# Types a browser only shows (or hands to a viewer), never runs: an attachment of one of them keeps it in
# S3, so that an inline image still loads from a link. Every other type, above all text/html, SVG, XHTML,
# XML and scripts, which a browser would render as a page with its scripts on the bucket's origin, is
# stored as an opaque download. An allow-list: a type nobody thought of is a download too.
SHOWN_TYPES = frozenset({
    "image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/tiff", "image/heic",
    "application/pdf", "text/plain", "text/csv", "application/zip", "application/gzip",
    "application/octet-stream", "audio/mpeg", "audio/ogg", "audio/wav", "video/mp4", "video/webm",
    "application/msword", "application/vnd.ms-excel", "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text", "application/vnd.oasis.opendocument.spreadsheet",
})


def download_headers(content_type: str, safe_name: str) -> tuple[str, str]:
    """The Content-Type and Content-Disposition an attachment is stored with: always a download (RFC 6266,
    with an ASCII fallback name), of its declared type only when that type is in SHOWN_TYPES."""
    declared = content_type.split(";", 1)[0].strip().lower()
    stored_type = declared if declared in SHOWN_TYPES else "application/octet-stream"
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in safe_name)
    disposition = f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(safe_name, safe='')}"
    return stored_type, disposition


class Processor:
    """Processes mail for one container: its caches and item numbers are the ``runtime``'s."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.s3 = client("s3", self.settings.region)

    def process(self, job: QueuedMessage, attempt: int = 1, admitted_over: str | None = None,
                deadline: Deadline | None = None) -> Outcome:
        """Process one queued message. Raises only for errors worth a retry (the ledger says failed).

        ``admitted_over`` is the discarded outcome an admin overrides (`messages accept`): the mail is
        judged again without its automail and filter-list discards. ``deadline`` ends the work (default: the
        budget from now); past it the mail is recorded as over budget, or, when the deadline was cut short
        by the invocation's end, failed for a retry.
        """
        ready = self.prepare(job, attempt, admitted_over, deadline)
        if isinstance(ready, Outcome):
            return ready
        result = self.write([ready])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def prepare(self, job: QueuedMessage, attempt: int = 1, admitted_over: str | None = None,
                deadline: Deadline | None = None,
                before_facts: Callable[[ParsedMessage], None] | None = None) -> Outcome | Ready:
        """:meth:`process` up to the write: the mail's outcome when it needs no item or comment (recorded),
        else its item or comment ready for :meth:`write`, attachments stored. ``before_facts`` is called with
        the parsed mail before the facts are loaded. Raises as :meth:`process` does."""
        if attempt > 1 and admitted_over is None:
            # A redelivery: the first try may have finished everything but the queue ack.
            done = get_ledger(job.key)
            if done is not None and done.status in FINAL:
                # Counted when it was written: no second latency sample.
                return replace(Outcome.of(done), latency_seconds=None)
        if deadline is None:
            deadline = deadline_for(self.settings, None)
        try:
            return self._prepare(job, attempt, admitted_over, deadline, before_facts)
        except bodies.StillTooLarge as exc:
            # Retrying cannot make the record smaller: recorded as failed here, not sent round the queue.
            return Outcome.of(self._record_failure(job, exc, attempt))
        except BudgetExceeded as exc:
            if exc.shortened:
                self._record_failure(job, exc, attempt)
                raise
            return self._record_over_budget(job, exc, attempt, deadline)
        except Exception as exc:
            self._record_failure(job, exc, attempt)
            raise

    def write(self, ready: Sequence[Ready],
              correlate: Callable[[str], None] | None = None) -> list[Outcome | Exception]:
        """Write the items and comments of ``ready`` (several in one transaction: store.write_together, else
        one by one), then what follows each: its acknowledgement, or the outcome of a copy stored already.
        Each mail's outcome in order; a mail whose write failed is recorded failed and its exception is
        returned in its place (for a retry). ``correlate`` is given each mail's key before what follows it."""
        together: list[LedgerRecord] | None = None
        if len(ready) > 1:
            try:
                soonest = min((r.deadline for r in ready), key=lambda d: d.left())
                together = write_together([r.record for r in ready], self.runtime.numbering, time_left=soonest.left)
            except Exception:
                # Each mail's own write says what is wrong with it, and records it.
                logger.warning("writing mails together failed; writing them one by one", exc_info=True,
                               extra={"keys": [r.job.key for r in ready]})
        results: list[Outcome | Exception] = []
        for index, one in enumerate(ready):
            if correlate is not None:
                correlate(one.job.key)
            try:
                if together is not None:
                    ledger = together[index]
                else:
                    ledger = write_one(one.record, self.runtime.numbering, one.deadline.left)
                results.append(self._written(one, ledger))
            except DuplicateMessage as dup:
                results.append(self._duplicate(one, dup))
            except Exception as exc:
                self._record_failure(one.job, exc, one.attempt)
                results.append(exc)
        return results

    def _headers(self, job: QueuedMessage) -> ParsedMessage:
        """The mail's header block alone, parsed: from the inline copy, else one ranged GET."""
        head: bytes | None = None
        with contextlib.suppress(InlineMismatch):  # the stored object is the mail; the copy is only a shortcut
            head = job.inline_bytes()
        if head is None:
            head = self.s3.get_object(Bucket=job.bucket, Key=job.key,
                                      Range=f"bytes=0-{HEADER_SCAN_BYTES - 1}")["Body"].read()
        return parse_message(io.BytesIO(header_block(head) + b"\r\n\r\n"))

    def source_of(self, job: QueuedMessage, message_id: str | None, sender: str, subject: str,
                  fingerprint: str = "") -> Source:
        """The raw mail the records name, with how long its ledger record is kept and when it arrived."""
        return Source(job.key, job.mailbox, message_id or f"sha256:{job.sha256}", sender, subject, fingerprint,
                      keep_days=self.settings.ledger_retention_days, arrived=job.arrived)

    def judge(self, job: QueuedMessage, admitted_over: str | None = None, deadline: Deadline | None = None,
              before_facts: Callable[[ParsedMessage], None] | None = None) -> Verdict:
        """What the mail ``job`` names becomes under the current settings: load the facts, decide. Writes
        nothing (``mailintake explain`` runs exactly this on a file); :meth:`process` writes the verdict.
        ``before_facts`` sees the parsed mail first (a batch writes what the facts may depend on)."""
        if deadline is None:
            deadline = deadline_for(self.settings, None)
        size = job.size
        if size > self.settings.max_message_bytes:
            # Only the header block is read (one ranged GET), so the ledger still says who sent what.
            headers = self._headers(job)
            source = self.source_of(job, headers.message_id, headers.sender.email, headers.subject)
            limit = self.settings.max_message_bytes
            too_large = Decision("rejected", f"message too large ({size} bytes > {limit})", "size")
            return Verdict(source, headers, too_large, None)
        inline = job.inline_bytes()
        if inline is not None:
            parsed = parse_message(io.BytesIO(inline), deadline)
        else:
            # Streamed: the parser reads the body in chunks, so a large mail is never held twice.
            with self.s3.get_object(Bucket=job.bucket, Key=job.key)["Body"] as body:
                parsed = parse_message(body, deadline)
        source = self.source_of(
            job, parsed.message_id, parsed.sender.email, parsed.subject,
            Source.fingerprint_of(parsed.sender.email, parsed.date, parsed.headers.get("date", ""),
                                  parsed.subject, parsed.text, [(a.filename, a.size) for a in parsed.attachments]),
        )
        check(deadline, "applying the intake rules")
        if before_facts is not None:
            before_facts(parsed)
        config = self.runtime.config.current()
        mailbox = self.runtime.config.mailbox_record(job.mailbox)
        # Load the facts the rules need (thread candidates are read as the rules ask for them), then decide.
        ctx = facts.context(mailbox, job.mailbox, config, size, admitted_over)
        gathered = facts.gather(parsed, self.settings, ctx, self.runtime.users)
        return Verdict(source, parsed, decide(parsed, ctx, gathered, facts.scripts_for(ctx)), config)

    def _prepare(self, job: QueuedMessage, attempt: int, admitted_over: str | None, deadline: Deadline,
                 before_facts: Callable[[ParsedMessage], None] | None) -> Outcome | Ready:
        verdict = self.judge(job, admitted_over, deadline, before_facts)
        parsed, source, decision, config = verdict.parsed, verdict.source, verdict.decision, verdict.config
        if config is None:  # judged by its size alone
            return self._record(source, "rejected", f"rejected: {decision.reason}", step=decision.step)
        if decision.action in ("rejected", "discarded", "failed"):
            return self._refuse(parsed, source, decision, config)
        check(deadline, "writing the item")
        for address, name in decision.new_users:
            directory.create_from_mail(address, name, self.runtime.users)
        record: NewRecord
        if decision.action == "comment" and decision.item_number is not None:
            record, size = self._comment(parsed, source, decision, deadline)
        else:
            record, size = self._item(parsed, source, decision, deadline)
        return Ready(job, attempt, record, size, parsed, decision, config, deadline)

    def _written(self, ready: Ready, ledger: LedgerRecord) -> Outcome:
        """A mail's item or comment is written: acknowledge a new item."""
        decision, job = ready.decision, ready.job
        if isinstance(ready.record, NewItem) and ledger.item_number is not None:
            if decision.reply_withheld:
                logger.info("acknowledgement", extra={"key": job.key, "item": int(ledger.item_number),
                                                      "reply": f"no acknowledgement: {decision.reply_withheld}"})
            else:
                self._acknowledge(ready.parsed, job, int(ledger.item_number), ready.config)
        return Outcome.of(ledger)

    def _duplicate(self, ready: Ready, dup: DuplicateMessage) -> Outcome:
        """The mail's Message-ID was stored already: by this very raw mail in an earlier try, or by a copy."""
        original, job = dup.original, ready.job
        if original is not None and original.source_key == job.key:
            done = get_ledger(job.key)
            if done is not None:
                return Outcome.of(done)
        number = int(original.item_number) if original and original.item_number is not None else None
        where = original.source_key if original else "an earlier message"
        return self._record(ready.record.source, "discarded", f"discarded: duplicate of {where}", step="duplicate",
                            item_number=number)

    def _refuse(self, parsed: ParsedMessage, source: Source, decision: Decision,
                config: system_settings.Config) -> Outcome:
        """Record a rejection, discard or script failure, after replying to the sender where one is due."""
        outcome = f"{decision.action}: {decision.reason}"
        reply = None
        if decision.wants_reply:
            reply = outgoing.reply_to_rejection(parsed, decision.step, decision.told, config, self.settings,
                                                self.runtime.tokens)
        elif decision.action == "rejected" and decision.reply_withheld:
            reply = f"no reply: {decision.reply_withheld}"
        if decision.action == "failed":
            # A script's own error: retrying would fail the same way, so the message ends here, not in SQS.
            logger.error("script failed", extra={"key": source.key, "mailbox": source.mailbox,
                                                 "step": decision.step, "error": decision.reason})
        ledger = ledger_record(source, decision.action, outcome, step=decision.step, reply=reply,
                               notes=_notes(decision.notes, parsed.simplified),
                               error=decision.reason if decision.action == "failed" else None)
        ledger.save()
        return Outcome.of(ledger)

    def _acknowledge(self, parsed: ParsedMessage, job: QueuedMessage, number: int,
                     config: system_settings.Config) -> None:
        marker = make_marker(number, self.settings.marker_format)
        try:
            note = outgoing.acknowledge(parsed, marker, number, config, self.settings, self.runtime.tokens)
        except Exception:
            # The item is written; a lost acknowledgement is not worth redelivering the message for.
            logger.exception("acknowledgement failed", extra={"key": job.key, "item": number})
            return
        logger.info("acknowledgement", extra={"key": job.key, "item": number, "reply": note})

    def _record(self, source: Source, status: Status, outcome: str, **fields: object) -> Outcome:
        ledger = ledger_record(source, status, outcome, **fields)
        ledger.save()
        return Outcome.of(ledger)

    def _record_failure(self, job: QueuedMessage, exc: Exception, attempt: int) -> LedgerRecord:
        # The ledger names sender and subject whenever the headers can be read, whatever failed later: an
        # admin looking at failures must know whose mail it is. Read again (cheap: the header block), as
        # the failure may have come before, during or after parsing.
        try:
            headers = self._headers(job)
            source = self.source_of(job, headers.message_id, headers.sender.email, headers.subject)
        except Exception:
            logger.warning("headers unreadable for the failure record", extra={"key": job.key}, exc_info=True)
            source = self.source_of(job, "", "", "")
        error = f"{type(exc).__name__}: {exc}"
        cause = getattr(exc, "cause_response_code", None)
        if cause:  # pynamodb's own message is generic ("Failed to write transaction items"): add why
            error += f" ({cause}: {getattr(exc, 'cause_response_message', '')})"
        error = error[:2000]
        ledger = ledger_record(source, "failed", f"failed: {error}", error=error, attempts=attempt)
        logger.exception("processing failed", extra={"key": job.key, "mailbox": job.mailbox, "attempt": attempt})
        # Never overwrite a final outcome: the write may have landed before the error.
        with contextlib.suppress(PutError):
            ledger.save(condition=LedgerRecord.pk.does_not_exist() | (LedgerRecord.status == "failed"))
        return ledger

    def _record_over_budget(self, job: QueuedMessage, exc: BudgetExceeded, attempt: int,
                            deadline: Deadline) -> Outcome:
        """The mail used its whole budget: recorded as failed once, not retried; replayable from S3."""
        try:
            headers = self._headers(job)
            source = self.source_of(job, headers.message_id, headers.sender.email, headers.subject)
        except Exception:  # the outcome matters more than the sender's name in it
            logger.exception("reading the header block failed", extra={"key": job.key})
            source = self.source_of(job, "", "", "")
        spent = time.monotonic() - deadline.started
        error = f"processing budget exceeded ({exc.budget:g} s) in {exc.stage}, after {spent:.1f} s"
        logger.error("processing budget exceeded", extra={"key": job.key, "mailbox": job.mailbox,
                                                          "stage": exc.stage, "budget": exc.budget})
        ledger = ledger_record(source, "failed", "failed: processing budget exceeded", step="budget", error=error,
                               attempts=attempt,
                               notes=[f"replay with a larger budget: mailintake messages reprocess {job.key} "
                                      "--budget SECONDS"])
        with contextlib.suppress(PutError):
            ledger.save(condition=LedgerRecord.pk.does_not_exist() | (LedgerRecord.status == "failed"))
        done = get_ledger(job.key)
        return Outcome.of(done if done is not None else ledger)

    def _kept(self, parsed: ParsedMessage, decision: Decision) -> list[Attachment]:
        return list(decision.attachments) if decision.attachments is not None else list(parsed.attachments)

    def _put(self, source: Source, index: int, att: Attachment, deadline: Deadline | None) -> AttachmentMap:
        check(deadline, "storing attachments")
        key = attachment_key(source.key, index, att.safe_name)
        content_type, disposition = download_headers(att.content_type, att.safe_name)
        self.s3.put_object(Bucket=self.settings.bucket, Key=key, Body=att.data, ContentType=content_type,
                           ContentDisposition=disposition)
        # pynamodb's map constructor has no annotations.
        return AttachmentMap(  # type: ignore[no-untyped-call]
            filename=att.filename, content_type=att.content_type, size=att.size, key=key,
            content_id=att.content_id, inline=att.inline)

    def _store_attachments(self, source: Source, attachments: list[Attachment], notes: list[str],
                           deadline: Deadline | None = None) -> list[AttachmentMap]:
        """Write the attachments to S3, ATTACHMENT_WRITERS at a time (each write waits on the network, not the
        CPU); past MAX_ATTACHMENTS the rest go into one archive, more-attachments.zip."""
        rest = attachments[MAX_ATTACHMENTS:]
        attachments = attachments[:MAX_ATTACHMENTS]
        if len(attachments) <= 1:
            stored = [self._put(source, i, att, deadline) for i, att in enumerate(attachments)]
        else:
            with ThreadPoolExecutor(max_workers=min(ATTACHMENT_WRITERS, len(attachments))) as pool:
                stored = list(pool.map(lambda i: self._put(source, i, attachments[i], deadline),
                                       range(len(attachments))))
        if rest:
            stored.append(self._put_archive(source, len(attachments), rest, deadline))
            notes.append(f"{len(attachments) + len(rest):,} attachments: the first {MAX_ATTACHMENTS} stored one by "
                         f"one, the other {len(rest):,} in {_ARCHIVE}")
        return stored

    def _put_archive(self, source: Source, index: int, attachments: list[Attachment],
                     deadline: Deadline | None) -> AttachmentMap:
        # Imported here: rare, and ~10 ms of every cold start otherwise.
        import tempfile
        import zipfile

        # Spooled to /tmp, not built in memory: the files are in memory already, once is enough.
        with tempfile.TemporaryFile() as spool:
            with zipfile.ZipFile(spool, "w", zipfile.ZIP_STORED) as archive:
                for att in attachments:
                    check(deadline, "archiving attachments")
                    archive.writestr(att.safe_name, att.data)
            size = spool.tell()
            spool.seek(0)
            key = attachment_key(source.key, index, _ARCHIVE)
            self.s3.put_object(Bucket=self.settings.bucket, Key=key, Body=spool, ContentType="application/zip",
                               ContentDisposition=download_headers("application/zip", _ARCHIVE)[1])
        return AttachmentMap(  # type: ignore[no-untyped-call]
            filename=_ARCHIVE, content_type="application/zip", size=size, key=key)

    def _fit(self, record: ItemRecord | CommentRecord, source: Source, notes: list[str]) -> None:
        """Keep the record under DynamoDB's item limit: large texts go to S3 whole (mailintake.bodies), and
        ``notes`` (what was simplified) says so."""
        key = bodies.key_for(source.key)
        whole = bodies.shrink(record, key)
        if whole is not None:
            bodies.put(self.s3, self.settings.bucket, key, source.key, whole)
            notes.append(f"the texts ({', '.join(sorted(whole))}) are longer than a record holds: it shows their "
                         f"first {bodies.PREVIEW_BYTES // 1024} KB, the whole texts are kept beside it "
                         "(mailintake item show)")

    def _item(self, parsed: ParsedMessage, source: Source, decision: Decision,
              deadline: Deadline) -> tuple[NewItem, int]:
        notes: list[str] = []
        attachments = self._store_attachments(source, self._kept(parsed, decision), notes, deadline)
        created = utcnow()
        text = decision.text if decision.text is not None else parsed.text
        texts: dict[str, str | None] = {"title": decision.title or parsed.subject, "description": text,
                                        "html": parsed.html if decision.text is None else None, "body_key": None}

        def build(number: int) -> ItemRecord:
            key = ItemRecord.key(number)
            return ItemRecord(
                *key, kind="item", sort=key[0], number=number, title=texts["title"],
                description=texts["description"], html=texts["html"], body_key=texts["body_key"],
                author=decision.author or parsed.sender.email, reporter=decision.reporter or None,
                author_name=decision.author_name, workspace=decision.workspace, created=created,
                message_id=source.message_id, source_key=source.key, mailbox=source.mailbox,
                attachments=attachments, readers=set(decision.readers) or None,
                editors=set(decision.editors) or None, item_type=decision.item_type, priority=decision.priority,
                fields=dict(decision.fields) or None, simplified=_simplified(parsed, notes),
            )

        # The number is not taken yet; a ten-digit one sizes the record for any (a few digits against a
        # margin of kilobytes), so it is fitted once.
        probe = build(9_999_999_999)
        self._fit(probe, source, notes)
        texts.update(title=probe.title, description=probe.description, html=probe.html, body_key=probe.body_key)
        return NewItem(build, source, _notes(decision.notes, parsed.simplified + notes)), item_size(probe)

    def _comment(self, parsed: ParsedMessage, source: Source, decision: Decision,
                 deadline: Deadline) -> tuple[NewComment, int]:
        number = int(decision.item_number or 0)
        notes: list[str] = []
        attachments = self._store_attachments(source, self._kept(parsed, decision), notes, deadline)
        created = utcnow()
        text = decision.text if decision.text is not None else parsed.text
        reply_text = decision.reply_text if decision.reply_text is not None else parsed.reply_text
        comment = CommentRecord(
            *comment_key(number, created, source.key), kind="comment", sort=created.isoformat(),
            item_number=number, text=reply_text or text, full_text=text,
            html=parsed.html if decision.text is None else None, author=decision.author or parsed.sender.email,
            author_name=decision.author_name, created=created,
            message_id=source.message_id, source_key=source.key, mailbox=source.mailbox,
            attachments=attachments, simplified=_simplified(parsed, notes),
        )
        self._fit(comment, source, notes)
        comment.simplified = _simplified(parsed, notes)
        return NewComment(comment, source, _notes(decision.notes, parsed.simplified + notes)), item_size(comment)


_ARCHIVE = "more-attachments.zip"


def _simplified(parsed: ParsedMessage, more: list[str]) -> list[str] | None:
    return [*parsed.simplified, *more] or None


def _notes(decision_notes: tuple[str, ...] | list[str], simplified: list[str]) -> list[str] | None:
    """The ledger's notes: the intake rules' own, then what parsing and storing simplified."""
    return [*decision_notes, *(f"simplified: {line}" for line in simplified)] or None


def process_queued(body: str, attempt: int, runtime: Runtime, deadline: Deadline | None = None) -> Outcome:
    """One intake-queue message body: process the raw mail it points at (or carries) by ``deadline``."""
    return Processor(runtime).process(QueuedMessage.from_json(body), attempt, deadline=deadline)
