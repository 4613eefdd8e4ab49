"""A user's address is trusted only when the receiving server authenticated it: forged mail over the real stack."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from mailintake import directory, store
from mailintake.localrun import run_cycle

from .conftest import make_mail
from .intake_support import REPLY_FROM, configure, fresh_config, ledger_by_subject, ses_sent, verify_ses_sender

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_config")]
__all__ = ["fresh_config"]

SERVER = "mx.tracker.example"
WITHHELD = "no reply: the sender's address is not authenticated; a reply would go to its real owner"


def received(raw: bytes, result: str) -> bytes:
    """The mail as the receiving server hands it on: its own Authentication-Results prepended."""
    return f"Authentication-Results: {SERVER};\r\n {result}\r\n".encode() + raw


def forged(subject: str, sender: str, headers: dict[str, str] | None = None) -> bytes:
    """Mail that claims a user's address: the server found no proof, the sender wrote its own below."""
    raw = make_mail(subject, sender=f"Ada <{sender}>", headers={
        "Authentication-Results": f"{SERVER}; dmarc=pass header.from=example.org; spf=pass smtp.mailfrom={sender}",
        **(headers or {})})
    return received(raw, "spf=fail smtp.mailfrom=attacker.example; dkim=none; dmarc=fail header.from=example.org")


def authenticated(subject: str, sender: str, message_id: str | None = None) -> bytes:
    return received(make_mail(subject, sender=f"Ada <{sender}>", message_id=message_id),
                    'dkim=pass (good signature) header.d=example.org header.b="x;y";'
                    f" spf=pass smtp.mailfrom={sender}")


