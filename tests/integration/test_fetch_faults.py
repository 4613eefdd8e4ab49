"""Fetch-side faults over the real Dovecot: leases left by crashed runs, renumbered folders."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from mailintake import store
from mailintake.localrun import invoke, run_cycle

from .conftest import make_mail

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
