"""`mailintake erase --sender ADDRESS` on the real local stack: everything stored for that sender is gone
(every version of their raw mail, attachments and whole texts; their comments, identities, user record;
their details in the ledger and on items), and nothing of anyone else's is touched."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mailintake import store
from mailintake.aws_clients import client
from mailintake.localrun import run_cycle

from .conftest import ROOT, make_mail
from .intake_support import configure, fresh_config  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration

ANA, BOB = "ana@example.org", "bob@example.net"


def table_dump(settings: Any) -> list[dict[str, Any]]:
    return [item for page in client("dynamodb", settings.region).get_paginator("scan").paginate(
        TableName=settings.table) for item in page["Items"]]


def versions(settings: Any) -> set[tuple[str, str]]:
    s3 = client("s3", settings.region)
    return {(e["Key"], e["VersionId"]) for page in s3.get_paginator("list_object_versions").paginate(
        Bucket=settings.bucket) for e in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]}


def records_of(settings: Any, who: str) -> list[dict[str, Any]]:
    return [r for r in table_dump(settings) if who in json.dumps(r).lower()]


@pytest.fixture()
def two_senders(settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None],
                fresh_config: None) -> Iterator[Any]:  # noqa: F811
    configure({"item.emailReceived.addCcAsReader": "true"})
    box = mailbox("imap")
    long_text = "Every detail of the printer's failure, again and again. " * 8000  # past a record: bodies/
    deliver(box, make_mail("Printer on fire", long_text, sender=f"Ana <{ANA}>",
                           attachments=[("photo.png", "image/png", b"\x89PNG ana's photo")]))
    bob = make_mail("Laptop broken", "It will not boot.", sender=f"Bob <{BOB}>",
                    attachments=[("bios.txt", "text/plain", b"bob's bios log")])
    deliver(box, bob.replace(b"To: support@tracker.example", b"To: support@tracker.example\nCc: " + ANA.encode()))
    run_cycle(settings)
    deliver(box, make_mail("Re: [HD#1] still burning", "Still burning.", sender=f"Ana <{ANA}>"))
    deliver(box, make_mail("Re: [HD#2] mine too", "Mine will not boot either.", sender=f"Ana <{ANA}>",
                           attachments=[("mine.txt", "text/plain", b"ana's log")]))
    deliver(box, make_mail("Re: [HD#2] found it", "It was the battery.", sender=f"Bob <{BOB}>"))
    run_cycle(settings)
    yield box


def test_erasing_a_sender_removes_all_they_left_and_nothing_of_anyone_else(settings: Any, two_senders: Any) -> None:
    items = {int(i.number): i for i in store.list_items()}
    assert (items[1].author, items[2].author) == (ANA, BOB) and items[2].readers == {ANA}
    assert items[1].body_key and len(store.list_comments(1)) == 1 and len(store.list_comments(2)) == 2
    ledger = store.list_ledger()
    ana_keys = {r.key for r in ledger if r.sender == ANA}
    bob_keys = {r.key for r in ledger if r.sender == BOB}
    assert len(ana_keys) == 3 and len(bob_keys) == 2
    before = versions(settings)
    ana_objects = {v for v in before if any(v[0] == k for k in ana_keys) or "bodies/" in v[0]
                   or v[0].startswith(tuple(_attachment_prefixes(ana_keys)))}
    assert len(ana_objects) == 3 + 1 + 2  # three raw mails, the whole texts, two attachments
    bob_records = [r for r in records_of(settings, BOB) if ANA not in json.dumps(r).lower()]

    done = subprocess.run([sys.executable, "-m", "mailintake.cli", "erase", "--sender", "Ana@Example.org", "--json"],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    report = json.loads(done.stdout)

    assert sorted(report["mails"]) == sorted(ana_keys)
    assert report["objects_deleted"] == len(ana_objects)
    assert report["items_erased"] == [1] and report["comments_deleted"] == 2
    assert report["message_ids_deleted"] == 3 and report["ledger_records_erased"] == 3
    assert report["user_deleted"] is True and report["removed_from_items"] == [2]
    # All gone: no object version of theirs, no record naming them anywhere in the table.
    assert versions(settings) == before - ana_objects
    assert records_of(settings, ANA) == []
    # What is kept says only that a mail was fetched and what became of it.
    erased = {r.key: r for r in store.list_ledger() if r.key in ana_keys}
    assert all((r.sender, r.subject) == ("(erased)", "(erased)") and r.message_id is None for r in erased.values())
    assert sorted(r.status for r in erased.values()) == ["comment", "comment", "item"]
    first = store.get_item(1)
    assert first is not None and (first.title, first.description, first.attachments) == ("(erased)", "", [])
    assert store.list_comments(1) == []
    # Nothing else is touched: Bob's records (but for Ana as a reader of his item) and objects are as before.
    assert all(r in table_dump(settings) for r in bob_records)
    second = store.get_item(2)
    assert second is not None and second.title == "Laptop broken" and second.readers is None
    assert [c.author for c in store.list_comments(2)] == [BOB]
    assert {v for v in versions(settings) if any(v[0] == k for k in bob_keys)} == {
        v for v in before if any(v[0] == k for k in bob_keys)}
    assert store.UserRecord.get(*store.UserRecord.key(BOB)).email == BOB


def _attachment_prefixes(keys: set[str]) -> list[str]:
    from mailintake.processing import attachment_prefix

    return [attachment_prefix(k) for k in keys]