def test_forged_user_address_is_treated_as_unknown_and_never_answered(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    tag = uuid.uuid4().hex[:8]
    ada, bob = f"ada-{tag}@example.org", f"bob-{tag}@example.org"
    verify_ses_sender(settings)
    directory.put_workspace("support")
    directory.put_user(ada, "Ada Lovelace")
    support = mailbox("imap", "ssl", workspace="support")
    system = mailbox("imap", "ssl", system=True)
    configure({"reply.from": REPLY_FROM, "reply.acknowledgeItems": "true",
               "intake.authservIds": f"other.example, {SERVER}"})
    configure({"intake.knownSendersOnly": "true"}, mailbox=support.name)

    deliver(support, forged("Forged to support", ada))
    deliver(system, forged("Forged to system", ada))
    deliver(system, forged("Re: ", ada))
    deliver(support, authenticated("Authenticated", ada, message_id=f"ada-{tag}"))
    deliver(system, make_mail("Stranger", sender=f"Bob <{bob}>"))
    run_cycle(settings)
    # A forged reply to Ada's item is not a comment of Ada's.
    deliver(system, forged("Re: Authenticated", ada, headers={"In-Reply-To": f"<ada-{tag}@example.org>"}))
    run_cycle(settings)

    ledger = ledger_by_subject()
    reason = (f"sender {ada} is a user's address but not authenticated ({SERVER}: spf=fail; dkim=none;"
              " dmarc=fail)")
    # knownSendersOnly refuses it like any unknown sender, and says why in the ledger.
    assert ledger["Forged to support"].status == "rejected"
    assert ledger["Forged to support"].step == "known-senders"
    assert ledger["Forged to support"].outcome == f"rejected: {reason}"
    assert ledger["Forged to support"].reply == WITHHELD
    # Elsewhere it is accepted, but from the guest: the user is not its author.
    assert ledger["Forged to system"].status == "item"
    assert ledger["Forged to system"].notes == [f"authentication: {reason}; treated as an unknown sender"]
    # Whatever later step rejects it, no reply goes to the address's real owner.
    assert (ledger["Re:"].step, ledger["Re:"].reply) == ("subject", WITHHELD)
    assert ledger["Authenticated"].status == "item"
    assert ledger["Authenticated"].notes == [
        f"authentication: {ada} authenticated ({SERVER}: dkim=pass for example.org; spf=pass for example.org)"]
    assert ledger["Stranger"].status == "item"

    items = {i.title: i for i in store.list_items()}
    assert (items["Forged to system"].author, items["Forged to system"].author_name) == ("guest", "Guest")
    assert (items["Authenticated"].author, items["Authenticated"].workspace) == (ada, "support")
    assert items["Authenticated"].author_name == "Ada Lovelace"
    # Nor a comment of the guest's: the guest is party to no item (every stranger is the guest), so the
    # reference is not followed and the forged reply is filed as new mail of the guest's.
    forged_reply = ledger_by_subject()["Re: Authenticated"]
    assert forged_reply.status == "item"
    assert f"not threaded into item {int(items['Authenticated'].number)}: guest may not see it" in (
        forged_reply.notes or [])
    assert store.list_comments(int(items["Authenticated"].number)) == []
    # No second user for Ada's address, none for the guest; an unknown sender still becomes one.
    users = {u.email: u for u in directory.list_users()}
    assert set(users) == {ada, bob}
    assert (users[ada].name, users[ada].created_by) == ("Ada Lovelace", "admin")
    # Ada hears only about the mail she sent: the acknowledgement of her item.
    assert [m["Subject"].endswith("Authenticated") for m in ses_sent(ada)] == [True]


def test_reject_policy_per_mailbox_refuses_forged_mail_without_reply(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    tag = uuid.uuid4().hex[:8]
    ada = f"ada-{tag}@example.org"
    verify_ses_sender(settings)
    directory.put_workspace("support")
    directory.put_user(ada, "Ada Lovelace")
    support = mailbox("imap", "ssl", workspace="support")
    other = mailbox("imap", "ssl", workspace="support")
    configure({"reply.from": REPLY_FROM})
    configure({"intake.authservIds": SERVER, "intake.unauthenticatedSender": "reject"}, mailbox=support.name)

    deliver(support, forged("Forged", ada))
    deliver(support, received(make_mail("Unsigned", sender=f"<{ada}>"), "spf=none; dkim=none; dmarc=none"))
    deliver(support, authenticated("Authenticated", ada))
    deliver(other, forged("Forged elsewhere", ada))
    run_cycle(settings)

    ledger = ledger_by_subject()
    assert ledger["Forged"].status == "rejected"
    assert ledger["Forged"].step == "authentication"
    assert ledger["Forged"].outcome == (
        f"rejected: sender {ada} is a user's address but not authenticated ({SERVER}: spf=fail; dkim=none;"
        " dmarc=fail)")
    assert ledger["Forged"].reply == WITHHELD
    assert ledger["Unsigned"].step == "authentication"
    assert ledger["Authenticated"].status == "item"
    # The other mailbox has no check: its From is believed.
    assert ledger["Forged elsewhere"].status == "item"
    items = {i.title: i for i in store.list_items()}
    assert items["Authenticated"].author == ada
    assert items["Forged elsewhere"].author == ada
    assert ses_sent(ada) == []


def test_check_is_off_by_default_and_from_is_believed(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    tag = uuid.uuid4().hex[:8]
    ada = f"ada-{tag}@example.org"
    directory.put_user(ada, "Ada Lovelace")
    box = mailbox("imap", "ssl")
    configure({"intake.knownSendersOnly": "true"})

    deliver(box, forged("Forged, unchecked", ada))
    run_cycle(settings)

    record = ledger_by_subject()["Forged, unchecked"]
    assert (record.status, record.notes) == ("item", None)
    (item,) = store.list_items()
    assert (item.author, item.author_name) == (ada, "Ada Lovelace")


def test_permitted_pattern_admits_only_authenticated_claims_of_its_addresses(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    tag = uuid.uuid4().hex[:8]
    carol = f"carol-{tag}@example.org"  # inside the pattern, not a user
    verify_ses_sender(settings)
    box = mailbox("imap", "ssl", system=True)
    configure({"reply.from": REPLY_FROM, "intake.authservIds": SERVER,
               "intake.permittedAddresses": "*@example.org"})

    deliver(box, forged("Forged inside the pattern", carol))
    deliver(box, authenticated("Authenticated inside the pattern", carol))
    deliver(box, received(make_mail("Outside the pattern", sender=f"Eve <eve-{tag}@elsewhere.example>"),
                          "spf=pass smtp.mailfrom=elsewhere.example; dmarc=pass header.from=elsewhere.example"))
    run_cycle(settings)

    ledger = ledger_by_subject()
    forged_one = ledger["Forged inside the pattern"]
    assert (forged_one.status, forged_one.step, forged_one.reply) == ("rejected", "permitted", WITHHELD)
    assert forged_one.outcome.startswith(f"rejected: sender {carol} matches the permitted pattern")
    assert "not authenticated" in forged_one.outcome
    assert ledger["Authenticated inside the pattern"].status == "item"
    # Outside the pattern it is refused whatever its proof, and, being authenticated, told so.
    outside = ledger["Outside the pattern"]
    assert (outside.status, outside.step) == ("rejected", "permitted")
    assert outside.reply != WITHHELD
    assert ses_sent(carol) == []  # the real Carol hears nothing of mail she did not send
    assert len(ses_sent(f"eve-{tag}@elsewhere.example")) == 1
