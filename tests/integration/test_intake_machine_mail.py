"""Machine-made mail over the real local stack: what is discarded (with its evidence), what is filed but
never answered, and how an admin files a discarded mail after all (`mailintake messages accept`)."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailintake import cli, store
from mailintake.localrun import run_cycle

from .conftest import make_mail
from .fault_support import recorded
from .intake_support import (
    REPLY_FROM,
    configure,
    fresh_config,
    ledger_by_subject,
    ses_sent,
    ses_sent_all,
    verify_ses_sender,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_config")]
__all__ = ["fresh_config"]
PRECISION = Path(__file__).resolve().parents[1] / "precision" / "manifest.jsonl"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = cli.main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_an_admin_files_a_discarded_mail_with_one_command_and_it_is_never_answered(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    tag = uuid.uuid4().hex[:8]
    person = f"pat-{tag}@example.org"
    verify_ses_sender(settings)
    configure({"reply.from": REPLY_FROM, "reply.acknowledgeItems": "true"})
    box = mailbox("imap", "ssl")
    configure({"intake.listMail": "discard"}, mailbox=box.name)
    deliver(box, make_mail("Away until Monday", "I am away.\n", sender=f"Pat <{person}>",
                           headers={"X-Autoreply": "yes"}))
    deliver(box, make_mail("[users] Printer driver for the new model?", sender=f"Pat <{person}>",
                           headers={"List-Id": "Users <users.lists.example.org>", "Precedence": "list"}))
    deliver(box, make_mail("Ordinary request", sender=f"Pat <{person}>"))
    run_cycle(settings)

    ledger = ledger_by_subject()
    away, post = ledger["Away until Monday"], ledger["[users] Printer driver for the new model?"]
    assert away.outcome == "discarded: auto-reply: X-Autoreply: yes"
    assert away.notes == ["signal: X-Autoreply: yes"]
    assert post.status == "discarded" and post.step == "automail"
    assert post.outcome.endswith("(intake.listMail=discard)")
    assert post.notes == ["signal: List-Id: Users <users.lists.example.org>"]
    assert ledger["Ordinary request"].status == "item"
    acknowledged = ses_sent(person)
    assert len(acknowledged) == 1  # the ordinary request only

    # `messages list` shows the key an admin acts on; `messages accept` files both after all.
    code, listed = run_cli(capsys, "messages", "list", "--outcome", "discarded")
    assert code == 0 and sorted(r["key"] for r in listed) == sorted([away.key, post.key])
    code, results = run_cli(capsys, "messages", "accept", away.key, post.key)
    assert code == 0
    assert [(r["action"], r["status"]) for r in results] == [("accepted", "item"), ("accepted", "item")]

    items = {i.title: i for i in store.list_items()}
    assert set(items) == {"Away until Monday", "[users] Printer driver for the new model?", "Ordinary request"}
    accepted = recorded(away.key)
    assert accepted.status == "item"
    assert any(n.startswith("accepted by an admin; it was discarded: auto-reply") for n in accepted.notes)
    assert len(ses_sent(person)) == 1  # accepted machine mail is never answered

    # Once filed, accepting again changes nothing; nor can a filed mail or a duplicate be "accepted".
    code, results = run_cli(capsys, "messages", "accept", away.key, ledger["Ordinary request"].key)
    assert code == 1 and [r["action"] for r in results] == ["unchanged", "unchanged"]
    assert len(store.list_items()) == 3


def test_list_bulk_and_generated_mail_is_filed_and_never_answered(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    tag = uuid.uuid4().hex[:8]
    verify_ses_sender(settings)
    configure({"reply.from": REPLY_FROM, "reply.acknowledgeItems": "true"})
    box = mailbox("imap", "ssl")
    senders = {
        "[ops] Backup window moved to Sunday": ({"List-Id": "<ops.lists.example.org>", "Precedence": "list"}, "ann"),
        "PROBLEM: Disk space is low on web-3": ({"Precedence": "bulk"}, "zabbix"),
        "Cron <root@web-3> /usr/local/bin/rotate": ({"Auto-Submitted": "auto-generated"}, "root"),
        "Fw: Invoice 2291 question": ({"X-MS-Exchange-Inbox-Rules-Loop": "jane@example.org"}, "jane"),
    }
    for subject, (headers, local) in senders.items():
        deliver(box, make_mail(subject, sender=f"<{local}-{tag}@example.org>", headers=headers))
    run_cycle(settings)

    ledger = ledger_by_subject()
    assert {s: r.status for s, r in ledger.items()} == dict.fromkeys(senders, "item")
    for subject, record in ledger.items():
        assert any(n.startswith("no automatic answer:") for n in record.notes), subject
        assert ses_sent(f"{senders[subject][1]}-{tag}@example.org") == []


def test_precision_suite_through_the_real_stack(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    """Every mail of tests/precision/ through Dovecot, the fetch and the process function: people's mail
    becomes an item or comment, machine mail is discarded with its signals, and only what a person wrote
    directly is acknowledged."""
    from mailintake.conformance import load_manifest
    from mailintake.parsing import parse_message

    entries = list(load_manifest(PRECISION))
    verify_ses_sender(settings)
    configure({"reply.from": REPLY_FROM, "reply.acknowledgeItems": "true", "reply.maxPerSenderPerHour": "100"})
    box = mailbox("imap", "ssl")
    # (sender, subject) -> (kind, auto_answer, reply address, Message-ID); a qmail bounce has no Message-ID.
    expected: dict[tuple[str, str], tuple[str, bool, str, str | None]] = {}
    for entry in entries:
        raw = entry.path.read_bytes()
        parsed = parse_message(io.BytesIO(raw))
        address = parsed.sender.email  # replies and acknowledgements go to From only, never Reply-To
        expected[(parsed.sender.email, parsed.subject)] = (
            str(entry.data["kind"]), bool(entry.data["auto_answer"]), address, parsed.message_id)
        deliver(box, raw)
    assert len(expected) == len(entries)
    earlier = {str(m["Message-ID"]) for _, m in ses_sent_all()}
    run_cycle(settings)
    sent = [(to, m) for to, m in ses_sent_all() if str(m["Message-ID"]) not in earlier]

    records = [store.LedgerRecord.get(r.pk, r.sk) for r in store.list_ledger()]
    assert len(records) == len(entries)
    for record in records:
        kind, auto_answer, address, message_id = expected[(record.sender, record.subject)]
        where = f"{record.subject!r}: {record.outcome}"
        if kind == "message":
            assert record.status in ("item", "comment"), where
        else:
            assert (record.status, record.step) == ("discarded", "automail"), where
            assert any(n.startswith("signal: ") for n in record.notes), where
        acknowledged = [m for to, m in sent if address in to and message_id
                        and m["In-Reply-To"] == f"<{message_id}>"]
        should = kind == "message" and auto_answer and record.status == "item"
        assert len(acknowledged) == (1 if should else 0), where
