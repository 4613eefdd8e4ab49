"""The identity of a mail among those sharing its Message-ID (Source.fingerprint_of): a rule, no stack."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from mailintake.store import Source

WHEN = datetime(2026, 11, 24, 9, 12, tzinfo=UTC)
RAW_DATE = "Tue, 24 Nov 2026 09:12:00 +0000"


def fp(sender: str = "ada@example.org", date: datetime | None = WHEN, raw_date: str = RAW_DATE,
       subject: str = "Printer jams", text: str = "It jams.", attachments: list[tuple[str, int]] | None = None) -> str:
    return Source.fingerprint_of(sender, date, raw_date, subject, text, attachments or [])


def test_a_gateway_copy_is_the_same_mail() -> None:
    # Subject tag, banner, disclaimer, attachment re-encoded, Date rewritten in another zone, From in capitals.
    assert fp() == fp(subject="[EXTERNAL] Printer jams", text="CAUTION: external sender.\n\nIt jams.\n-- \nLegal")
    assert fp() == fp(date=WHEN.astimezone(timezone(timedelta(hours=1))), raw_date="Tue, 24 Nov 2026 10:12 +0100")
    assert fp() == fp(sender="Ada@Example.ORG ", attachments=[("logo.png", 10)])


def test_mails_reusing_a_message_id_are_told_apart_by_sender_or_date() -> None:
    assert fp() != fp(sender="bob@example.org")
    assert fp() != fp(date=WHEN + timedelta(seconds=1))


def test_an_unparsable_date_counts_as_its_text() -> None:
    assert fp(date=None, raw_date="yesterday  at noon") == fp(date=None, raw_date="yesterday at noon", text="other")
    assert fp(date=None, raw_date="yesterday") != fp(date=None, raw_date="today")


def test_without_a_date_the_content_decides() -> None:
    assert fp(date=None, raw_date="") == fp(date=None, raw_date="", text="It jams.  \n")
    assert fp(date=None, raw_date="") != fp(date=None, raw_date="", text="It jams again.")
    assert fp(date=None, raw_date="") != fp(date=None, raw_date="", subject="[EXTERNAL] Printer jams")
