"""Guard and activity scripts, authors, CC and permissions over the real local stack."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from mailintake import directory, store
from mailintake.localrun import run_cycle

from .conftest import make_mail
from .intake_support import REPLY_FROM, configure, fresh_config, ledger_by_subject, ses_sent, verify_ses_sender

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_config")]
__all__ = ["fresh_config"]


def test_guard_and_activity_scripts_decide_route_and_fail_alone(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    tag = uuid.uuid4().hex[:8]
    sender = f"sam-{tag}@example.org"
    verify_ses_sender(settings)
    directory.put_workspace("ops")
    configure({"reply.from": REPLY_FROM, "scripts.guard": "mailintake_scripts.size_guard:guard",
               "scripts.activity": "mailintake_scripts.routing:route", "script.maxMessageBytes": "20000",
               "script.routes": "subject:outage -> ops priority=high type=incident"})
    box = mailbox("imap", "ssl")
    broken = mailbox("imap", "ssl", workspace="ops")
    stuck = mailbox("imap", "ssl", workspace="ops")
    configure({"scripts.guard": "tests.integration.intake_support:explode"}, mailbox=broken.name)
    configure({"scripts.guard": "tests.integration.intake_support:spin", "scripts.timeoutSeconds": "1"},
              mailbox=stuck.name)

    deliver(box, make_mail("Outage in DC2", sender=f"<{sender}>"))
    deliver(box, make_mail("Urgent: printer", sender=f"<{sender}>"))
    exe = [("setup.exe", "application/octet-stream", b"MZ")]
    deliver(box, make_mail("Tool", sender=f"<{sender}>", attachments=exe))
    deliver(box, make_mail("Huge", "x" * 30000, sender=f"<{sender}>"))
    deliver(broken, make_mail("Guard raises", sender=f"<{sender}>"))
    deliver(stuck, make_mail("Guard loops", sender=f"<{sender}>"))
    report = run_cycle(settings)

    assert report.failed == 0  # script failures end the message, not the batch
    ledger = ledger_by_subject()
    assert ledger["Tool"].outcome == (
        "rejected: guard script: attachment 'setup.exe' is an executable file, which is not accepted")
    assert ledger["Tool"].step == "guard"
    assert ledger["Huge"].status == "rejected" and "accepts at most 20000" in ledger["Huge"].outcome
    assert ledger["Guard raises"].status == "failed"
    assert ledger["Guard raises"].step == "guard"
    assert "raised RuntimeError: cannot judge 'Guard raises'" in ledger["Guard raises"].error
    assert ledger["Guard loops"].status == "failed"
    assert "ran past its time budget of 1 s" in ledger["Guard loops"].outcome
    items = {i.title: store.get_item(int(i.number)) for i in store.list_items()}
    assert set(items) == {"Outage in DC2", "Urgent: printer"}
    outage, urgent = items["Outage in DC2"], items["Urgent: printer"]
    assert outage is not None and urgent is not None
    assert (outage.workspace, outage.priority, outage.item_type) == ("ops", "high", "incident")
    assert (urgent.workspace, urgent.priority) == ("default", "high")
    assert sorted(m["Subject"] for m in ses_sent(sender)) == ["Re: Huge", "Re: Tool"]


def test_authors_cc_and_permissions(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    tag = uuid.uuid4().hex[:8]
    ada, dan, cc_known, cc_new, frank = (f"{n}-{tag}@example.org" for n in ("ada", "dan", "kim", "new", "frank"))
    verify_ses_sender(settings)
    directory.put_workspace("restricted", default_role="none")
    directory.put_user(ada, "Ada", {"restricted": "reporter"})
    directory.put_user(dan, "Dan", {"restricted": "reader"})
    directory.put_user(cc_known, "Kim")
    configure({"reply.from": REPLY_FROM, "item.emailReceived.addCcAsEditor": "true",
               "item.emailReceived.addCcAsReader": "true"})
    box = mailbox("imap", "ssl", workspace="restricted")
    mail = make_mail("Ada's request", sender=f"Ada <{ada}>", message_id=f"req-{tag}",
                     headers={"Cc": f"Kim <{cc_known}>, New Person <{cc_new}>, {REPLY_FROM}"})
    deliver(box, mail)
    deliver(box, make_mail("Dan's request", sender=f"Dan <{dan}>"))
    run_cycle(settings)

    deliver(box, make_mail("Re: Ada's request", "Seen it.\n", sender=f"Dan <{dan}>",
                           headers={"In-Reply-To": f"<req-{tag}@example.org>"}))
    deliver(box, make_mail("Re: Ada's request (frank)", "Me too.\n", sender=f"Frank <{frank}>",
                           headers={"In-Reply-To": f"<req-{tag}@example.org>"}))
    run_cycle(settings)

    ledger = ledger_by_subject()
    assert ledger["Ada's request"].status == "item"
    assert ledger["Dan's request"].outcome == f"rejected: {dan} may not create items in workspace restricted"
    assert ledger["Dan's request"].step == "permission"
    assert ledger["Re: Ada's request"].status == "comment"
    # Frank may not see item 1, so the reference is not followed: as new mail he may not create items here.
    assert ledger["Re: Ada's request (frank)"].outcome == (
        f"rejected: {frank} may not create items in workspace restricted")
    assert ledger["Re: Ada's request (frank)"].notes == [f"not threaded into item 1: {frank} may not see it"]
    (item,) = store.list_items()
    full = store.get_item(int(item.number))
    assert full is not None and full.author == ada
    assert full.editors == {cc_known, cc_new} and full.readers == {cc_known, cc_new}
    created = directory.lookup([cc_new, frank])
    assert created[cc_new].name == "New Person" and created[cc_new].created_by == "email"
    assert frank not in created  # a refused mail creates nobody
    (comment,) = store.list_comments(1)
    assert comment.author == dan
    assert [m["Subject"] for m in ses_sent(dan)] == ["Re: Dan's request"]
    assert len(ses_sent(frank)) == 1
    assert ses_sent(ada) == []


def test_unknown_senders_as_guest(settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]) -> None:
    tag = uuid.uuid4().hex[:8]
    stranger = f"stranger-{tag}@example.org"
    configure({"intake.unknownSenders": "guest", "intake.defaultRole": "none"})
    directory.put_user("guest", "Guest", {"*": "reporter"})
    box = mailbox("imap", "ssl", system=True)
    deliver(box, make_mail("From a stranger", sender=f"Stranger <{stranger}>"))
    run_cycle(settings)
    (item,) = store.list_items()
    assert (item.author, item.author_name) == ("guest", "Guest")
    assert directory.lookup([stranger]) == {}
