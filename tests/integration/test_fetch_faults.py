"""Fetch-side faults over the real Dovecot: the fetch killed at each step, leases left by crashed runs,
renumbered folders."""

from __future__ import annotations

import email
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailintake import store
from mailintake.aws_clients import client
from mailintake.localrun import invoke, run_cycle

from .conftest import ROOT, imap_of, make_mail
from .fault_support import take_over_after_a_killed_fetch

pytestmark = pytest.mark.integration


def outcomes() -> Counter[str]:
    return Counter(r.status for r in store.list_ledger())


def test_unexpired_lease_of_another_run_locks_the_mailbox_and_an_expired_one_is_taken_over(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    box = mailbox("imap", "ssl")
    deliver(box, make_mail("Waiting for the lease"))
    now = int(time.time())
    store.LeaseRecord(*store.LeaseRecord.key_for(box.name), owner="other-run", expires=now + 600).save()

    locked = invoke("fetch", {"mailbox": box.name})
    assert (locked["status"], locked["fetched"]) == ("locked", 0)

    # The other run crashed: its lease ran out, and the next run takes the mailbox over.
    store.LeaseRecord(*store.LeaseRecord.key_for(box.name), owner="other-run", expires=now - 1).save()
    report = run_cycle(settings)
    assert [f["fetched"] for f in report.fetches] == [1]
    assert outcomes() == Counter({"item": 1})


def test_cursor_out_of_step_with_uidvalidity_rereads_the_folder_without_doubling(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    box = mailbox("imap", "ssl", after="seen")
    for n in range(3):
        deliver(box, make_mail(f"Before the renumbering {n}"))
    run_cycle(settings)
    # The cursor's UIDVALIDITY no longer matches the folder's (as after a server renumbering or a restored
    # cursor): the folder is read again from the start.
    cursor = store.load_cursor(box.name)
    cursor.uidvalidity = int(cursor.uidvalidity) + 1
    store.save_cursor(cursor)
    deliver(box, make_mail("After the renumbering"))

    report = run_cycle(settings)

    assert [f["fetched"] for f in report.fetches] == [4]  # the whole folder, read again
    assert sorted(i.title for i in store.list_items()) == sorted(
        [f"Before the renumbering {n}" for n in range(3)] + ["After the renumbering"])
    # The re-read mails map to the keys they were stored under, whose outcomes stand.
    assert outcomes() == Counter({"item": 4})
    assert len(store.list_ledger()) == 4


KILLER = Path(__file__).with_name("fetch_killer.py")
MAILS = 15  # two batches: the kill lands in the second, after the first was wholly handed over


def server_message_ids(box: Any) -> set[str]:
    with imap_of(box) as imap:
        return {m.headers["message-id"][0] for m in imap.fetch(headers_only=True, mark_seen=False)}


def stored_message_ids(settings: Any, box: Any) -> set[str]:
    s3 = client("s3", settings.region)
    listing = s3.list_objects_v2(Bucket=settings.bucket, Prefix=f"raw/{box.name}/").get("Contents", [])
    return {str(email.message_from_bytes(s3.get_object(Bucket=settings.bucket, Key=o["Key"])["Body"].read())
                ["Message-ID"]) for o in listing}


@pytest.mark.parametrize(("step", "nth"), [
    ("downloaded", 12), ("stored", 2), ("enqueued", 2), ("marked", 1), ("finished", 1),
])
@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_fetch_killed_at_any_step_loses_nothing_and_doubles_nothing(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None], protocol: str, step: str, nth: int
) -> None:
    box = mailbox(protocol, "ssl", after="delete")
    mails = [make_mail(f"Kill at {step} {n:02d}") for n in range(MAILS)]
    delivered = {str(email.message_from_bytes(m)["Message-ID"]) for m in mails}
    for mail in mails:
        deliver(box, mail)

    killed = subprocess.run([sys.executable, str(KILLER), box.name, step, str(nth)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]

    # Nothing removed from the server that was not stored first.
    assert delivered <= server_message_ids(box) | stored_message_ids(settings, box)
    take_over_after_a_killed_fetch(settings, box.name)

    assert sorted(i.title for i in store.list_items()) == sorted(f"Kill at {step} {n:02d}" for n in range(MAILS))
    assert outcomes() == Counter({"item": MAILS})  # one outcome per mail, however often it was read
    assert server_message_ids(box) == set()  # everything removed, now that everything is stored
    assert stored_message_ids(settings, box) == delivered


def fail_on_nth_store(monkeypatch: pytest.MonkeyPatch, nth: int, fault: Callable[[], None]) -> None:
    """Make ``fault`` happen while the fetch stores its ``nth`` mail (after the download, before its S3 write
    is started: the fetch loop's own step, as the writes themselves run beside the next downloads)."""
    from mailintake import fetching

    original = fetching.Fetcher._store
    calls = 0

    def store_then_fault(self: Any, *args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == nth:
            fault()
        return original(self, *args)

    monkeypatch.setattr(fetching.Fetcher, "_store", store_then_fault)


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_server_going_away_mid_fetch_interrupts_the_run_and_later_runs_finish_without_doubling(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None], protocol: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mailintake.localstack import dovecot

    box = mailbox(protocol, "ssl", after="delete")
    mails = [make_mail(f"Server gone {n:02d}") for n in range(MAILS)]
    for mail in mails:
        deliver(box, mail)
    fail_on_nth_store(monkeypatch, 12, lambda: dovecot.stop(ROOT))
    try:
        first = run_cycle(settings).fetches[0]
        # The two mails stored before the drop are queued too, though not settled: they have an outcome
        # even if they vanished from the server before the next run.
        assert (first["status"], first["fetched"]) == ("interrupted", 12)
        assert first["error"]
        monkeypatch.undo()
        # Still away at the next run: a configuration problem (unreachable), reported by the check.
        assert run_cycle(settings).fetches[0]["status"] == "config-error"
    finally:
        dovecot.start(ROOT)

    back = run_cycle(settings).fetches[0]

    assert back["status"] == "done"
    assert sorted(i.title for i in store.list_items()) == [f"Server gone {n:02d}" for n in range(MAILS)]
    assert outcomes() == Counter({"item": MAILS})
    assert server_message_ids(box) == set()
    assert stored_message_ids(settings, box) == {str(email.message_from_bytes(m)["Message-ID"]) for m in mails}


def test_folder_deleted_mid_fetch_keeps_what_was_stored_and_a_recreated_folder_is_read_afresh(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None], monkeypatch: pytest.MonkeyPatch,
) -> None:
    box = mailbox("imap", "ssl", after="seen")
    box.update(actions=[store.MailboxRecord.folder.set("Support")])
    with imap_of(box) as imap:
        imap.folder.create("Support")
    for n in range(MAILS):
        deliver(box, make_mail(f"Folder gone {n:02d}"), "Support")

    def delete_folder() -> None:
        with imap_of(box) as imap:
            imap.folder.delete("Support")

    fail_on_nth_store(monkeypatch, 12, delete_folder)
    first = run_cycle(settings).fetches[0]
    assert first["status"] == "interrupted"
    monkeypatch.undo()
    assert run_cycle(settings).fetches[0]["status"] == "config-error"  # the folder is missing

    # An admin restores the folder; new mail arrives in it. New UIDVALIDITY: the folder is read afresh.
    with imap_of(box) as imap:
        imap.folder.create("Support")
    for n in range(2):
        deliver(box, make_mail(f"Folder back {n}"), "Support")
    back = run_cycle(settings).fetches[0]

    assert (back["status"], back["fetched"]) == ("done", 2)
    titles = sorted(i.title for i in store.list_items())
    # The twelve read before the deletion made items; the three the admin deleted unread are not ours to lose.
    assert titles == sorted([f"Folder gone {n:02d}" for n in range(12)] + [f"Folder back {n}" for n in range(2)])
    assert outcomes() == Counter({"item": 14})
