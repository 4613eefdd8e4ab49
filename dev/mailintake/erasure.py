"""`mailintake erase --sender ADDRESS`: remove everything stored for one sender, as a data-protection
request requires, and say what was removed.

What one sender leaves behind, and what becomes of it:

* every raw mail they sent (``raw/``), its attachments (``attachments/``) and whole texts (``bodies/``):
  deleted, every version (the bucket is versioned: deleting only the current version would leave the
  mail behind a delete marker until the lifecycle rule expired it);
* the comments made from their mails: deleted;
* the items made from their mails: kept as numbered items other people may have commented on, but their
  title, texts, author, reporter and attachment list are erased (the number stays, so no other comment
  is orphaned and no number is reused);
* their Message-ID records (the identity of each of their mails): deleted;
* their ledger records: kept as the record that a mail was fetched and what its outcome was (the
  guarantee that every fetched mail has one outcome), with sender, subject, Message-ID, notes, error and
  reply erased;
* their user record, their reply counters, and their address among other items' readers and editors:
  deleted.

What it does not touch: other senders' mail and records, and mail still in the queue (not yet processed,
so not yet attributable to a sender: run it again after the queue is drained).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from pynamodb.exceptions import DoesNotExist

from mailintake import bodies
from mailintake.access import normalise
from mailintake.aws_clients import client
from mailintake.processing import attachment_prefix
from mailintake.settings import Settings
from mailintake.store import (
    ItemRecord,
    LedgerRecord,
    MessageIdRecord,
    ReplyCounterRecord,
    UserRecord,
    list_comments,
    list_items,
    list_ledger,
)

ERASED = "(erased)"


@dataclass
class ErasureReport:
    sender: str
    mails: list[str] = field(default_factory=list)  # raw keys of their mails
    objects_deleted: int = 0  # S3 object versions and delete markers
    items_erased: list[int] = field(default_factory=list)
    comments_deleted: int = 0
    message_ids_deleted: int = 0
    ledger_records_erased: int = 0
    user_deleted: bool = False
    reply_counters_deleted: int = 0
    removed_from_items: list[int] = field(default_factory=list)  # as a reader or editor


def _delete_versions(s3: Any, bucket: str, prefix: str) -> int:
    """Every version and delete marker under ``prefix``: the object is gone, not hidden."""
    deleted = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        entries = [{"Key": e["Key"], "VersionId": e["VersionId"]}
                   for e in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
                   # list_object_versions matches a prefix: raw/a/1.eml must not take raw/a/1.eml.bak
                   if e["Key"] == prefix or prefix.endswith("/")]
        if entries:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": entries, "Quiet": True})
            deleted += len(entries)
    return deleted


def _their_ledger(address: str) -> list[LedgerRecord]:
    return [r for r in list_ledger() if normalise(r.sender or "") == address]


def _erase_item(item: ItemRecord) -> None:
    item.title, item.description, item.html = ERASED, "", None
    item.author, item.author_name, item.reporter = ERASED, "", None
    item.attachments, item.body_key, item.fields, item.simplified = [], None, None, None
    item.save()


def _erase_ledger(record: LedgerRecord) -> None:
    record.sender, record.subject, record.message_id = ERASED, ERASED, None
    record.notes, record.error, record.reply = None, None, None
    status = str(record.status)
    if status not in ("item", "comment"):  # "item 12 created" names no one; a rejection's reason may
        record.outcome = f"{status}: {ERASED}"
    record.save()


def _strip_from_items(address: str, report: ErasureReport) -> None:
    for item in list_items():
        readers, editors = set(item.readers or ()), set(item.editors or ())
        changed = False
        if address in readers or address in editors:
            item.readers = (readers - {address}) or None
            item.editors = (editors - {address}) or None
            changed = True
        if normalise(item.reporter or "") == address:
            item.reporter = None
            changed = True
        if changed:
            item.save()
            report.removed_from_items.append(int(item.number))


def _delete_reply_counters(address: str) -> int:
    prefix = f"REPLYCOUNT#{address}#"
    counters = list(ReplyCounterRecord.scan(ReplyCounterRecord.pk.startswith(prefix)))
    for counter in counters:
        counter.delete()
    return len(counters)


def erase_sender(settings: Settings, sender: str) -> ErasureReport:
    address = normalise(sender)
    report = ErasureReport(address)
    s3 = client("s3", settings.region)
    ledger = _their_ledger(address)
    keys = {str(r.key) for r in ledger}
    report.mails = sorted(keys)
    for key in report.mails:
        for prefix in (key, attachment_prefix(key) + "/", bodies.key_for(key)):
            report.objects_deleted += _delete_versions(s3, settings.bucket, prefix)
    _erase_records(keys, ledger, report)
    _strip_from_items(address, report)
    with contextlib.suppress(DoesNotExist):
        UserRecord.get(*UserRecord.key(address)).delete()
        report.user_deleted = True
    report.reply_counters_deleted = _delete_reply_counters(address)
    return report


def _erase_records(keys: set[str], ledger: list[LedgerRecord], report: ErasureReport) -> None:
    items = [i for i in list_items() if str(i.source_key) in keys]
    for item in items:
        _erase_item(item)
        report.items_erased.append(int(item.number))
    numbers = {int(r.item_number) for r in ledger if r.item_number is not None}
    for number in sorted(numbers):
        for comment in list_comments(number):
            if str(comment.source_key) in keys:
                comment.delete()
                report.comments_deleted += 1
    for message_id in {str(r.message_id) for r in ledger if r.message_id}:
        for identity in MessageIdRecord.query(f"MSGID#{message_id}"):
            if str(identity.source_key) in keys:
                identity.delete()
                report.message_ids_deleted += 1
    for record in ledger:
        _erase_ledger(record)
        report.ledger_records_erased += 1


def lines(report: ErasureReport) -> list[str]:
    return [
        f"erased everything stored for {report.sender}:",
        f"  {len(report.mails)} mail(s): {report.objects_deleted} S3 object version(s) deleted (raw mail, "
        "attachments, whole texts)",
        f"  items erased (number kept): {', '.join(map(str, report.items_erased)) or 'none'}",
        f"  comments deleted: {report.comments_deleted}; Message-ID records deleted: {report.message_ids_deleted}",
        f"  ledger records erased (outcome kept): {report.ledger_records_erased}",
        f"  user record deleted: {'yes' if report.user_deleted else 'there was none'}; reply counters deleted: "
        f"{report.reply_counters_deleted}",
        f"  removed as reader or editor from items: {', '.join(map(str, report.removed_from_items)) or 'none'}",
    ]


