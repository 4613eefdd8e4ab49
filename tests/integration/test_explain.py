"""`mailintake explain` judges a raw mail exactly as processing does, and writes nothing: proven over the
whole shared corpus on the real local stack."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mailintake import store
from mailintake.aws_clients import client
from mailintake.explain import explain
from mailintake.handover import QueuedMessage, conversation_group
from mailintake.localrun import _queue_arn, invoke, sqs_event
from mailintake.runtime import Runtime

from .conftest import ROOT
from .test_corpus_processing import MANIFEST, entries

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not MANIFEST.is_file(), reason=f"no corpus at {MANIFEST}")]


def corpus() -> list[tuple[str, bytes]]:
    return [(entry["id"], (MANIFEST.parent / entry["file"]).read_bytes()) for entry in entries()]


def everything_stored(settings: Any) -> dict[str, Any]:
    """All the stack holds: every table record, every object version and delete marker, the queues."""
    table = sorted(json.dumps(item, sort_keys=True, default=str) for page in
                   client("dynamodb", settings.region).get_paginator("scan").paginate(TableName=settings.table)
                   for item in page["Items"])
    s3 = client("s3", settings.region)
    objects = sorted((e["Key"], e["VersionId"]) for page in
                     s3.get_paginator("list_object_versions").paginate(Bucket=settings.bucket)
                     for e in [*page.get("Versions", []), *page.get("DeleteMarkers", [])])
    sqs = client("sqs", settings.region)
    queues = [sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
              for url in (settings.queue_url, settings.dlq_url)]
    return {"table": table, "objects": objects, "queues": queues}


def process_one(settings: Any, key: str, raw: bytes, queue_arn: str) -> store.LedgerRecord:
    client("s3", settings.region).put_object(Bucket=settings.bucket, Key=key, Body=raw)
    queued = QueuedMessage.of(settings.bucket, key, "corpus", raw)
    message = {"MessageId": key, "ReceiptHandle": key, "Body": queued.to_json(),
               "Attributes": {"ApproximateReceiveCount": "1", "MessageGroupId": conversation_group(raw)}}
    assert invoke("process", sqs_event([message], queue_arn, settings.region)) == {"batchItemFailures": []}
    ledger = store.get_ledger(key)
    assert ledger is not None
    return ledger


def test_explain_agrees_with_processing_on_every_corpus_mail_in_turn(settings: Any) -> None:
    """Each mail is explained, then really processed, in corpus order: threading into items made by
    earlier mails and copies of earlier mails (duplicates) are judged against the same stored state."""
    queue_arn = _queue_arn(settings)
    disagreements = []
    seen = {"item": 0, "comment": 0, "rejected": 0, "discarded": 0, "duplicate": 0}
    mails = corpus()
    # The corpus's replies answer mail outside it; one answer to the first item made makes a comment.
    mails.append(("reply-to-item-1", b"From: %s\r\nTo: help@example.com\r\nSubject: Re: [HD#1] thanks\r\n"
                  b"Message-ID: <explain-reply@example.org>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\n"
                  b"Thank you, that helps.\r\n"))
    for n, (ident, raw) in enumerate(mails):
        if ident == "reply-to-item-1":
            first = store.get_item(1)
            assert first is not None
            raw = raw % first.author.encode()
        said = explain(Runtime.from_environment(), raw, "corpus")
        done = process_one(settings, f"raw/corpus/{n:04d}.eml", raw, queue_arn)
        seen[str(done.status)] += 1
        seen["duplicate"] += said.step == "duplicate"
        agree = said.status == done.status
        if done.status == "item":
            item = store.get_item(int(done.item_number))
            agree = agree and item is not None and item.workspace == said.workspace and item.title == said.title
        elif done.status == "comment":
            agree = agree and said.item_number == int(done.item_number)
        else:  # the ledger's outcome is the verdict in words: "rejected: empty subject", "discarded: ..."
            agree = agree and said.outcome == done.outcome and (done.step or "duplicate") == said.step
        if not agree:
            disagreements.append((ident, said.outcome, said.step, done.outcome, done.step))
    assert disagreements == []
    assert len(mails) == sum(seen[s] for s in ("item", "comment", "rejected", "discarded"))
    # The corpus exercises every kind of verdict.
    assert all(seen[s] > 0 for s in seen), seen


def test_explain_writes_nothing_over_the_whole_corpus(settings: Any) -> None:
    # Some state to read: the first twenty corpus mails processed (items, users, identities).
    queue_arn = _queue_arn(settings)
    mails = corpus()
    for n, (_ident, raw) in enumerate(mails[:20]):
        process_one(settings, f"raw/corpus/{n:04d}.eml", raw, queue_arn)
    before = everything_stored(settings)
    runtime = Runtime.from_environment()
    verdicts = [explain(runtime, raw, "corpus").status for _ident, raw in mails]
    assert everything_stored(settings) == before
    assert {"item", "discarded"} <= set(verdicts)


def test_the_explain_command_prints_the_verdict_title_text_and_attachments(settings: Any, tmp_path: Path) -> None:
    raw = (b"From: Ana <ana@example.org>\r\nTo: help@example.com\r\nSubject: Printer on fire\r\n"
           b"Message-ID: <explain-1@example.org>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
           b"The printer on floor 2 is on fire.\r\n--b\r\nContent-Type: application/pdf\r\n"
           b"Content-Disposition: attachment; filename=photo.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + base64.b64encode(b"%PDF-1.4 fire") + b"\r\n--b--\r\n")
    path = tmp_path / "fire.eml"
    path.write_bytes(raw)
    before = everything_stored(settings)
    done = subprocess.run([sys.executable, "-m", "mailintake.cli", "explain", str(path), "--json"], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    said = json.loads(done.stdout)
    assert (said["status"], said["step"], said["outcome"]) == ("item", "new", "new item in workspace default")
    assert said["title"] == "Printer on fire" and "floor 2 is on fire" in said["text"]
    assert said["attachments"] == [{"filename": "photo.pdf", "content_type": "application/pdf", "size": 13,
                                    "inline": False, "kept": True}]
    assert said["new_users"] == ["ana@example.org"]
    assert everything_stored(settings) == before
    # Empty subject: rejected, naming the rule.
    path.write_bytes(raw.replace(b"Subject: Printer on fire", b"Subject: Re:"))
    lines = subprocess.run([sys.executable, "-m", "mailintake.cli", "explain", str(path)], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout
    assert "verdict:     rejected: empty subject" in lines and "decided by:  subject" in lines
    assert "(nothing was written)" in lines
