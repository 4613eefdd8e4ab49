"""What an operator reads: every log line of both functions about a mail carries its raw mail's key as
the correlation id, and the arrival time on the server reaches the ledger (the latency metric's start)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest

from mailintake import store
from mailintake.localrun import invoke, load_function
from mailintake.store import utcnow

from .conftest import make_mail
from .fault_support import drain

pytestmark = pytest.mark.integration


def test_every_log_line_of_both_functions_carries_the_raw_mails_key(
        settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]) -> None:
    box = mailbox("imap")
    for n in range(3):
        deliver(box, make_mail(f"Traced {n}"))
    fetch, process = load_function("fetch"), load_function("process")
    out = io.StringIO()
    # The handlers' log handlers write to the stdout of when they were imported: read them here instead.
    handlers = {id(h): h for h in (fetch.logger.registered_handler, process.logger.registered_handler)}
    saved = [(h, h.setStream(out)) for h in handlers.values()]
    levels = (fetch.logger.log_level, process.logger.log_level)
    fetch.logger.setLevel("INFO")
    process.logger.setLevel("INFO")
    try:
        invoke("fetch", {"mailbox": box.name})
        drain(settings)
    finally:
        fetch.logger.setLevel(levels[0])
        process.logger.setLevel(levels[1])
        for handler, stream in saved:
            handler.setStream(stream)
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    keys = {r.key for r in store.list_ledger()}
    assert len(keys) == 3
    processed = [line for line in lines if line["message"] == "message processed"]
    assert sorted(line["correlation_id"] for line in processed) == sorted(keys)
    # Every line has one: a mail's key, or, for the fetch run's own lines, the prefix all its keys share.
    prefix = f"raw/{box.name}/"
    assert len(lines) >= 4  # the fetch run's end, one line per mail processed
    assert [line for line in lines if line.get("correlation_id") not in {*keys, prefix}] == []
    assert any(line["correlation_id"] == prefix for line in lines)  # "fetch finished"


def test_arrival_on_the_server_and_the_expiry_reach_the_ledger(
        settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]) -> None:
    box, pop = mailbox("imap"), mailbox("pop3")
    deliver(box, make_mail("Arrived"))
    deliver(pop, make_mail("Arrived by POP3"))
    started = utcnow().timestamp()
    invoke("fetch", {"mailbox": box.name})
    invoke("fetch", {"mailbox": pop.name})
    drain(settings)
    by_mailbox = {r.mailbox: r for r in store.list_ledger()}
    imap = by_mailbox[box.name]
    assert imap.arrived is not None and started - 120 < float(imap.arrived) <= imap.created.timestamp()
    # Ledger records expire by the table's TTL, LedgerRetentionDays (365) after they were written.
    assert imap.expires_at is not None
    assert abs(int(imap.expires_at) - (imap.created.timestamp() + 365 * 86400)) < 5
    # POP3 says nothing of when a mail arrived: no latency rather than a made-up one.
    assert by_mailbox[pop.name].arrived is None
