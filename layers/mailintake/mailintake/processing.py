"""Processing one stored raw message: parse, apply the intake rules, write the item or comment.

Every message ends with exactly one ledger record. Item and comment writes carry their ledger and
message-id records in the same transaction, so a retry, a second poll or the same mail in two mailboxes
never makes a second item or comment.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass

from aws_lambda_powertools import Logger
from pynamodb.exceptions import PutError

from mailintake.aws_clients import client
from mailintake.fetching import QueuedMessage
from mailintake.intake import Decision, decide
from mailintake.mailboxes import get_mailbox
from mailintake.parsing import Attachment, ParsedMessage, parse_message
from mailintake.settings import Settings
from mailintake.store import (
    AttachmentMap,
    CommentRecord,
    DuplicateMessage,
    ItemRecord,
    LedgerRecord,
    Source,
    comment_key,
    get_ledger,
    ledger_record,
    utcnow,
    write_comment,
    write_item,
)

logger = Logger(child=True)

FINAL = ("item", "comment", "rejected", "discarded")


@dataclass(frozen=True)
class Outcome:
    status: str  # item | comment | rejected | discarded | failed
    outcome: str
    item_number: int | None = None

    @classmethod
    def of(cls, ledger: LedgerRecord) -> Outcome:
        number = int(ledger.item_number) if ledger.item_number is not None else None
        return cls(ledger.status, ledger.outcome, number)


class Processor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.s3 = client("s3", settings.region)

    def process(self, job: QueuedMessage, attempt: int = 1) -> Outcome:
        """Process one queued message. Raises only for errors worth a retry (the ledger says failed)."""
        if attempt > 1:
            # A redelivery: the first try may have finished everything but the queue ack.
            done = get_ledger(job.key)
            if done is not None and done.status in FINAL:
                return Outcome.of(done)
        try:
            return self._process(job)
        except Exception as exc:
            self._record_failure(job, exc, attempt)
            raise

    def _process(self, job: QueuedMessage) -> Outcome:
        obj = self.s3.get_object(Bucket=job.bucket, Key=job.key)
        size = int(obj["ContentLength"])
        if size > self.settings.max_message_bytes:
            obj["Body"].close()
            source = Source(job.key, job.mailbox, f"sha256:{job.sha256}", "", "")
            limit = self.settings.max_message_bytes
            return self._record(source, "rejected", f"rejected: message too large ({size} bytes > {limit})",
                                step="size")
        with obj["Body"] as body:
            parsed = parse_message(body)
        source = Source(
            key=job.key,
            mailbox=job.mailbox,
            message_id=parsed.message_id or f"sha256:{job.sha256}",
            sender=parsed.sender.email,
            subject=parsed.subject,
        )
        mailbox = get_mailbox(job.mailbox)
        workspace = mailbox.workspace if mailbox is not None else "default"
        decision = decide(parsed, self.settings, workspace)
        if decision.action in ("rejected", "discarded"):
            return self._record(source, decision.action, f"{decision.action}: {decision.reason}", step=decision.step)
        try:
            if decision.action == "comment" and decision.item_number is not None:
                ledger = self._comment(parsed, source, decision.item_number)
            else:
                ledger = self._item(parsed, source, decision)
        except DuplicateMessage as dup:
            original = dup.original
            if original is not None and original.source_key == job.key:
                done = get_ledger(job.key)
                if done is not None:
                    return Outcome.of(done)
            number = int(original.item_number) if original and original.item_number is not None else None
            where = original.source_key if original else "an earlier message"
            return self._record(source, "discarded", f"discarded: duplicate of {where}", step="duplicate",
                                item_number=number)
        return Outcome.of(ledger)

    def _record(self, source: Source, status: str, outcome: str, **fields: object) -> Outcome:
        ledger = ledger_record(source, status, outcome, **fields)
        ledger.save()
        return Outcome.of(ledger)

    def _record_failure(self, job: QueuedMessage, exc: Exception, attempt: int) -> None:
        source = Source(job.key, job.mailbox, f"sha256:{job.sha256}", "", "")
        error = f"{type(exc).__name__}: {exc}"[:2000]
        ledger = ledger_record(source, "failed", f"failed: {error}", error=error, attempts=attempt)
        logger.exception("processing failed", extra={"key": job.key, "mailbox": job.mailbox, "attempt": attempt})
        # Never overwrite a final outcome: the write may have landed before the error.
        with contextlib.suppress(PutError):
            ledger.save(condition=LedgerRecord.pk.does_not_exist() | (LedgerRecord.status == "failed"))

    def _store_attachments(self, source: Source, attachments: list[Attachment]) -> list[AttachmentMap]:
        # Keyed by the raw message, not the item number, so a retry overwrites rather than adds.
        prefix = "attachments/" + hashlib.sha256(source.key.encode()).hexdigest()[:24]
        stored = []
        for index, att in enumerate(attachments):
            key = f"{prefix}/{index:03d}/{att.safe_name}"
            self.s3.put_object(Bucket=self.settings.bucket, Key=key, Body=att.data,
                               ContentType=att.content_type or "application/octet-stream")
            stored.append(AttachmentMap(filename=att.filename, content_type=att.content_type, size=att.size,
                                        key=key, content_id=att.content_id, inline=att.inline))
        return stored

    def _item(self, parsed: ParsedMessage, source: Source, decision: Decision) -> LedgerRecord:
        attachments = self._store_attachments(source, parsed.attachments)
        created = utcnow()

        def build(number: int) -> ItemRecord:
            key = ItemRecord.key(number)
            return ItemRecord(
                *key, kind="item", sort=key[0], number=number, title=parsed.subject,
                description=parsed.text, html=parsed.html, author=parsed.sender.email,
                author_name=parsed.sender.name, workspace=decision.workspace, created=created,
                message_id=source.message_id, source_key=source.key, mailbox=source.mailbox,
                attachments=attachments,
            )

        return write_item(build, source)

    def _comment(self, parsed: ParsedMessage, source: Source, number: int) -> LedgerRecord:
        attachments = self._store_attachments(source, parsed.attachments)
        created = utcnow()
        comment = CommentRecord(
            *comment_key(number, created, source.key), kind="comment", sort=created.isoformat(),
            item_number=number, text=parsed.reply_text or parsed.text, full_text=parsed.text,
            html=parsed.html, author=parsed.sender.email, author_name=parsed.sender.name, created=created,
            message_id=source.message_id, source_key=source.key, mailbox=source.mailbox,
            attachments=attachments,
        )
        return write_comment(comment, source)
