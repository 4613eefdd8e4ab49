"""Threading is no back door: over the real local stack, a marker or a reference alone does not let a
stranger write into someone else's item, and another system's markers are not taken for ours."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from mailintake import directory, store
from mailintake.localrun import run_cycle
from mailintake.markers import make_marker
from mailintake.processing import Processor
from mailintake.runtime import Runtime

from .conftest import make_mail
from .fault_support import stage
from .intake_support import configure, fresh_config, ledger_by_subject

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_config")]
__all__ = ["fresh_config"]


def test_a_stranger_naming_an_item_by_marker_or_reference_does_not_comment_on_it(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    tag = uuid.uuid4().hex[:8]
    ada, kim, mallory, staff = (f"{n}-{tag}@example.org" for n in ("ada", "kim", "mallory", "staff"))
    configure({"item.emailReceived.addCcAsReader": "true"})
    directory.put_user(staff, "Staff", {"*": "editor"})
    box = mailbox("imap", "ssl", system=True)
    deliver(box, make_mail("Printer jams", sender=f"Ada <{ada}>", message_id=f"orig-{tag}",
                           headers={"Cc": f"Kim <{kim}>"}))
    run_cycle(settings)
    (item,) = store.list_items()
    number = int(item.number)
    marker = make_marker(number, settings.marker_format)

    # Mallory is a user of the default workspace like any stranger (the default role, reporter), but is
    # neither the item's author, reader nor editor: a marker or a reference is not a key to the item.
    deliver(box, make_mail(f"Re: {marker} Printer jams", "Mallory's text in Ada's item.\n",
                           sender=f"Mallory <{mallory}>", headers={"References": f"<orig-{tag}@example.org>"}))
    deliver(box, make_mail("Re: Printer jams (mallory)", "Mallory again.\n", sender=f"Mallory <{mallory}>",
                           headers={"In-Reply-To": f"<orig-{tag}@example.org>"}))
    # The author, a CC who became a reader, and staff (editor everywhere) still thread in.
    deliver(box, make_mail(f"Re: {marker} Printer jams", "Ada's follow-up.\n", sender=f"Ada <{ada}>"))
    deliver(box, make_mail("Re: Printer jams (kim)", "Kim's note.\n", sender=f"Kim <{kim}>",
                           headers={"In-Reply-To": f"<orig-{tag}@example.org>"}))
    deliver(box, make_mail(f"Re: {marker} Printer jams (staff)", "On it.\n", sender=f"Staff <{staff}>"))
    run_cycle(settings)

    comments = sorted(c.text.strip() for c in store.list_comments(number))
    assert comments == ["Ada's follow-up.", "Kim's note.", "On it."]
    ledger = ledger_by_subject()
    # Judged as new mail instead: the same outcome as naming an item that does not exist, so the sender
    # learns nothing; the admin's ledger says why it was not threaded.
    for subject in (f"Re: {marker} Printer jams", "Re: Printer jams (mallory)"):
        mallorys = [r for r in store.list_ledger() if r.sender == mallory and r.subject == subject]
        (record,) = [store.get_ledger(r.key) for r in mallorys]
        assert record is not None and record.status == "item" and record.item_number != number
        assert record.notes == [f"not threaded into item {number}: {mallory} may not see it"]
    assert ledger["Re: Printer jams (kim)"].status == "comment"


def test_another_systems_marker_is_not_ours_unless_accepted(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    tag = uuid.uuid4().hex[:8]
    ada = f"ada-{tag}@example.org"
    box = mailbox("imap", "ssl", system=True)
    deliver(box, make_mail("Printer jams", sender=f"Ada <{ada}>"))
    run_cycle(settings)
    (item,) = store.list_items()
    number = int(item.number)

    # Another ticket system's "[#1]" in a mail by the very author of our item 1: not our marker.
    deliver(box, make_mail(f"[#{number}] Your parcel has shipped", sender=f"Ada <{ada}>"))
    run_cycle(settings)
    assert ledger_by_subject()[f"[#{number}] Your parcel has shipped"].status == "item"
    assert store.list_comments(number) == []
    assert make_marker(number, settings.marker_format) != f"[#{number}]"

    # An installation that used [#N] before keeps recognising it when it says so.
    legacy = dataclasses.replace(settings, accepted_marker_formats="[#{number}]")
    raw = make_mail(f"Re: [#{number}] Printer jams", "Old-style reply.\n", sender=f"Ada <{ada}>")
    outcome = Processor(Runtime(legacy)).process(stage(settings, raw, mailbox=box.name))
    assert (outcome.status, outcome.item_number) == ("comment", number)


def test_in_guest_mode_an_unknown_sender_replies_into_their_own_item_and_no_one_elses(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    tag = uuid.uuid4().hex[:8]
    ada, mallory = f"ada-{tag}@example.org", f"mallory-{tag}@example.org"
    configure({"intake.unknownSenders": "guest"})
    box = mailbox("imap", "ssl", system=True)
    deliver(box, make_mail("Printer jams", sender=f"Ada <{ada}>", message_id=f"orig-{tag}"))
    run_cycle(settings)
    (item,) = store.list_items()
    number = int(item.number)
    assert (item.author, item.reporter) == ("guest", ada)
    marker = make_marker(number, settings.marker_format)

    deliver(box, make_mail(f"Re: {marker} Printer jams", "Ada's follow-up.\n", sender=f"Ada <{ada}>"))
    deliver(box, make_mail(f"Re: {marker} Printer jams (mallory)", "Mallory's text.\n",
                           sender=f"Mallory <{mallory}>"))
    run_cycle(settings)

    assert [c.text.strip() for c in store.list_comments(number)] == ["Ada's follow-up."]
    mallorys = ledger_by_subject()[f"Re: {marker} Printer jams (mallory)"]
    assert mallorys.status == "item" and mallorys.item_number != number
    assert directory.list_users() == [] or all(u.email not in (ada, mallory) for u in directory.list_users())
