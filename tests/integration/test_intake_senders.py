"""Steps 2-5 and the filter lists over the real local stack: who may write, what is discarded, who is told."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from mailintake import directory, store
from mailintake.localrun import run_cycle

from .conftest import make_mail
from .intake_support import (
    REPLY_FROM,
    body_of,
    configure,
    fresh_config,
    ledger_by_subject,
    ses_sent,
    verify_ses_sender,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_config")]
__all__ = ["fresh_config"]


def test_known_senders_permitted_pattern_and_empty_subject(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    tag = uuid.uuid4().hex[:8]
    ada, bob, carol, eve = (f"ada-{tag}@example.org", f"bob-{tag}@example.org", f"carol-{tag}@partner.example",
                            f"eve-{tag}@evil.example")
    verify_ses_sender(settings)
    directory.put_workspace("support")
    directory.put_user(ada, "Ada Lovelace")
    support = mailbox("imap", "ssl", workspace="support")
    system = mailbox("imap", "ssl", system=True)
    configure({"reply.from": REPLY_FROM, "intake.permittedAddresses": "*@example.org, *@partner.example"})
    # Known senders only on the workspace mailbox, not on the system one.
    configure({"intake.knownSendersOnly": "true"}, mailbox=support.name)

    deliver(support, make_mail("Known sender", sender=f"Ada <{ada}>"))
    deliver(support, make_mail("Unknown sender", sender=f"Bob <{bob}>", message_id=f"bob-{tag}"))
    deliver(system, make_mail("New partner", sender=f"Carol Jones <{carol}>"))
    deliver(system, make_mail("Not permitted", sender=f"Eve <{eve}>"))
    deliver(system, make_mail("Re: ", sender=f"Ada <{ada}>"))
    run_cycle(settings)

    ledger = ledger_by_subject()
    assert ledger["Known sender"].status == "item"
    assert ledger["Unknown sender"].outcome == f"rejected: sender {bob} is not a known user"
    assert ledger["Unknown sender"].step == "known-senders"
    assert ledger["New partner"].status == "item"
    assert ledger["Not permitted"].outcome == (
        "rejected: sender not permitted (pattern *@example.org, *@partner.example)")
    assert ledger["Not permitted"].step == "permitted"
    assert ledger["Re:"].outcome == "rejected: empty subject"
    assert ledger["Re:"].step == "subject"

    items = {i.title: i for i in store.list_items()}
    assert set(items) == {"Known sender", "New partner"}
    assert items["Known sender"].workspace == "support"
    assert items["Known sender"].author == ada
    # The system mailbox files into the default workspace; an unknown sender becomes a user.
    assert items["New partner"].workspace == "default"
    assert items["New partner"].author == carol
    assert carol in directory.lookup([carol])

    (to_bob,) = ses_sent(bob)
    assert to_bob["Subject"] == "Re: Unknown sender"
    assert to_bob["Auto-Submitted"] == "auto-replied"
    assert to_bob["In-Reply-To"] == f"<bob-{tag}@example.org>"
    assert "not a known user" in body_of(to_bob)
    (to_eve,) = ses_sent(eve)
    assert "not permitted" in body_of(to_eve)
    assert [m["Subject"] for m in ses_sent(ada)] == ["Re:"]
    assert ses_sent(carol) == []
    assert ledger["Unknown sender"].reply == f"sent via ses to {bob}"


def test_mail_error_reports_and_filter_lists_are_discarded_without_reply(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    tag = uuid.uuid4().hex[:8]
    person = f"pat-{tag}@example.org"
    verify_ses_sender(settings)
    configure({
        "reply.from": REPLY_FROM,
        "filter.rejectSender": "# noise\n^noise-",
        "filter.rejectSenderName": "^newsletter bot$",
        "filter.rejectBody": "click here to unsubscribe",
        "filter.cutBody": r"(?s)^-- ?\nCONFIDENTIALITY NOTICE.*",
        "filter.dropAttachments": "\\.vcf$\n^logo\\.png$",
    })
    box = mailbox("imap", "ssl")
    body = "The printer is on fire.\n-- \nCONFIDENTIALITY NOTICE: this mail is secret.\n"
    deliver(box, make_mail("Printer fire", body, sender=f"Pat <{person}>", attachments=[
        ("logo.png", "image/png", b"\x89PNG"), ("card.vcf", "text/vcard", b"BEGIN:VCARD"),
        ("report.pdf", "application/pdf", b"%PDF-1.4")]))
    deliver(box, make_mail("Returned mail: see transcript", "Delivery failed.\n",
                           sender=f"Mail Delivery Subsystem <MAILER-DAEMON@{tag}.example.org>"))
    deliver(box, make_mail("Away", "I am away.\n", sender=f"Pat <{person}>",
                           headers={"Auto-Submitted": "auto-replied"}))
    deliver(box, make_mail("Bulk", "Offers.\n", sender=f"Pat <{person}>", headers={"Precedence": "bulk"}))
    deliver(box, make_mail("Sender noise", sender=f"<noise-{tag}@example.org>"))
    deliver(box, make_mail("Name noise", sender=f"Newsletter Bot <nb-{tag}@example.org>"))
    deliver(box, make_mail("Body noise", "Great deals. Click here to unsubscribe.\n", sender=f"<bn-{tag}@example.org>"))
    deliver(box, make_mail("Auto-generated message from the monitor", sender=f"<mon-{tag}@example.org>"))
    run_cycle(settings)

    ledger = ledger_by_subject()
    assert ledger["Printer fire"].status == "item"
    assert ledger["Returned mail: see transcript"].step == "automail"
    assert ledger["Returned mail: see transcript"].outcome.startswith("discarded: bounce")
    assert ledger["Away"].outcome == "discarded: auto-reply: Auto-Submitted: auto-replied"
    assert ledger["Away"].notes == ["signal: Auto-Submitted: auto-replied"]
    # Bulk mail is filed, never answered.
    assert ledger["Bulk"].status == "item"
    assert "no automatic answer: bulk mail (Precedence: bulk)" in ledger["Bulk"].notes
    assert ledger["Sender noise"].outcome == "discarded: filter filter.rejectSender line 2 (^noise-) matched"
    assert ledger["Name noise"].outcome == (
        "discarded: filter filter.rejectSenderName line 1 (^newsletter bot$) matched")
    assert ledger["Body noise"].outcome == (
        "discarded: filter filter.rejectBody line 1 (click here to unsubscribe) matched")
    # The filter lists are empty by default: a subject alone discards nothing.
    assert ledger["Auto-generated message from the monitor"].status == "item"
    assert all(r.step == "filter" for s, r in ledger.items() if "noise" in s)

    items = {i.title: i for i in store.list_items()}
    assert set(items) == {"Printer fire", "Bulk", "Auto-generated message from the monitor"}
    item = items["Printer fire"]
    assert "on fire" in item.description
    assert "CONFIDENTIALITY" not in item.description
    assert [a.filename for a in item.attachments] == ["report.pdf"]
    for address in (person, f"noise-{tag}@example.org", f"nb-{tag}@example.org", f"bn-{tag}@example.org"):
        assert ses_sent(address) == []
