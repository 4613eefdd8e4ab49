"""Forwarded mail found in the body or attached (mailintake.forwards, through the parser), and the intake
rules that decide whom it belongs to; recipient routing, relays and loop protection, on plain data."""

from __future__ import annotations

import io
from email.message import EmailMessage
from typing import Any

import pytest

from mailintake import forwards
from mailintake.access import GUEST, Person
from mailintake.message import Address, Forwarded, ParsedMessage
from mailintake.parsing import parse_message
from tests.forwarded_mail import (
    BY_CLIENT,
    NO_ADDRESS,
    REPLY_WITH_HISTORY,
    SAMPLES,
    STAFF,
    Forward,
    attached_forward,
    contact_form,
    raw,
)

from .test_intake_steps import judge

TOM = Person(STAFF, "Tom Berger", {"support": "editor"})
TOM_EVERYWHERE = Person(STAFF, "Tom Berger", {"*": "reporter"})
CUSTOMER_TOM = Person(STAFF, "Tom Berger")  # a user, but with no role of his own anywhere


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.client)
def test_an_inline_forward_names_the_original_sender_subject_and_the_forwarders_note(sample: Forward) -> None:
    found = forwards.inline(sample.body, sample.subject)
    assert found is not None
    assert (found.sender.email, found.sender.name) == (sample.original, sample.original_name)
    assert found.subject == sample.original_subject
    assert found.note == sample.note
    assert found.kind == "inline"


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.client)
def test_the_parser_finds_the_forward_of_a_whole_mail(sample: Forward) -> None:
    parsed = parse_message(io.BytesIO(raw(sample)))
    assert parsed.forwarded is not None and parsed.forwarded.sender.email == sample.original
    assert sample.customer_text in parsed.text


