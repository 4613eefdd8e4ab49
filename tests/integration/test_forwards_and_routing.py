"""Who wrote it and where it goes, over the real local stack (Dovecot, moto, the fetch and process handlers):
forwarded mail belongs to its original sender, one mailbox routes to several workspaces, a contact form's
mail is its visitor's, and the system's own mail never comes back as an item."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import pytest

from mailintake import cli, directory, store
from mailintake.localrun import run_cycle
from tests.forwarded_mail import BY_CLIENT, STAFF, attached_forward, contact_form, raw

from .conftest import make_mail
from .intake_support import REPLY_FROM, configure, fresh_config, ledger_by_subject, ses_sent, verify_ses_sender

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_config")]
__all__ = ["fresh_config"]


def items_by_title() -> dict[str, Any]:
    return {i.title: i for i in store.list_items()}


def user(address: str) -> Any:
    return directory.lookup([address]).get(address)


def notification(subject: str, message_id: str) -> bytes:
    """A notification the tracker itself sent, with a Message-ID of its own domain."""
    msg = EmailMessage()
    msg["From"] = "Tracker <tracker@tracker.example>"
    msg["To"] = "support@tracker.example"
    msg["Subject"] = subject
    msg["Date"] = "Tue, 24 Nov 2026 12:00:00 +0000"
    msg["Message-ID"] = f"<{message_id}>"
    msg.set_content("Item 4 was updated by Tom.\n")
    return bytes(msg)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = cli.main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def test_forwarded_mail_in_several_clients_and_languages_is_the_original_senders(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    directory.put_workspace("support")
    directory.put_user(STAFF, "Tom Berger", {"support": "editor"})
    directory.put_user("carla.gomez@customer.example", "Carla Gómez")
    box = mailbox("imap", "ssl", workspace="support")
    for client in ("gmail-en", "outlook-de", "apple-fr", "owa-nl"):
        deliver(box, raw(BY_CLIENT[client]))
    deliver(box, attached_forward())
    # The same kind of forward from someone who may not forward on a customer's behalf: an ordinary mail.
    deliver(box, raw(BY_CLIENT["thunderbird-es"], sender="Zoe <zoe@elsewhere.example>"))
    run_cycle(settings)

    items = items_by_title()
    carla = items["Printer on floor 3 jams"]  # an existing user: her item
    assert (carla.author, carla.reporter, carla.workspace) == ("carla.gomez@customer.example", STAFF, "support")
    assert carla.description.index("Can you look at this?") < carla.description.index("jams on every second")
    hans = items["Rechnung Oktober fehlt"]  # Outlook, German: a new user made from the forwarded From
    assert (hans.author, hans.author_name, hans.reporter) == ("hans.mueller@kunde.example", "Hans Müller", STAFF)
    assert user("hans.mueller@kunde.example") is not None
    assert items["Problème de connexion au VPN"].author == "elodie.martin@client.example"
    assert items["Levering te laat"].author == "sanne.devries@klant.example"
    petra = items["Zugang gesperrt"]  # forwarded as an attachment
    assert (petra.author, petra.reporter) == ("petra.schmidt@kunde.example", STAFF)
    assert petra.description.startswith("Bitte kümmern, Frau Schmidt ist Key Account.")
    assert "From: Petra Schmidt <petra.schmidt@kunde.example>" in petra.description
    assert "seit gestern gesperrt" in petra.description
    assert [a.filename for a in petra.attachments] == ["Zugang gesperrt.eml"]  # the original kept whole
    ordinary = items["Fwd: Pedido 4711 no ha llegado"]
    assert (ordinary.author, ordinary.reporter) == ("zoe@elsewhere.example", None)
    ledger = ledger_by_subject()
    assert any(n.startswith("forward: inline forward (forward marker) of carla.gomez@customer.example's mail by")
               for n in ledger["Fwd: Printer on floor 3 jams"].notes)
    assert any("may not forward on someone's behalf" in n for n in ledger["Fwd: Pedido 4711 no ha llegado"].notes)


def test_the_customers_reply_to_a_forwarded_item_threads_into_it(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    """The customer is the item's author, so their own reply (with the item's marker) is a comment."""
    directory.put_user(STAFF, "Tom Berger", {"*": "editor"})
    box = mailbox("imap", "ssl")
    deliver(box, raw(BY_CLIENT["gmail-it"]))
    run_cycle(settings)
    number = int(items_by_title()["Fattura errata"].number)
    deliver(box, make_mail(f"Re: [HD#{number}] Fattura errata", "Grazie, aspetto la correzione.\n",
                           sender="Giulia Rossi <giulia.rossi@cliente.example>"))
    run_cycle(settings)
    comments = store.list_comments(number)
    assert [c.author for c in comments] == ["giulia.rossi@cliente.example"]


def test_one_mailbox_routes_to_workspaces_by_recipient_and_sub_address(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    for workspace in ("support", "billing", "operations", "sales"):
        directory.put_workspace(workspace)
    box = mailbox("imap", "ssl", workspace="support")
    code, shown = run_cli(capsys, "mailbox", "routes", box.name, "--address", "support@tracker.example",
                          "--route", "billing@tracker.example=billing", "--route", "+ops=operations", "--subaddress")
    assert code == 0
    assert shown["routes"] == {"billing@tracker.example": "billing", "+ops": "operations"}
    assert shown["subaddress"] is True
    deliver(box, make_mail("Invoice question", headers={"Cc": "billing@tracker.example"}))
    deliver(box, make_mail("Server down", headers={"Delivered-To": "support+ops@tracker.example"}))
    deliver(box, make_mail("Angebot anfragen", headers={"X-Original-To": "support+sales@tracker.example"}))
    deliver(box, make_mail("Nowhere in particular", headers={"Delivered-To": "support+nothing@tracker.example"}))
    deliver(box, make_mail("Plain support"))
    run_cycle(settings)

    workspaces = {title: item.workspace for title, item in items_by_title().items()}
    assert workspaces == {"Invoice question": "billing", "Server down": "operations", "Angebot anfragen": "sales",
                          "Nowhere in particular": "support", "Plain support": "support"}
    ledger = ledger_by_subject()
    assert "routing: workspace operations by route +ops (support+ops@tracker.example)" in ledger["Server down"].notes


def test_a_contact_forms_mail_is_its_visitors_and_our_own_mail_never_comes_back(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    verify_ses_sender(settings)
    box = mailbox("imap", "ssl")
    configure({"reply.from": REPLY_FROM, "reply.acknowledgeItems": "true",
               "intake.relaySenders": "forms@org.example", "intake.ownMessageIdDomains": "notify.tracker.example"})
    tag = uuid.uuid4().hex[:8]
    visitor = f"lena-{tag}@mail.example"
    deliver(box, contact_form(f"Lena Fischer <{visitor}>", relay="forms@org.example",
                              subject="Kontaktformular: Rückerstattung"))
    deliver(box, make_mail("Ordinary mail", sender=f"Max <max-{tag}@example.org>"))
    run_cycle(settings)
    items = items_by_title()
    form = items["Kontaktformular: Rückerstattung"]
    assert (form.author, form.author_name) == (visitor, "Lena Fischer")
    assert user(visitor) is not None and user("forms@org.example") is None
    assert ses_sent(visitor) == [] and ses_sent("forms@org.example") == []  # a form's Reply-To is never answered
    acknowledgement = ses_sent(f"max-{tag}@example.org")
    assert len(acknowledgement) == 1

    # Our acknowledgement delivered back into the mailbox (an auto-forward, a CC to ourselves), a tracker
    # notification, and mail from the address we send from: none of it becomes an item or gets a reply.
    deliver(box, acknowledgement[0].as_bytes())
    deliver(box, notification("Item 4 was updated", f"n-{tag}@notify.tracker.example"))
    deliver(box, make_mail("Sent by us", sender=f"Intake <{REPLY_FROM}>"))
    run_cycle(settings)
    ledger = ledger_by_subject()
    subjects = (str(acknowledgement[0]["Subject"]), "Item 4 was updated", "Sent by us")
    assert {ledger[s].step for s in subjects} == {"loop"}
    assert ledger["Item 4 was updated"].outcome == (
        "discarded: own mail: Message-ID domain notify.tracker.example (intake.ownMessageIdDomains)")
    assert ledger[str(acknowledgement[0]["Subject"])].outcome == (
        "discarded: own mail: its Message-ID is one this system made")
    assert len(store.list_items()) == 2
    assert len(ses_sent(f"max-{tag}@example.org")) == 1
