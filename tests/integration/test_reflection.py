"""Replies cannot be turned into a mail cannon: over the real local stack (moto's SES keeps what was sent).

A stranger must not be able to make the system mail text of their choice to a third party (Reply-To, a
forged From when authentication is on), nor make it send without bound (one global limit per hour beside
the per-recipient one), nor learn the configuration or the existence of items from a rejection.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from email.header import decode_header, make_header
from typing import Any

import pytest

from mailintake import directory, store
from mailintake.localrun import run_cycle

from .conftest import make_mail
from .fault_support import recorded
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

SERVER = "mx.tracker.example"


def test_replies_go_to_the_from_address_only_and_carry_no_attacker_text_or_configuration(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    tag = uuid.uuid4().hex[:8]
    eve, victim, ada = f"eve-{tag}@evil.example", f"victim-{tag}@third.example", f"ada-{tag}@example.org"
    pattern = "*@example.org, boss@partner.example"
    verify_ses_sender(settings)
    configure({"reply.from": REPLY_FROM, "reply.acknowledgeItems": "true", "intake.permittedAddresses": pattern})
    box = mailbox("imap", "ssl")
    # 100 KB of the attacker's text in the body, 3,000 characters and a bidi override in the subject.
    payload = "Cheap pills at pills.example, call now. " * 2500
    subject = "Invoice \u202eexe.pdf " + "BUY NOW " * 375
    deliver(box, make_mail(subject, payload, sender=f"Eve <{eve}>", headers={"Reply-To": victim}))
    deliver(box, make_mail("Re:", payload, sender=f"Eve <{eve}>", headers={"Reply-To": victim}))
    # A permitted sender whose Reply-To names someone else: the acknowledgement goes to the sender.
    deliver(box, make_mail("Printer jams", sender=f"Ada <{ada}>", headers={"Reply-To": victim}))

    run_cycle(settings)

    assert ses_sent(victim) == []
    ledger = ledger_by_subject()
    assert ledger["Printer jams"].status == "item"
    # The ledger keeps 1,000 characters of a subject, the last one marking the cut (mailintake.bounds),
    # without the bidi override (parsing.display_text).
    refused = ledger[subject.replace("\u202e", "")[:999] + "\u2026"]
    assert refused.step == "permitted"
    # The admin's ledger keeps the detail; the sender's reply does not.
    assert pattern in refused.outcome
    assert {refused.reply, ledger["Re:"].reply} == {f"sent via ses to {eve}"}
    replies = ses_sent(eve)
    assert len(replies) == 2
    for reply in replies:
        body = body_of(reply)
        # At most the 80-character excerpt of the subject; nothing of the body.
        assert "pills" not in body and "BUY NOW " * 11 not in body
        assert "example.org" not in body and "partner" not in body and "*@" not in body
        assert len(body) < 1000
        reply_subject = str(make_header(decode_header(reply["Subject"])))
        assert reply_subject.startswith("Re:") and len(reply_subject) <= len("Re: ") + 80
        assert "\u202e" not in reply_subject and "\u202e" not in body
        assert reply["References"] is None or len(reply["References"]) < 300
    (ack,) = ses_sent(ada)
    assert ack["To"] == ada


def test_replies_stop_at_the_global_hourly_limit_whoever_they_would_go_to(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    tag = uuid.uuid4().hex[:8]
    strangers = [f"s{n}-{tag}@example.net" for n in range(5)]
    verify_ses_sender(settings)
    configure({"reply.from": REPLY_FROM, "reply.maxPerHour": "3"})
    box = mailbox("imap", "ssl")
    for address in strangers:
        deliver(box, make_mail("", sender=f"<{address}>"))

    run_cycle(settings)

    sent = [a for a in strangers if ses_sent(a)]
    assert len(sent) == 3
    replies = [recorded(r.key).reply or "" for r in store.list_ledger()]
    assert replies.count("no reply: the system already sent 3 replies this hour (reply.maxPerHour)") == 2


def test_permission_rejection_reveals_neither_an_item_nor_the_number_a_message_id_maps_to(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    tag = uuid.uuid4().hex[:8]
    ada, mallory = f"ada-{tag}@example.org", f"mallory-{tag}@example.net"
    verify_ses_sender(settings)
    directory.put_workspace("restricted", default_role="none")
    directory.put_user(ada, "Ada", {"restricted": "reporter"})
    configure({"reply.from": REPLY_FROM})
    box = mailbox("imap", "ssl", workspace="restricted")
    deliver(box, make_mail("Salary review", "Confidential.\n", sender=f"Ada <{ada}>", message_id=f"hidden-{tag}"))
    run_cycle(settings)

    # One probe names Ada's hidden mail, the other a Message-ID nobody stored.
    deliver(box, make_mail("Re: probe", sender=f"Mallory <{mallory}>",
                           headers={"In-Reply-To": f"<hidden-{tag}@example.org>"}))
    deliver(box, make_mail("Re: probe", sender=f"Mallory <{mallory}>",
                           headers={"In-Reply-To": f"<nothing-{tag}@example.org>"}))
    run_cycle(settings)

    probes = [r for r in store.list_ledger() if r.sender == mallory]
    assert sorted((r.status, r.step) for r in probes) == [("rejected", "permission")] * 2
    bodies = [body_of(m) for m in ses_sent(mallory)]
    assert len(bodies) == 2
    # The same words whether the item exists or not, and no number, workspace or address in them.
    assert bodies[0] == bodies[1]
    assert "item" not in bodies[0].lower() and "restricted" not in bodies[0] and "1" not in bodies[0]


def test_with_authentication_on_an_unauthenticated_stranger_gets_no_reply(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    tag = uuid.uuid4().hex[:8]
    victim = f"victim-{tag}@third.example"
    verify_ses_sender(settings)
    configure({"reply.from": REPLY_FROM, "reply.acknowledgeItems": "true", "intake.authservIds": SERVER})
    box = mailbox("imap", "ssl")
    forged_head = (f"Authentication-Results: {SERVER};\r\n spf=fail smtp.mailfrom=attacker.example;"
                   " dkim=none; dmarc=fail header.from=third.example\r\n").encode()
    # The victim's address written into From by someone else: neither a rejection nor an acknowledgement
    # may go there, whether or not the address belongs to a user.
    deliver(box, forged_head + make_mail("", "Reflected text.\n", sender=f"<{victim}>"))
    deliver(box, forged_head + make_mail("Filed anyway", "Reflected text.\n", sender=f"<{victim}>"))

    run_cycle(settings)

    ledger = ledger_by_subject()
    assert ledger[""].status == "rejected" and ledger["Filed anyway"].status == "item"
    assert ledger[""].reply == ("no reply: the sender's address is not authenticated; a reply would go to its"
                                " real owner")
    assert ses_sent(victim) == []
