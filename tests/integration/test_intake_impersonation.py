"""The sender is the one addr-spec of From, bound to what the receiving server authenticated: forged shapes
of From and of Authentication-Results over the real stack (issue 11, part 1; and part 7's garbage From)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from mailintake import directory, store
from mailintake.localrun import run_cycle

from .intake_support import REPLY_FROM, configure, fresh_config, ledger_by_subject, ses_sent, verify_ses_sender

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_config")]
__all__ = ["fresh_config"]

SERVER = "mx.tracker.example"


def raw_mail(sender: str, subject: str, result: str | None = None, cc: str | None = None,
             body: str = "Hello.") -> bytes:
    """Mail written byte by byte (a header library would refuse or rewrite these From values), with the
    receiving server's own Authentication-Results on top when ``result`` is given."""
    head = [f"Authentication-Results: {SERVER};\r\n {result}"] if result is not None else []
    head += [f"From: {sender}", "To: support@tracker.example", *([f"Cc: {cc}"] if cc else []),
             f"Subject: {subject}", "Date: Tue, 24 Nov 2026 09:12:00 +0000",
             f"Message-ID: <{uuid.uuid4().hex}@example.org>", "Content-Type: text/plain; charset=utf-8"]
    return ("\r\n".join(head) + "\r\n\r\n" + body + "\r\n").encode()


def test_an_address_in_the_display_name_never_speaks_for_its_owner(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    # The intern really sends the mail from secret.example, so the server's DMARC, SPF and DKIM all pass
    # for secret.example; only the From's display name says "boss". Before the fix the parser took the
    # boss's address from the display name: the mail was recorded "boss@secret.example authenticated"
    # and became the boss's comment on a confidential item of the boss's workspace.
    tag = uuid.uuid4().hex[:8]
    boss, intern = f"boss-{tag}@secret.example", f"intern-{tag}@secret.example"
    verify_ses_sender(settings)
    directory.put_workspace("board", default_role="none")
    directory.put_user(boss, "The Boss", {"board": "manager"})
    box = mailbox("imap", "ssl", workspace="board")
    configure({"intake.authservIds": SERVER, "reply.from": REPLY_FROM, "reply.acknowledgeItems": "true"})
    passing = ("dkim=pass header.d=secret.example; spf=pass smtp.mailfrom=" + intern
               + "; dmarc=pass header.from=secret.example")
    deliver(box, raw_mail(f"The Boss <{boss}>", "Salary review", passing.replace(intern, boss)))
    run_cycle(settings)
    (item,) = store.list_items()
    number = int(item.number)

    shapes = {
        "address as display name": f"{boss} <{intern}>",
        "angle-addr first": f"<{boss}> {intern}",
        "quoted address as display name": f'"{boss}" <{intern}>',
        "encoded address as display name": f"=?utf-8?q?{boss}?= <{intern}>",
        "two mailboxes": f"{boss}, {intern}",
        "group": f"board: {boss}, {intern};",
    }
    for label, sender in shapes.items():
        deliver(box, raw_mail(sender, f"Re: [HD#{number}] Salary review ({label})", passing))
    run_cycle(settings)

    ledger = ledger_by_subject()
    assert store.list_comments(number) == []  # nothing reached the boss's item, least of all as the boss
    for label in shapes:
        record = ledger[f"Re: [HD#{number}] Salary review ({label})"]
        assert record.sender != boss, label
        assert not any(boss in note and "authenticated" in note for note in record.notes or []), label
        assert (record.status, record.step) == ("rejected", "permission"), label
        # The marker names an item the sender may not see, so it is not followed: the mail is judged as a
        # new item of the board, where the sender may not create one either.
        if label in ("quoted address as display name", "encoded address as display name"):
            # Valid syntax: the sender is the intern, who is no user, and no member of the board.
            assert record.sender == intern
            assert f"not threaded into item {number}: {intern} may not see it" in record.notes
            assert record.outcome == f"rejected: {intern} may not create items in workspace board"
        else:
            # Not exactly one mailbox: an unknown sender without an address, the guest, answered by no one.
            assert record.sender == ""
            assert f"not threaded into item {number}: guest may not see it" in record.notes, label
            assert record.outcome == "rejected: guest may not create items in workspace board", label
    # Nobody was created: not the intern, not a user named after a display name.
    assert {u.email for u in directory.list_users()} == {boss}
    # The boss hears only about the mail the boss sent: the acknowledgement of the real item.
    assert [m["Subject"] for m in ses_sent(boss)] == [f"[HD#{number}] Salary review"]


def test_dmarc_pass_binds_to_the_from_domain_and_spf_or_dkim_only_when_aligned(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    # Mail really sent from attacker.example with Ada's example.org address in From: the server's DMARC
    # pass is for the attacker's domain, or names no header.from at all. Before the fix the latter was
    # trusted for whatever domain From had, and the mail was filed as Ada's.
    tag = uuid.uuid4().hex[:8]
    ada = f"ada-{tag}@example.org"
    directory.put_user(ada, "Ada Lovelace")
    box = mailbox("imap", "ssl", system=True)
    configure({"intake.authservIds": SERVER})
    attacker = "spf=pass smtp.mailfrom=eve@attacker.example; dkim=pass header.d=attacker.example"
    cases = {
        "dmarc pass without header.from": f"{attacker}; dmarc=pass",
        "dmarc pass for another domain": f"{attacker}; dmarc=pass header.from=attacker.example",
        "spf and dkim for another domain": attacker,
        "dmarc pass for a subdomain": "dmarc=pass header.from=mail.example.org",
        "real": "dkim=pass header.d=example.org; dmarc=pass header.from=example.org",
    }
    for label, result in cases.items():
        deliver(box, raw_mail(f"Ada <{ada}>", label, result))
    run_cycle(settings)

    items = {i.title: i for i in store.list_items()}
    ledger = ledger_by_subject()
    for label in cases:
        expected = (ada, "Ada Lovelace") if label == "real" else ("guest", "Guest")
        assert (items[label].author, items[label].author_name) == expected, label
    assert ledger["dmarc pass without header.from"].notes == [
        f"authentication: sender {ada} is a user's address but not authenticated ({SERVER}: spf=pass for"
        " attacker.example, not aligned with example.org; dkim=pass for attacker.example, not aligned with"
        " example.org; dmarc=pass without header.from); treated as an unknown sender"]
    assert {u.email for u in directory.list_users()} == {ada}


def test_garbage_from_or_cc_creates_no_user(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    # Before the fix a From of `"unterminated` created a user named `unterminated` (and so did a CC).
    box = mailbox("imap", "ssl", system=True)
    configure({"item.emailReceived.addCcAsReader": "true"})
    garbage = {'"unterminated': "quote", "unterminated": "bare word", "Boss <boss@secret.example": "bracket",
               "(unterminated comment": "comment", "@@@": "at signs"}
    for sender, label in garbage.items():
        deliver(box, raw_mail(sender, f"Garbage From: {label}", cc='"unterminated, <also-garbage'))
    run_cycle(settings)

    ledger = ledger_by_subject()
    items = {i.title: i for i in store.list_items()}
    for label in garbage.values():
        assert ledger[f"Garbage From: {label}"].status == "item", label
        item = items[f"Garbage From: {label}"]
        assert item.author == "guest" and not item.readers, label
    assert directory.list_users() == []
