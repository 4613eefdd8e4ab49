"""A safe first connection, over the real Dovecot and the real fetch path: `mailbox add --start new|unread|all`
counts the folder, takes only what it says it will, and loses no mail that arrives while it is being added."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from imap_tools import MailBoxUnencrypted

from mailintake import cli, store
from mailintake.localrun import run_cycle
from mailintake.localstack import dovecot
from mailintake.sources import ImapSource, Pop3Source

from .conftest import ROOT, make_mail

pytestmark = pytest.mark.integration


class Server:
    """A mail user on the local Dovecot that already holds mail, before any mailbox record exists."""

    def __init__(self) -> None:
        self.user = f"first-{uuid.uuid4().hex[:8]}"
        self.password = secrets.token_urlsafe(12)
        dovecot.ensure_user(ROOT, self.user, self.password)

    def deliver(self, subject: str) -> None:
        dovecot.deliver(ROOT, self.user, self.password, make_mail(subject))

    def imap(self) -> Any:
        """A plain loopback session as the user, to see what the fetch left on the server."""
        info = dovecot.info(ROOT)
        return MailBoxUnencrypted(info.host, info.imap_port).login(self.user, self.password)


@pytest.fixture()
def server(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    made = Server()
    monkeypatch.setenv("FIRST_PASSWORD", made.password)
    yield made


def add(capsys: pytest.CaptureFixture[str], server: Server, protocol: str, *extra: str) -> tuple[int, Any, str]:
    info = dovecot.info(ROOT)
    port = info.imaps_port if protocol == "imap" else info.pop3s_port
    capsys.readouterr()
    code = cli.main(["mailbox", "add", server.user, "--protocol", protocol, "--host", info.host, "--port", str(port),
                     "--user", server.user, "--password-env", "FIRST_PASSWORD", "--ca-bundle", str(info.ca_bundle),
                     *extra, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def titles() -> set[str]:
    return {i.title for i in store.list_items()}


def test_start_new_takes_only_mail_that_arrives_after_the_mailbox_is_added(
    settings: Any, server: Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(3):
        server.deliver(f"Old mail {n}")
    begin = ImapSource.begin

    def racing_begin(self: ImapSource, start: Any) -> Any:
        # A mail arrives after the position was read, before the record and its schedule exist.
        found = begin(self, start)
        server.deliver("Arrived while adding")
        return found

    monkeypatch.setattr(ImapSource, "begin", racing_begin)
    code, shown, _ = add(capsys, server, "imap")  # --start new is the default
    assert code == 0
    assert shown["folder_count"] == {"total": 3, "unread": 3, "first_run": 0}
    assert shown["start"] == "new"
    server.deliver("Arrived later")
    run_cycle(settings)
    assert titles() == {"Arrived while adding", "Arrived later"}
    with server.imap() as box:
        unseen = {m.subject for m in box.fetch("UNSEEN", mark_seen=False)}
    assert unseen == {"Old mail 0", "Old mail 1", "Old mail 2"}  # left alone, not even marked read


def test_start_unread_takes_what_is_unread_and_everything_after(
    settings: Any, server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    for subject in ("Read long ago", "Still unread", "Also unread"):
        server.deliver(subject)
    with server.imap() as box:
        uids = [m.uid for m in box.fetch("ALL", mark_seen=False) if m.subject == "Read long ago"]
        box.flag(uids, "\\Seen", True)
    code, shown, _ = add(capsys, server, "imap", "--start", "unread")
    assert code == 0
    assert shown["folder_count"] == {"total": 3, "unread": 2, "first_run": 2}
    server.deliver("New after adding")
    run_cycle(settings)
    assert titles() == {"Still unread", "Also unread", "New after adding"}
    run_cycle(settings)
    assert len(store.list_items()) == 3


def test_start_all_takes_the_whole_folder(settings: Any, server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    server.deliver("Old one")
    server.deliver("Old two")
    code, shown, _ = add(capsys, server, "imap", "--start", "all")
    assert code == 0 and shown["folder_count"]["first_run"] == 2
    run_cycle(settings)
    assert titles() == {"Old one", "Old two"}


def test_pop3_start_new_never_deletes_the_mail_it_left_alone(
    settings: Any, server: Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server.deliver("Old POP3 mail")
    begin = Pop3Source.begin

    def racing_begin(self: Pop3Source, start: Any) -> Any:
        found = begin(self, start)
        server.deliver("Arrived during the POP3 session")
        return found

    monkeypatch.setattr(Pop3Source, "begin", racing_begin)
    code, shown, _ = add(capsys, server, "pop3")  # POP3 deletes after storing by default
    assert code == 0
    assert shown["folder_count"] == {"total": 1, "unread": None, "first_run": 0}
    run_cycle(settings)
    run_cycle(settings)
    assert titles() == {"Arrived during the POP3 session"}
    with server.imap() as box:
        left = [m.subject for m in box.fetch("ALL", mark_seen=False)]
    assert left == ["Old POP3 mail"]  # skipped, not "stored": a deleting mailbox leaves it on the server


def test_pop3_has_no_unread_and_an_existing_mailbox_keeps_its_position(
    settings: Any, server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = add(capsys, server, "pop3", "--start", "unread")
    assert code == 2 and "POP3 has no read state" in err
    assert store.list_mailboxes() == [] or all(m.name != server.user for m in store.list_mailboxes())
    code, shown, _ = add(capsys, server, "imap", "--start", "new", "--route", "+urgent=default")
    assert code == 0
    server.deliver("After the first add")
    code, shown, _ = add(capsys, server, "imap", "--start", "all", "--poll-minutes", "7")
    assert code == 0 and "folder_count" not in shown and shown["poll_minutes"] == 7
    assert shown["routes"] == {"+urgent": "default"} and shown["start"] == "new"  # kept by the update
    run_cycle(settings)
    assert titles() == {"After the first add"}
