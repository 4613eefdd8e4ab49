"""Mailboxes over IMAP and POP3 become items and comments: the whole path, over Dovecot and moto's server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from mailintake import store
from mailintake.aws_clients import client
from mailintake.localrun import invoke, run_cycle

from .conftest import ROOT, imap_of, make_mail

pytestmark = pytest.mark.integration


def outcomes() -> Counter[str]:
    return Counter(r.status for r in store.list_ledger())


@pytest.mark.parametrize(
    ("protocol", "security"),
    [("imap", "ssl"), ("imap", "starttls"), ("imap", "none"), ("pop3", "ssl"), ("pop3", "starttls"),
     ("pop3", "none")],
)
def test_each_protocol_and_security_turns_new_mail_into_items(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None], protocol: str, security: str
) -> None:
    box = mailbox(protocol, security)
    deliver(box, make_mail("Printer jams", "It jams on duplex.\n"))
    deliver(box, make_mail("VPN drops hourly", "Since the update.\n"))

    report = run_cycle(settings)

    assert [f["fetched"] for f in report.fetches] == [2]
    items = store.list_items()
    assert sorted(i.title for i in items) == ["Printer jams", "VPN drops hourly"]
    assert {i.mailbox for i in items} == {box.name}
    assert "It jams on duplex." in next(i.description for i in items if i.title == "Printer jams")
    assert outcomes() == Counter({"item": 2})


def test_tls_certificate_is_verified_by_default(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    box = mailbox("imap", "ssl", trust_local_ca=False)  # the self-signed certificate is not trusted
    deliver(box, make_mail("Should stay on the server"))

    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
        invoke("fetch", {"mailbox": box.name})

    assert store.list_ledger() == []
    with imap_of(box) as imap:
        assert len(imap.uids()) == 1


def test_imap_mark_seen_leaves_mail_in_inbox_flagged_seen(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    box = mailbox("imap", "ssl", after="seen")
    deliver(box, make_mail("Mark me"))
    run_cycle(settings)
    with imap_of(box) as imap:
        flags = [m.flags for m in imap.fetch(mark_seen=False)]
    assert len(flags) == 1 and "\\Seen" in flags[0]


def test_imap_move_puts_mail_into_the_named_folder(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    box = mailbox("imap", "ssl", after="move", move_to="Processed")
    with imap_of(box) as imap:
        imap.folder.create("Processed")
    deliver(box, make_mail("Move me"))
    run_cycle(settings)
    with imap_of(box) as imap:
        assert imap.uids() == []
        imap.folder.set("Processed")
        assert [m.subject for m in imap.fetch(mark_seen=False)] == ["Move me"]
    assert outcomes() == Counter({"item": 1})


def test_imap_delete_removes_mail_after_it_is_stored(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    box = mailbox("imap", "starttls", after="delete")
    deliver(box, make_mail("Delete me"))
    run_cycle(settings)
    with imap_of(box) as imap:
        assert imap.uids() == []
    assert outcomes() == Counter({"item": 1})


@pytest.mark.parametrize("after", ["delete", "keep"])
def test_pop3_delete_or_keep_and_remember(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None], after: str
) -> None:
    box = mailbox("pop3", "ssl", after=after)
    deliver(box, make_mail("First"))
    run_cycle(settings)
    deliver(box, make_mail("Second"))
    run_cycle(settings)
    run_cycle(settings)

    assert sorted(i.title for i in store.list_items()) == ["First", "Second"]
    assert outcomes() == Counter({"item": 2})
    with imap_of(box) as imap:
        assert len(imap.uids()) == (0 if after == "delete" else 2)


def test_pop3_keep_remembers_a_large_mailbox_in_bounded_records_and_forgets_what_left_the_server(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Records of at most 7 UIDLs stand in for the real 4,000, so that 25 mails need several.
    monkeypatch.setattr(store, "UIDLS_PER_RECORD", 7)
    box = mailbox("pop3", "ssl", after="keep")
    for n in range(25):
        deliver(box, make_mail(f"Kept {n:02d}"))

    run_cycle(settings)
    parts = store.load_uidls(box.name)
    assert sorted(len(p) for p in parts.values()) == [4, 7, 7, 7]  # the run's records, compacted
    assert run_cycle(settings).fetches[0]["fetched"] == 0
    assert store.load_uidls(box.name) == parts  # nothing new: nothing rewritten

    with imap_of(box) as imap:  # someone deletes five mails with another client
        imap.delete(imap.uids()[:5])
    deliver(box, make_mail("Kept 25"))
    assert run_cycle(settings).fetches[0]["fetched"] == 1

    known = store.load_uidls(box.name)
    assert len(set().union(*known.values())) == 21  # the five gone are forgotten
    assert all(len(p) <= 7 for p in known.values())
    assert sum(1 for p in known.values() if len(p) < 7) <= 1  # compact: full records and one other
    assert outcomes() == Counter({"item": 26})


def test_reply_with_marker_or_references_becomes_comment(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    box = mailbox("imap", "ssl")
    deliver(box, make_mail("Printer jams", message_id="orig"))
    run_cycle(settings)
    (item,) = store.list_items()
    number = int(item.number)

    deliver(box, make_mail(f"AW: Re: [HD#{number}] Printer jams", "Still jams.\n\n> quoted\n"))
    deliver(box, make_mail("Re: Printer jams", "Fixed by itself.\n", headers={"In-Reply-To": "<orig@example.org>"}))
    deliver(box, make_mail("Re: [HD#9999] unknown item", "Marker of nothing.\n"))
    run_cycle(settings)

    comments = store.list_comments(number)
    assert sorted(c.text.strip() for c in comments) == ["Fixed by itself.", "Still jams."]
    assert sorted(i.title for i in store.list_items()) == ["Printer jams", "Re: [HD#9999] unknown item"]
    assert outcomes() == Counter({"item": 2, "comment": 2})


def test_original_and_reply_in_one_poll_keep_their_order(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    box = mailbox("pop3", "starttls")
    deliver(box, make_mail("Outage", message_id="outage"))
    for n in range(12):  # more than one SQS batch
        deliver(box, make_mail(f"Re: Outage {n}", headers={"In-Reply-To": "<outage@example.org>"}))
    run_cycle(settings)
    (item,) = store.list_items()
    assert len(store.list_comments(int(item.number))) == 12


def test_attachments_are_stored_byte_for_byte(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    payloads = [("report.pdf", "application/pdf", bytes(range(256)) * 40), ("empty.txt", "text/plain", b""),
                ("Grüße.bin", "application/octet-stream", os.urandom(70_000))]
    box = mailbox("imap", "ssl")
    deliver(box, make_mail("With files", attachments=payloads))
    run_cycle(settings)

    (item,) = store.list_items()
    s3 = client("s3", settings.region)
    stored = {a.filename: s3.get_object(Bucket=settings.bucket, Key=a.key)["Body"].read() for a in item.attachments}
    assert stored == {name: data for name, _, data in payloads}
    assert [int(a.size) for a in item.attachments] == [len(d) for _, _, d in payloads]


def test_raw_message_is_kept_byte_for_byte(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    raw = make_mail("Keep me exactly").replace(b"\n", b"\r\n")
    box = mailbox("imap", "ssl")
    deliver(box, raw)
    run_cycle(settings)
    (ledger,) = store.list_ledger()
    body = client("s3", settings.region).get_object(Bucket=settings.bucket, Key=ledger.key)["Body"].read()
    assert body == raw


def test_second_poll_changes_nothing(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    for protocol, after in (("imap", "seen"), ("pop3", "keep")):
        box = mailbox(protocol, "ssl", after=after)
        deliver(box, make_mail(f"Once via {protocol}"))
    run_cycle(settings)
    before = (outcomes(), [(i.number, i.title) for i in store.list_items()])
    second = run_cycle(settings)
    assert [f["fetched"] for f in second.fetches] == [0, 0]
    assert (outcomes(), [(i.number, i.title) for i in store.list_items()]) == before


def test_same_message_in_two_mailboxes_makes_one_item(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    raw = make_mail("Sent to both lists", message_id="both")
    first, second = mailbox("imap", "ssl"), mailbox("pop3", "ssl")
    deliver(first, raw)
    deliver(second, raw)
    run_cycle(settings)
    assert [i.title for i in store.list_items()] == ["Sent to both lists"]
    assert outcomes() == Counter({"item": 1, "discarded": 1})
    (discarded,) = [r for r in store.list_ledger() if r.status == "discarded"]
    assert discarded.outcome.startswith("discarded: duplicate of raw/")


def test_two_polls_at_once_make_no_duplicates(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    boxes = [mailbox("imap", "ssl"), mailbox("pop3", "ssl", after="keep")]
    for box in boxes:
        for n in range(15):
            deliver(box, make_mail(f"{box.protocol} mail {n}"))
    cli = [str(ROOT / ".venv" / "bin" / "mailintake"), "poll", "--json"]
    if not os.path.exists(cli[0]):
        cli = [sys.executable, "-m", "mailintake.cli", "poll", "--json"]
    runs = [subprocess.Popen(cli, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    reports = [json.loads(run.communicate(timeout=240)[0]) for run in runs]
    assert all(run.returncode == 0 for run in runs)
    run_cycle(settings)  # whatever a locked-out run left for later

    titles = [i.title for i in store.list_items()]
    assert len(titles) == 30 and len(set(titles)) == 30
    assert outcomes() == Counter({"item": 30})
    fetched = sum(f["fetched"] for r in reports for f in r["fetches"])
    assert fetched <= 30


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_crash_between_storing_and_marking_loses_and_doubles_nothing(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None], protocol: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mailintake.sources import ImapSource, Pop3Source

    box = mailbox(protocol, "ssl", after="delete")
    for n in range(3):
        deliver(box, make_mail(f"Crash test {n}"))
    source_class = ImapSource if protocol == "imap" else Pop3Source

    def crash(self: Any, items: Any) -> None:
        raise RuntimeError("injected crash after S3 write and enqueue, before marking on the server")

    monkeypatch.setattr(source_class, "settle", crash)
    with pytest.raises(RuntimeError, match="injected crash"):
        run_cycle(settings)
    with imap_of(box) as imap:
        assert len(imap.uids()) == 3  # nothing removed that was not settled
    monkeypatch.undo()

    run_cycle(settings)
    run_cycle(settings)

    assert sorted(i.title for i in store.list_items()) == [f"Crash test {n}" for n in range(3)]
    assert outcomes() == Counter({"item": 3})
    with imap_of(box) as imap:
        assert imap.uids() == []


def test_event_files_drive_the_handlers_as_sam_local_invoke_would(
    settings: Any, deliver: Callable[..., None]
) -> None:
    """events/fetch.json and events/process.json are the shapes Lambda sends; the local runner takes them."""
    from mailintake.localstack import dovecot
    from mailintake.localstack.accounts import local_mailbox

    dovecot.clear_mail(ROOT)  # the event names a fixed mailbox, which `make demo` uses too
    fetch_event = json.loads((ROOT / "events" / "fetch.json").read_text())
    box = local_mailbox(ROOT, settings, fetch_event["mailbox"], "imap", "ssl")
    deliver(box, make_mail("Through the event files"))

    report = invoke("fetch", fetch_event)
    assert (report["mailbox"], report["fetched"], report["status"]) == (box.name, 1, "done")

    sqs = client("sqs", settings.region)
    (message,) = sqs.receive_message(QueueUrl=settings.queue_url, AttributeNames=["All"])["Messages"]
    process_event = json.loads((ROOT / "events" / "process.json").read_text())
    record = process_event["Records"][0]
    assert set(json.loads(record["body"])) == set(json.loads(message["Body"]))
    record.update(messageId=message["MessageId"], receiptHandle=message["ReceiptHandle"], body=message["Body"])

    assert invoke("process", process_event) == {"batchItemFailures": []}
    assert [i.title for i in store.list_items()] == ["Through the event files"]


def test_reused_message_id_with_another_date_is_a_new_item_but_a_rerouted_copy_is_not(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    box = mailbox("imap", "ssl")
    original = make_mail("Printer jams", "It jams on duplex.\n", message_id="reused")
    rerouted = b"Received: from relay.example.net by mx.tracker.example\r\nDelivered-To: ops@tracker.example\r\n" + (
        original.replace(b"Content-Transfer-Encoding: 7bit", b"Content-Transfer-Encoding: quoted-printable"))
    # Another mail reusing the Message-ID was written at another time (identity: Message-ID, From, Date).
    other = make_mail("Printer jams", "A different mail that reuses the Message-ID.\n", message_id="reused").replace(
        b"09:12:00 +0000", b"09:47:13 +0000")
    for raw in (original, rerouted, other):
        deliver(box, raw)
    run_cycle(settings)

    assert [i.description.strip() for i in store.list_items()] == [
        "It jams on duplex.", "A different mail that reuses the Message-ID."]
    assert outcomes() == Counter({"item": 2, "discarded": 1})
