"""One mail is one item, even when a gateway rewrote its copy; mails that only share a Message-ID are not.
Over the real Dovecot and moto's server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mailintake import store
from mailintake.localrun import run_cycle

from .conftest import make_mail

pytestmark = pytest.mark.integration

BANNER = "CAUTION: This email originated from outside of the organization. Do not click links.\n\n"
DATE = "Tue, 24 Nov 2026 09:12:00 +0000"


def mail(subject: str, body: str, sender: str = "Ada Lovelace <ada@example.org>", date: str = DATE) -> bytes:
    raw = make_mail(subject, body, sender=sender, message_id="reused-or-copied")
    return raw.replace(f"Date: {DATE}".encode(), f"Date: {date}".encode())


def test_a_gateway_copy_with_tagged_subject_and_banner_is_the_same_mail_but_reused_ids_are_not(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    direct, gateway = mailbox("imap", "ssl"), mailbox("pop3", "ssl", after="delete")
    deliver(direct, mail("Printer jams", "The printer jams.\n"))
    # The same mail through a mail gateway: subject tagged, banner on top, Date reformatted (same instant).
    deliver(gateway, mail("[EXTERNAL] Printer jams", BANNER + "The printer jams.\n",
                          date="Tue, 24 Nov 2026 10:12:00 +0100"))
    # Distinct mails reusing the Message-ID: written an hour later by the same sender, or by someone else.
    deliver(direct, mail("Printer jams again", "Still jams.\n", date="Tue, 24 Nov 2026 10:12:00 +0000"))
    deliver(direct, mail("Printer jams", "The printer jams.\n", sender="Bob <bob@example.org>"))

    run_cycle(settings)

    ledger = {(r.sender, r.subject): r for r in store.list_ledger()}
    assert len(ledger) == 4
    copy = ledger[("ada@example.org", "[EXTERNAL] Printer jams")]
    original = ledger[("ada@example.org", "Printer jams")]
    # Which of the two was processed first is the queue's business; one is the item, the other its copy.
    assert sorted([copy.status, original.status]) == ["discarded", "item"]
    duplicate = copy if copy.status == "discarded" else original
    assert duplicate.step == "duplicate" and duplicate.outcome.startswith("discarded: duplicate of raw/")
    assert ledger[("ada@example.org", "Printer jams again")].status == "item"
    assert ledger[("bob@example.org", "Printer jams")].status == "item"
    assert len(store.list_items()) == 3
