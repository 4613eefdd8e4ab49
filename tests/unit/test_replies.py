"""What a reply to a rejected mail may carry: rules that need no stack."""

from __future__ import annotations

import io

import pytest

from mailintake import outgoing
from mailintake.outgoing import REASONS, rejection_reply, sanitised_excerpt
from mailintake.parsing import ParsedMessage, parse_message


def parse(raw: str) -> ParsedMessage:
    return parse_message(io.BytesIO(raw.encode("utf-8")))


@pytest.mark.parametrize(("text", "expected"), [
    ("Printer jams", "Printer jams"),
    ("Invoice \u202eexe.pdf", "Invoice exe.pdf"),  # a right-to-left override that would disguise a name
    ("a\u200bb\u2066c\u2069d\ufeff", "a b c d"),  # zero-width space, isolates, BOM
    ("line\r\nBcc: x@evil.example\x00", "line Bcc: x@evil.example"),
    ("  many   blanks\t\there  ", "many blanks here"),
    ("", ""),
])
def test_excerpt_drops_hidden_and_control_characters(text: str, expected: str) -> None:
    assert sanitised_excerpt(text) == expected


def test_excerpt_is_bounded_and_marks_the_cut() -> None:
    excerpt = sanitised_excerpt("word " * 1000)
    assert len(excerpt) == 80 and excerpt.endswith("\u2026")
    assert len(sanitised_excerpt("x" * 500, 10)) == 10


HOSTILE = ("From: Eve <eve@evil.example>\nReply-To: victim@third.example\nSubject: {subject}\n"
           "Message-ID: <{mid}>\nReferences: {refs}\n\n{body}\n")


@pytest.mark.parametrize("step", sorted(REASONS))
def test_rejection_reply_goes_to_from_and_quotes_only_a_subject_excerpt(step: str) -> None:
    parsed = parse(HOSTILE.format(subject="Buy \u202e" + "spam " * 500, mid="m@evil.example",
                                  refs=" ".join(f"<r{n}@evil.example>" for n in range(200)),
                                  body="PAYLOAD " * 10_000))
    reply = rejection_reply(parsed, step, told="attachment 'x.exe' is not accepted" if step == "guard" else "")
    assert reply.to == "eve@evil.example"
    assert "PAYLOAD" not in reply.body and "\u202e" not in reply.body + reply.subject
    assert reply.body.count("spam") <= 16 and len(reply.body) < 700
    assert len(reply.subject) <= len("Re: ") + 80
    assert reply.in_reply_to == "m@evil.example" and reply.references == ()
    assert REASONS[step] in reply.body or step == "guard"


def test_only_a_guard_scripts_own_words_reach_the_sender_and_bounded() -> None:
    parsed = parse(HOSTILE.format(subject="Hi", mid="m@evil.example", refs="", body="x"))
    assert "is not accepted" in rejection_reply(parsed, "guard", told="attachment 'x.exe' is not accepted").body
    long_reason = rejection_reply(parsed, "guard", told="quoted " * 1000).body
    assert long_reason.count("quoted") <= 30
    assert REASONS["guard"] in rejection_reply(parsed, "guard").body


def test_an_overlong_message_id_is_not_echoed() -> None:
    parsed = parse(HOSTILE.format(subject="Hi", mid="x" * 400 + "@evil.example", refs="", body="x"))
    assert rejection_reply(parsed, "subject").in_reply_to is None


def test_reply_address_is_the_from_address_whatever_reply_to_says() -> None:
    parsed = parse("From: Ada <ada@example.org>\nReply-To: other@example.net\nSubject: Hi\n\nx\n")
    assert outgoing.reply_address(parsed) == "ada@example.org"