def test_an_html_only_outlook_forward_is_read_from_its_text() -> None:
    """Outlook on the web sends HTML: divRplyFwdMsg with bold labels and a mailto link under a rule."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "Tom <tom.berger@org.example>", "support@tracker.example", "WG: Drucker"
    msg.set_content(
        '<html><body><div>Bitte anlegen.</div><hr style="display:inline-block;width:98%"><div id="divRplyFwdMsg">'
        '<b>Von:</b> Hans M&uuml;ller &lt;<a href="mailto:hans@kunde.example">hans@kunde.example</a>&gt;<br>'
        '<b>Gesendet:</b> Dienstag, 24. November 2026 09:12<br><b>An:</b> Tom Berger<br><b>Betreff:</b> Drucker'
        '</div><div>Der Drucker im 2. Stock ist defekt.</div></body></html>', subtype="html")
    found = parse_message(io.BytesIO(bytes(msg))).forwarded
    assert found is not None
    assert (found.sender, found.subject, found.note) == (Address("hans@kunde.example", "Hans Müller"), "Drucker",
                                                          "Bitte anlegen.")


def test_a_bare_outlook_header_block_under_a_forward_subject_is_a_forward() -> None:
    body = ("Please handle.\n\nFrom: Kim Park <kim.park@customer.example>\nSent: Tuesday, November 24, 2026 9:12 AM\n"
            "To: Support <support@org.example>\nSubject: Broken link\n\nThe link on the pricing page is broken.\n")
    found = forwards.inline(body, "FW: Broken link")
    assert found is not None
    assert (found.sender.email, found.client, found.note) == ("kim.park@customer.example", "header block",
                                                               "Please handle.")
    assert forwards.inline(body, "Broken link") is None  # without the subject: a reply's quoted history


def test_a_reply_quoting_its_history_under_a_header_block_is_no_forward() -> None:
    assert forwards.inline(REPLY_WITH_HISTORY[1], REPLY_WITH_HISTORY[0]) is None


def test_a_header_block_without_an_address_names_nobody() -> None:
    assert forwards.inline(NO_ADDRESS[1], NO_ADDRESS[0]) is None


def test_an_original_message_block_counts_only_under_a_forward_subject() -> None:
    sample = BY_CLIENT["outlook-classic-en"]
    assert forwards.inline(sample.body, "Cannot log in to the portal") is None
    assert forwards.inline(sample.body, sample.subject) is not None


def test_a_forward_marker_counts_whatever_the_subject() -> None:
    sample = BY_CLIENT["gmail-en"]
    found = forwards.inline(sample.body, "Printer")
    assert found is not None and found.client == "forward marker"


def test_only_the_outermost_forward_counts() -> None:
    inner = BY_CLIENT["gmail-en"].body
    body = ("Please file.\n\n---------- Forwarded message ---------\nFrom: Ann Lee <ann@customer.example>\n"
            "Date: Tue, Nov 24, 2026\nSubject: Fwd: Printer\nTo: <tom@org.example>\n\n" + inner)
    found = forwards.inline(body, "Fwd: Fwd: Printer")
    assert found is not None and found.sender.email == "ann@customer.example"


def test_a_forward_as_attachment_names_the_attached_messages_sender_and_text() -> None:
    parsed = parse_message(io.BytesIO(attached_forward()))
    found = parsed.forwarded
    assert found is not None and found.kind == "attached"
    assert (found.sender.email, found.subject) == ("petra.schmidt@kunde.example", "Zugang gesperrt")
    assert found.note.startswith("Bitte kümmern")
    assert "seit gestern gesperrt" in found.text
    description = forwards.description(found, parsed.text)
    assert description.index("Bitte kümmern") < description.index("From: Petra Schmidt") < description.index(
        "seit gestern gesperrt")


def test_original_senders_as_outlook_and_markdown_write_them() -> None:
    assert forwards.original_sender("Smith, John [mailto:John.Smith@x.example]") == Address(
        "john.smith@x.example", "Smith, John")
    assert forwards.original_sender("**Ann** <mailto:ann@x.example>") == Address("ann@x.example", "Ann")
    assert forwards.original_sender("ann@x.example") == Address("ann@x.example", "")
    assert forwards.original_sender("Ann <ann@x.example>, Bob <bob@x.example>") is None


def test_a_forward_prefix_is_stripped_for_the_title() -> None:
    assert forwards.strip_forward_prefix("Fwd: RE: Printer") == "Printer"
    assert forwards.strip_forward_prefix("WG: AW: Rechnung") == "Rechnung"
    assert forwards.strip_forward_prefix("Printer") == "Printer"


# --- the rules: who may forward on someone's behalf ------------------------------------------------------

def forwarded(sample: Forward = BY_CLIENT["gmail-en"], sender: str = STAFF, **kw: Any) -> ParsedMessage:
    found = forwards.inline(sample.body, sample.subject)
    return ParsedMessage("f1@org.example", sample.subject, Address(sender, "Tom Berger"), text=sample.body,
                         reply_text=sample.body, forwarded=found, **kw)


def test_a_forward_by_a_member_is_the_original_senders_item_with_the_forwarder_as_reporter() -> None:
    decision = judge(forwarded(), users=(TOM,), workspaces=frozenset({"support"}), mailbox_workspace="support")
    assert (decision.action, decision.workspace) == ("item", "support")
    assert (decision.author, decision.author_name, decision.reporter) == (
        "carla.gomez@customer.example", "Carla Gómez", STAFF)
    assert decision.new_users == (("carla.gomez@customer.example", "Carla Gómez"),)
    assert decision.title == "Printer on floor 3 jams"
    assert any(n.startswith("forward: inline forward (forward marker) of carla.gomez@") for n in decision.notes)


def test_a_forward_to_an_existing_users_item_names_that_user() -> None:
    carla = Person("carla.gomez@customer.example", "Carla G.")
    decision = judge(forwarded(), users=(TOM_EVERYWHERE, carla))
    assert (decision.author, decision.author_name, decision.new_users) == ("carla.gomez@customer.example",
                                                                           "Carla G.", ())


def test_a_forward_in_guest_mode_is_the_guests_and_the_customer_reads_it() -> None:
    decision = judge(forwarded(), {"intake.unknownSenders": "guest"}, users=(TOM_EVERYWHERE,))
    assert (decision.author, decision.reporter, decision.new_users) == (GUEST, STAFF, ())
    assert "carla.gomez@customer.example" in decision.readers


def test_a_forward_by_someone_without_a_role_of_their_own_is_an_ordinary_mail() -> None:
    decision = judge(forwarded(), users=(CUSTOMER_TOM,))
    assert (decision.author, decision.reporter, decision.title) == (STAFF, "", None)
    assert any("may not forward on someone's behalf" in n for n in decision.notes)
    stranger = judge(forwarded())
    assert stranger.author == STAFF


def test_forwarders_editors_needs_an_editor_and_nobody_turns_it_off() -> None:
    assert judge(forwarded(), {"intake.forwarders": "editors"}, users=(TOM_EVERYWHERE,)).author == STAFF
    editor = Person(STAFF, "Tom", {"*": "editor"})
    assert judge(forwarded(), {"intake.forwarders": "editors"}, users=(editor,)).reporter == STAFF
    assert judge(forwarded(), {"intake.forwarders": "nobody"}, users=(editor,)).author == STAFF


def test_forwarder_addresses_allow_a_sender_without_a_role() -> None:
    decision = judge(forwarded(), {"intake.forwarderAddresses": "*@org.example"})
    assert (decision.author, decision.reporter) == ("carla.gomez@customer.example", STAFF)


def test_an_unauthenticated_forwarder_forwards_nothing() -> None:
    fail = "mx.tracker.example; dmarc=fail header.from=org.example"
    decision = judge(forwarded(authentication_results=[fail]), {"intake.authservIds": "mx.tracker.example"},
                     users=(TOM_EVERYWHERE,))
    assert decision.author != "carla.gomez@customer.example"


def test_a_forward_of_ones_own_mail_or_of_ours_names_nobody_else() -> None:
    own = Forwarded(Address(STAFF, "Tom"), "x", "", "", "inline")
    parsed = ParsedMessage("f2@org.example", "Fwd: x", Address(STAFF, "Tom"), text="x", forwarded=own)
    assert judge(parsed, users=(TOM_EVERYWHERE,)).reporter == ""
    ours = Forwarded(Address("intake@tracker.example", ""), "x", "", "", "inline")
    parsed = ParsedMessage("f3@org.example", "Fwd: x", Address(STAFF, "Tom"), text="x", forwarded=ours)
    assert judge(parsed, {"reply.from": "intake@tracker.example"}, users=(TOM_EVERYWHERE,)).author == STAFF


def test_an_attached_forward_makes_the_description_the_note_then_the_customers_text() -> None:
    parsed = parse_message(io.BytesIO(attached_forward()))
    decision = judge(parsed, users=(TOM_EVERYWHERE,))
    assert (decision.author, decision.reporter, decision.title) == (
        "petra.schmidt@kunde.example", STAFF, "Zugang gesperrt")
    assert decision.text is not None and decision.text.startswith("Bitte kümmern")
    assert "seit gestern gesperrt" in decision.text


# --- recipient routing ----------------------------------------------------------------------------------

ROUTED: dict[str, Any] = {"mailbox_addresses": frozenset({"support@tracker.example"}), "mailbox_workspace": "support",
          "routes": {"billing@tracker.example": "billing", "+ops": "operations"}}
WORKSPACES = frozenset({"support", "billing", "operations", "sales"})


def to(*addresses: str, delivered: tuple[str, ...] = (), cc: tuple[str, ...] = ()) -> ParsedMessage:
    return ParsedMessage("r1@example.org", "Printer", Address("ada@example.org", "Ada"), text="x",
                         to=[Address(a) for a in addresses], cc=[Address(a) for a in cc],
                         delivered_to=list(delivered))


def test_a_route_by_address_and_by_sub_address_picks_the_workspace() -> None:
    assert judge(to("billing@tracker.example"), workspaces=WORKSPACES, **ROUTED).workspace == "billing"
    assert judge(to("Support+Ops@tracker.example"), workspaces=WORKSPACES, **ROUTED).workspace == "operations"
    assert judge(to("support@tracker.example"), workspaces=WORKSPACES, **ROUTED).workspace == "support"


def test_the_envelope_recipient_wins_over_to_and_cc() -> None:
    decision = judge(to("support@tracker.example", delivered=("billing@tracker.example",)), workspaces=WORKSPACES,
                     **ROUTED)
    assert decision.workspace == "billing"
    assert "routing: workspace billing by route billing@tracker.example" in decision.notes
    assert judge(to("someone@example.org", cc=("billing@tracker.example",)), workspaces=WORKSPACES,
                 **ROUTED).workspace == "billing"


def test_subaddress_names_a_workspace_only_of_the_mailboxs_own_address() -> None:
    ctx: dict[str, Any] = {**ROUTED, "subaddress": True}
    assert judge(to("support+sales@tracker.example"), workspaces=WORKSPACES, **ctx).workspace == "sales"
    assert judge(to("carla+sales@customer.example"), workspaces=WORKSPACES, **ctx).workspace == "support"
    decision = judge(to("support+nowhere@tracker.example"), workspaces=WORKSPACES, **ctx)
    assert decision.workspace == "support"
    assert "routing: sub-address support+nowhere@tracker.example names workspace 'nowhere', which does not exist" \
        in decision.notes


def test_routing_decides_the_workspace_the_permission_step_checks() -> None:
    ada = Person("ada@example.org", "Ada", {"support": "reporter", "billing": "none"})
    decision = judge(to("billing@tracker.example"), users=(ada,), workspaces=WORKSPACES, **ROUTED)
    assert (decision.action, decision.step, decision.workspace) == ("rejected", "permission", "billing")


# --- relays and loop protection -------------------------------------------------------------------------

RELAY = {"intake.relaySenders": "no-reply@forms.org.example"}


def test_a_relays_mail_is_the_reply_to_addresses_and_never_answered() -> None:
    parsed = parse_message(io.BytesIO(contact_form("Lena Fischer <lena.fischer@mail.example>")))
    decision = judge(parsed, RELAY)
    assert (decision.action, decision.author, decision.author_name) == ("item", "lena.fischer@mail.example",
                                                                        "Lena Fischer")
    assert decision.new_users == (("lena.fischer@mail.example", "Lena Fischer"),)
    assert decision.reply_withheld  # a no-reply sender is never answered anyway
    assert ("relay: from relay sender no-reply@forms.org.example; the author is the Reply-To address "
            "lena.fischer@mail.example") in decision.notes
    other = parse_message(io.BytesIO(contact_form("lena.fischer@mail.example", relay="forms@org.example")))
    decision = judge(other, {"intake.relaySenders": "forms@org.example"})
    assert decision.author == "lena.fischer@mail.example"
    assert decision.reply_withheld == "sent through a relay: its Reply-To address is not verified"


def test_without_the_relay_setting_the_form_is_the_relays_mail() -> None:
    parsed = parse_message(io.BytesIO(contact_form("lena.fischer@mail.example")))
    assert judge(parsed).author == "no-reply@forms.org.example"


def test_a_relay_without_a_reply_to_stays_the_relays_mail() -> None:
    parsed = parse_message(io.BytesIO(contact_form("")))
    decision = judge(parsed, RELAY)
    assert decision.author == "no-reply@forms.org.example"
    assert any("without exactly one Reply-To" in n for n in decision.notes)


def test_a_relays_reply_to_naming_a_user_is_an_unknown_sender_with_authentication_on() -> None:
    parsed = parse_message(io.BytesIO(contact_form("ada@example.org")))
    passed = "mx.tracker.example; dmarc=pass header.from=forms.org.example"
    parsed.authentication_results.append(passed)
    ada = Person("ada@example.org", "Ada", {"*": "editor"})
    decision = judge(parsed, {**RELAY, "intake.authservIds": "mx.tracker.example"}, users=(ada,))
    assert (decision.author, decision.new_users) == (GUEST, ())
    assert judge(parsed, RELAY, users=(ada,)).author == "ada@example.org"  # authentication off: believed


def test_the_systems_own_mail_is_discarded_as_a_loop() -> None:
    ours = ParsedMessage("1700000000.123.4.mailintake@tracker.example", "[HD#4] Printer",
                         Address("someone@example.org"), text="x")
    decision = judge(ours)
    assert (decision.action, decision.step) == ("discarded", "loop")
    notification = ParsedMessage("n-77@notify.tracker.example", "Item 4 changed", Address("someone@example.org"))
    assert judge(notification, {"intake.ownMessageIdDomains": "notify.tracker.example"}).step == "loop"
    from_us = ParsedMessage("x1@example.org", "Your item", Address("intake@tracker.example"), text="x")
    decision = judge(from_us, {"reply.from": "intake@tracker.example"})
    assert decision.reason == "own mail: from intake@tracker.example, an address this system sends from"
    assert not decision.wants_reply


def test_the_parser_reads_the_envelope_recipients_servers_record() -> None:
    mail = (b"From: ada@example.org\r\nDelivered-To: Support+Ops@tracker.example\r\n"
            b"X-Original-To: billing@tracker.example\r\nTo: support@tracker.example\r\nSubject: x\r\n\r\nbody\r\n")
    assert parse_message(io.BytesIO(mail)).delivered_to == ["billing@tracker.example", "support+ops@tracker.example"]
