"""The one strict reading of From: exactly one mailbox, its addr-spec, never an address out of a display name."""

from __future__ import annotations

import base64
import io

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mailintake.addresses import Mailbox, is_address, parse_mailbox
from mailintake.authentication import verify
from mailintake.parsing import Address, ParsedMessage, parse_message

BOSS, INTERN = "boss@secret.example", "intern@secret.example"


def parse_from(*values: str, extra: str = "") -> ParsedMessage:
    head = "".join(f"From: {v}\r\n" for v in values)
    return parse_message(io.BytesIO(f"{head}{extra}Subject: x\r\n\r\nbody\r\n".encode("utf-8", "surrogateescape")))


@pytest.mark.parametrize(("value", "expected"), [
    ("ada@example.org", Mailbox("ada@example.org")),
    ("<ada@example.org>", Mailbox("ada@example.org")),
    ("Ada <ada@example.org>", Mailbox("ada@example.org", "Ada")),
    ("Ada Lovelace\r\n <ada@example.org>", Mailbox("ada@example.org", "Ada Lovelace")),  # folded
    ('"Lovelace, Ada" <Ada@Example.ORG>', Mailbox("Ada@Example.ORG", "Lovelace, Ada")),
    ('"Ada \\"the first\\"" <ada@example.org>', Mailbox("ada@example.org", 'Ada "the first"')),
    ("John Q. Public <jqp@example.org>", Mailbox("jqp@example.org", "John Q. Public")),  # obs-phrase
    ("ada@example.org (Ada (the first))", Mailbox("ada@example.org", "", "Ada (the first)")),
    ("(c) Ada (x) <ada@example.org> (y)", Mailbox("ada@example.org", "Ada", "c x y")),
    ("=?utf-8?q?Doe,_John?= <j@example.org>", Mailbox("j@example.org", "=?utf-8?q?Doe,_John?=")),
    ('"ada"@example.org', Mailbox("ada@example.org")),  # quotes it did not need
    ("ada . lovelace @ example . org", Mailbox("ada.lovelace@example.org")),  # obsolete white space
    ("Jörg Müller <jörg@müller.example>", Mailbox("jörg@müller.example", "Jörg Müller")),  # RFC 6532
    # Mail systems' forms: a mailbox without an address.
    ("MAILER-DAEMON <>", Mailbox("", "MAILER-DAEMON")),
    ("<>", Mailbox("")),
    ("Mail Delivery Subsystem <MAILER-DAEMON>", Mailbox("", "Mail Delivery Subsystem", "", "MAILER-DAEMON")),
    ("mailer-daemon", Mailbox("", "", "", "mailer-daemon")),
    ("MAILER-DAEMON (Mail Delivery System)", Mailbox("", "", "Mail Delivery System", "MAILER-DAEMON")),
])
def test_one_mailbox_in_every_form_gives_its_addr_spec(value: str, expected: Mailbox) -> None:
    assert parse_mailbox(value) == expected


@pytest.mark.parametrize("value", [
    # An address in the display name, the angle-addr elsewhere (issue 11: filed as the boss's mail).
    f"{BOSS} <{INTERN}>",
    f"<{BOSS}> {INTERN}",
    f"<{INTERN}> <{BOSS}>",
    f"Boss <{BOSS}> <{INTERN}>",
    f'"Boss" {BOSS} <{INTERN}>',
    # A display name that holds an address, and no angle-addr at all.
    f'"{BOSS}"', f'"{BOSS}" {INTERN}', f"Boss {BOSS}", f"{BOSS} {INTERN}",
    # Several mailboxes, a group, a source route.
    f"{BOSS}, {INTERN}", f"{BOSS}; {INTERN}", f"Board: {BOSS}, {INTERN};", "Board:;", f"Board: <{INTERN}>;",
    f"<@relay.example:{INTERN}>", f"<@relay.example,@other.example:{INTERN}>",
    # Unterminated or stray syntax.
    '"unterminated', "unterminated (comment", f"Boss <{BOSS}", f"Boss {BOSS}>", f"[{BOSS}", f"{BOSS})",
    f"Boss\\ <{INTERN}>", "<<<@@@>>>", "@@@", "", " ", "()",
    # Not a plain addr-spec.
    "a@", "@example.org", "a@@example.org", "a@b@example.org", "a@[192.0.2.1]", "a@example..org",
    "a@example.org.", ".a@example.org", "a..b@example.org", '"a b"@example.org', '"a@b"@example.org',
    "=?utf-8?q?x?=@example.org", "a@=?utf-8?q?x?=", "a\u202e@example.org", "a\u200b@example.org",
    "a\udcff@example.org", "Ada\n<a@example.org>", "Ada <a@example.org>\x00",
])
def test_anything_but_one_mailbox_is_no_sender(value: str) -> None:
    assert parse_mailbox(value) is None


@pytest.mark.parametrize(("address", "valid"), [
    ("ada@example.org", True), ("ada.lovelace+tag@mail.example.org", True), ("jörg@müller.example", True),
    ("unterminated", False), ('"unterminated', False), ("ada@", False), ("@example.org", False),
    ("a b@example.org", False), ("a@b@c", False), ("<a@example.org>", False), ("a@example..org", False),
    ("=?utf-8?q?a?=@example.org", False), ("a\u202e@example.org", False), ("", False), ("guest", False),
    ("a@example.org=?x", False), ("a@-example.org", False), ("a@ex_ample.org", False), ("a@example.org.", False),
])
def test_is_address(address: str, valid: bool) -> None:
    assert is_address(address) is valid


