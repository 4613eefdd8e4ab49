"""Every mail of the shared corpus through the real process handler: none makes it raise, each gets one
ledger outcome, bounces and auto-replies are discarded and real messages become items or comments, or
duplicates of a corpus mail that is the same mail.

The source projects' fixtures are often edited copies of one mail: the same Message-ID, From and Date with
another subject or body. Here they all arrive in one mailbox, and by the identity rule (README, "What the
same mail is") such a copy is the mail already stored, as a gateway's rewritten copy would be.
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from mailintake import store
from mailintake.aws_clients import client
from mailintake.handover import QueuedMessage, conversation_group
from mailintake.localrun import _queue_arn, invoke, sqs_event
from mailintake.parsing import parse_message

from .conftest import ROOT

pytestmark = pytest.mark.integration

# Deliberate disagreements with the corpus's source projects, with the reason.
NOT_ITEMS = {
    # Redmine files it as "(no subject)"; this project's rule 5 rejects a mail with an empty subject.
    "redmine/no_subject_header": "rejected: empty subject",
}

CORPUS = Path(os.environ.get("MAILINTAKE_CORPUS", ROOT.parent / "shared" / "corpus"))
MANIFEST = CORPUS / "manifest.jsonl"


def entries() -> list[dict[str, Any]]:
    if not MANIFEST.is_file():
        return []
    return [json.loads(line) for line in MANIFEST.read_text().splitlines() if line.strip()]


@pytest.mark.skipif(not MANIFEST.is_file(), reason=f"no corpus at {CORPUS}")
def test_every_corpus_mail_gets_exactly_one_outcome_and_none_raises(settings: Any) -> None:
    s3 = client("s3", settings.region)
    queue_arn = _queue_arn(settings)
    kinds: dict[str, str] = {}
    ids: dict[str, str] = {}
    identities: dict[str, tuple[str | None, str]] = {}
    messages = []
    for n, entry in enumerate(entries()):
        raw = (MANIFEST.parent / entry["file"]).read_bytes()
        key = f"raw/corpus/{n:04d}.eml"
        kinds[key] = entry["kind"]
        ids[key] = entry["id"]
        parsed = parse_message(io.BytesIO(raw))
        identities[key] = (parsed.message_id, store.Source.fingerprint_of(
            parsed.sender.email, parsed.date, parsed.headers.get("date", ""), parsed.subject, parsed.text,
            [(a.filename, a.size) for a in parsed.attachments]))
        s3.put_object(Bucket=settings.bucket, Key=key, Body=raw)
        queued = QueuedMessage.of(settings.bucket, key, "corpus", raw)
        messages.append({"MessageId": key, "ReceiptHandle": key, "Body": queued.to_json(),
                         "Attributes": {"ApproximateReceiveCount": "1",
                                        "MessageGroupId": conversation_group(raw)}})

    for start in range(0, len(messages), 10):
        result = invoke("process", sqs_event(messages[start:start + 10], queue_arn, settings.region))
        assert result == {"batchItemFailures": []}

    ledger = {record.key: record for record in store.list_ledger()}
    assert set(ledger) == set(kinds)
    by_kind: dict[str, Counter[str]] = {}
    for key, kind in kinds.items():
        by_kind.setdefault(kind, Counter())[ledger[key].status] += 1
    assert "failed" not in {status for counts in by_kind.values() for status in counts}
    # Machine mail is discarded without reply, whatever else is wrong with it.
    assert set(by_kind["bounce"]) == {"discarded"}, by_kind["bounce"]
    assert set(by_kind["auto-reply"]) == {"discarded"}, by_kind["auto-reply"]
    assert not [k for k, kind in kinds.items() if kind != "message" and ledger[k].reply]
    # Real messages become items or comments, or duplicates of the same mail (an edited fixture copy).
    prefix = "discarded: duplicate of "

    def same_mail_as_an_earlier_one(key: str) -> bool:
        outcome = ledger[key].outcome
        return outcome.startswith(prefix) and identities.get(outcome[len(prefix):]) == identities[key]

    not_made = {ids[k]: ledger[k].outcome for k, kind in kinds.items()
                if kind == "message" and ledger[k].status not in ("item", "comment")
                and not same_mail_as_an_earlier_one(k)}
    assert not_made == NOT_ITEMS