@pytest.mark.parametrize(("header", "expected"), [
    (f"{BOSS} <{INTERN}>", Address("", "")),
    (f"<{BOSS}> {INTERN}", Address("", "")),
    (f"{BOSS}, {INTERN}", Address("", "")),
    (f"Board: {BOSS}, {INTERN};", Address("", "")),
    ('"unterminated', Address("", "")),
    # Valid syntax: the addr-spec is the sender; a display name naming another address is not shown.
    (f'"{BOSS}" <{INTERN}>', Address(INTERN, "")),
    (f"=?utf-8?b?{base64.b64encode(BOSS.encode()).decode()}?= <{INTERN}>", Address(INTERN, "")),
    (f"{INTERN} ({BOSS})", Address(INTERN, "")),
    (f'"{INTERN}" <{INTERN}>', Address(INTERN, "")),
    (f'"Intern ({INTERN})" <{INTERN}>', Address(INTERN, f"Intern ({INTERN})")),
    ("Ad\u202ea <ada@example.org>", Address("ada@example.org", "Ada")),  # names are shown: no bidi controls
    # A bounce keeps a name automail can read, and no address.
    ("Mail Delivery Subsystem <MAILER-DAEMON>", Address("", "Mail Delivery Subsystem")),
    ("mailer-daemon", Address("", "mailer-daemon")),
])
def test_parsed_sender(header: str, expected: Address) -> None:
    assert parse_from(header).sender == expected


def test_several_from_headers_are_no_sender() -> None:
    # DMARC cannot say which of them it judged (RFC 7489 section 6.6.1): neither is the sender.
    parsed = parse_from(INTERN, BOSS)
    assert parsed.sender == Address("", "")
    assert "from: 2 From headers; no sender" in parsed.defects


def test_cc_and_reply_to_stay_lenient_but_name_no_garbage() -> None:
    parsed = parse_from(INTERN, extra='Cc: "unterminated, Ann <ann@example.org>, <also-garbage\r\n'
                                      "Reply-To: =?utf-8?q?x?=@example.org\r\n")
    assert [a.email for a in parsed.cc if a.email] == ["ann@example.org"]
    assert all(is_address(a.email) for a in parsed.cc + parsed.reply_to if a.email)
    assert [a.email for a in parsed.reply_to] == []


# --------------------------------------------------------------------------------------------------------
# Properties: an address that appears only in the display name (or a comment) never becomes the sender.

DECOY, REAL = "boss@secret.example", "intern@other.example"


def _encoded(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


# Display-name material holding the decoy in every way a name can hold text.
NAME_PARTS = [DECOY, f'"{DECOY}"', f"=?utf-8?q?{DECOY}?=", _encoded(DECOY), f"({DECOY})", f"<{DECOY}>",
              f'"Boss <{DECOY}>"', f"Boss {DECOY}", "Boss", '"The Boss"', _encoded(f"Boss <{DECOY}>"), ".",
              ",", ";", ":", "@", "<", ">", '"', "(", ")", "\\", "=?utf-8?q?", "?="]
SAFE_NAME_PARTS = ['"The Boss"', f'"{DECOY}"', f"=?utf-8?q?{DECOY}?=", _encoded(DECOY), f"({DECOY})", "Boss",
                   _encoded(f"Boss <{DECOY}>"), f'"Boss <{DECOY}>"']
SPACE = st.sampled_from([" ", "  ", "\t", "\r\n "])


@st.composite
def _forged_from(draw: st.DrawFn) -> tuple[str, bool]:
    """A From value with the decoy only in name positions, and whether it is one valid mailbox."""
    safe = draw(st.booleans())
    parts = draw(st.lists(st.sampled_from(SAFE_NAME_PARTS if safe else NAME_PARTS), max_size=5))
    angle = draw(st.booleans())
    # No lone ")" after the address: "(" before it would make it a comment, and the decoy the addr-spec
    # ("boss@x(intern@y)" is boss's address with a comment), which is not a decoy in a name position.
    after = draw(st.lists(st.sampled_from([f"({DECOY})", "(x)"] if safe else
                                          [p for p in NAME_PARTS if p != ")"]), max_size=2))
    pieces = [*parts, f"<{REAL}>" if angle else REAL, *after]
    # Without white space two words may run into one atom ("Boss=?utf-8?q?..."), which is not the shape meant.
    text = "".join(draw(SPACE if safe else st.sampled_from(["", " "])) + piece for piece in pieces)
    return text, safe and (angle or not parts)


@settings(max_examples=400, deadline=None)
@given(_forged_from())
@example((f"{DECOY} <{REAL}>", False))
@example((f"<{DECOY}> {REAL}", False))
@example((f'"{DECOY}" <{REAL}>', True))
def test_an_address_only_in_the_display_name_is_never_the_sender(case: tuple[str, bool]) -> None:
    value, valid = case
    parsed = parse_from(value)
    # Words run together may make another address ("x@other.example=?utf-8?q?" is a valid addr-spec), but
    # never the decoy's.
    assert DECOY not in parsed.sender.email
    assert DECOY not in parsed.sender.name.lower()
    if valid:
        assert parsed.sender.email == REAL
    # And the receiving server's pass for the real sender's domain never speaks for the decoy's.
    results = ["mx.tracker.example; dmarc=pass header.from=other.example; spf=pass smtp.mailfrom=other.example"]
    verdict = verify(results, parsed.sender.email, ["mx.tracker.example"])
    assert verdict.passed is parsed.sender.email.endswith("@other.example")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_parse_mailbox_never_raises_and_gives_only_plain_addresses(value: str) -> None:
    mailbox = parse_mailbox(value)
    if mailbox is not None and mailbox.addr_spec:
        assert is_address(mailbox.addr_spec)
