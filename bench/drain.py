"""Drain a mailbox of N plain mails (default 5,000) in successive scheduled polls, each within a Lambda timeout,
on the local stack, and print the rates and the peak memory of the fetch and the process handler.

    python bench/drain.py [N] [--timeout 30] [--protocol imap|pop3] [--after ACTION]

The polls run back to back, as the mailbox's schedule would fire them if each run took its whole interval:
every poll is one invocation of the fetch handler in a fresh interpreter (a cold Lambda container) with a
context whose deadline is ``--timeout`` seconds away. A run stops taking new mail ``deadline_margin_seconds``
(20 s) before that deadline and reports "more"; the next poll goes on from the cursor; the last reports
"done". The template gives the fetch function 300 s; the default here is 30 s so that this machine needs
several polls for 5,000 mails (the margin is not scaled down with it).

Meanwhile one process-handler consumer, in its own interpreter for the whole drain (a warm container, as
the event source mapping keeps one), takes batches of ten from the FIFO queue as `mailintake.localrun`
does, until the last poll has ended and the queue is empty.

The clock starts when the first poll is launched and stops when the consumer has emptied the queue:
delivering the mail into Dovecot is not timed, while starting each poll's interpreter (about what a cold
start costs) is. "fetch only" divides N by the sum of the handler's own run times. Peak memory is
/proc/self/status VmHWM of each interpreter; "imports" is its figure just before the first invocation.

The bench aborts, with the reason, if a poll ran past its deadline, ended "more" with nothing fetched, or
if at the end anything is missing: N distinct raw keys fetched, N items, N ledger records all final, the
mailbox on the server settled as its after-storing action says, nothing left in the queue or the DLQ.
"""

from __future__ import annotations

import argparse
import imaplib
import json
import poplib
import subprocess
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from common import ROOT, VMHWM, deliver_plain, local_settings

FETCH_CHILD = """
import json, sys, time
sys.argv = ["bench"]
from mailintake.cli import load_environment
load_environment()
from mailintake.runtime import bound_settings
bound_settings()
from mailintake.localrun import invoke, load_function
load_function("fetch")
imports = {vmhwm}
started = time.monotonic()
result = invoke("fetch", {{"mailbox": {mailbox!r}}}, timeout_seconds={timeout})
wall = time.monotonic() - started
print(json.dumps({{"wall": wall, "peak_kb": {vmhwm}, "imports_kb": imports, "status": result["status"],
                  "fetched": result["fetched"], "keys": result["keys"]}}))
"""

CONSUMER_CHILD = """
import json, sys, threading
sys.argv = ["bench"]
from mailintake.cli import load_environment
load_environment()
from mailintake.runtime import bound_settings
settings = bound_settings()
from mailintake.localrun import CycleReport, drain_queue, load_function
load_function("process")
imports = {vmhwm}
report = CycleReport()
fetching_done = threading.Event()

def wait_for_eof():
    sys.stdin.read()  # the bench closes stdin after the last poll
    fetching_done.set()

threading.Thread(target=wait_for_eof, daemon=True).start()
print("ready", flush=True)
drain_queue(settings, report, fetching_done)
print(json.dumps({{"processed": report.processed, "failed": report.failed, "peak_kb": {vmhwm},
                  "imports_kb": imports}}), flush=True)
"""


def fail(message: str) -> None:
    raise SystemExit(f"drain bench: {message}")


def fetch_poll(mailbox: str, timeout: int) -> dict[str, Any]:
    code = FETCH_CHILD.format(mailbox=mailbox, timeout=timeout, vmhwm=VMHWM)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        fail(f"the fetch run failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def start_consumer(log: IO[str]) -> subprocess.Popen[str]:
    code = CONSUMER_CHILD.format(vmhwm=VMHWM)
    consumer = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=log, text=True)
    assert consumer.stdout is not None
    if consumer.stdout.readline().strip() != "ready":
        consumer.kill()
        fail(f"the process consumer did not start; its log: {log.name}")
    return consumer


def queue_depth(sqs: Any, url: str) -> tuple[int, int]:
    """(visible, in flight) messages, as SQS approximates them."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def server_state(protocol: str, user: str, password: str, move_to: str | None) -> dict[str, int]:
    """What is left on the server: messages in INBOX, unseen among them, and in the move folder (IMAP)."""
    from mailintake.localstack import dovecot

    info = dovecot.info(ROOT)
    if protocol == "pop3":
        pop = poplib.POP3(info.host, info.pop3_port)
        try:
            pop.user(user)
            pop.pass_(password)
            return {"inbox": pop.stat()[0]}
        finally:
            pop.quit()
    conn = imaplib.IMAP4(info.host, info.imap_port)
    try:
        conn.login(user, password)
        state = {"inbox": int(conn.select("INBOX", readonly=True)[1][0] or 0)}
        state["unseen"] = len(conn.search(None, "UNSEEN")[1][0].split())
        if move_to:
            state["moved"] = int(conn.select(f'"{move_to}"', readonly=True)[1][0] or 0)
        return state
    finally:
        conn.logout()


def check_settled(after: str, count: int, state: dict[str, int], uidls: dict[str, set[str]]) -> str | None:
    """Why the mailbox on the server is not as its after-storing action leaves it, or None."""
    expected = {
        "seen": {"inbox": count, "unseen": 0},
        "move": {"inbox": 0, "moved": count},
        "delete": {"inbox": 0},
        "keep": {"inbox": count},
    }[after]
    wrong = {k: (state.get(k), v) for k, v in expected.items() if state.get(k) != v}
    if wrong:
        return ", ".join(f"{k} is {got}, should be {want}" for k, (got, want) in wrong.items())
    known = set().union(*uidls.values())
    if after == "keep" and len(known) != count:
        return f"the cursor knows {len(known)} UIDLs in {len(uidls)} records, should know {count}"
    return None


def poll_until_done(mailbox: str, timeout: int, max_polls: int, depth: Callable[[], tuple[int, int]],
                    polls: list[dict[str, Any]], keys: list[str]) -> None:
    """Fetch polls back to back, as the schedule would run them, until one says it is done."""
    while True:
        if len(polls) == max_polls:
            fail(f"still not done after {max_polls} polls")
        poll = fetch_poll(mailbox, timeout)
        polls.append(poll)
        keys.extend(poll["keys"])
        visible, in_flight = depth()
        print(f"  poll {len(polls):3}: fetched {poll['fetched']:5}  {poll['wall']:6.1f} s of {timeout} s"
              f"  status {poll['status']:5}  peak RSS {poll['peak_kb'] / 1024:5.1f} MB"
              f"  queue after: {visible + in_flight}", flush=True)
        if poll["wall"] >= timeout:
            fail(f"poll {len(polls)} ran {poll['wall']:.1f} s, past its {timeout} s deadline")
        if poll["status"] == "done":
            return
        if poll["status"] != "more" or poll["fetched"] == 0:
            fail(f"poll {len(polls)} ended {poll['status']!r} having fetched {poll['fetched']}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("count", type=int, nargs="?", default=5000)
    parser.add_argument("--timeout", type=int, default=30,
                        help="the fetch function's timeout for every poll, seconds (template.yaml: 300)")
    parser.add_argument("--protocol", choices=("imap", "pop3"), default="imap")
    parser.add_argument("--after", choices=("seen", "move", "delete", "keep"),
                        help="after-storing action (default: the protocol's: seen for IMAP, delete for POP3)")
    parser.add_argument("--max-polls", type=int, default=200)
    args = parser.parse_args()

    settings = local_settings()
    from aws_lambda_powertools.utilities import parameters

    from mailintake import store
    from mailintake.aws_clients import client
    from mailintake.localrun import function_limits
    from mailintake.localstack import dovecot, resources
    from mailintake.localstack.accounts import local_mailbox
    from mailintake.outcomes import FINAL

    margin = settings.deadline_margin_seconds
    fetch_limits, process_limits = function_limits("fetch"), function_limits("process")
    if args.timeout <= margin:
        fail(f"--timeout must exceed the deadline margin ({margin} s)")
    resources.reset(ROOT)
    dovecot.clear_mail(ROOT)
    move_to = "Processed" if args.after == "move" else None
    box = local_mailbox(ROOT, settings, f"bench-drain-{args.protocol}", args.protocol, "ssl",
                        after=args.after, move_to=move_to)
    after = str(box.after)
    password = str(parameters.get_secret(box.secret_name))
    delivering = time.perf_counter()
    deliver_plain(ROOT, box.username, password, args.count)
    if move_to:
        info = dovecot.info(ROOT)
        conn = imaplib.IMAP4(info.host, info.imap_port)
        conn.login(box.username, password)
        conn.create(f'"{move_to}"')
        conn.logout()
    print(f"mailbox: {args.count} plain mails over {args.protocol.upper()}+TLS, after storing: {after}; "
          f"delivered in {time.perf_counter() - delivering:.1f} s (not timed)")
    print(f"polls: fetch timeout {args.timeout} s each (template.yaml: {fetch_limits[0]} s), "
          f"deadline margin {margin} s; "
          f"one process consumer throughout")
    sqs = client("sqs", settings.region)

    keys: list[str] = []
    polls: list[dict[str, Any]] = []
    with (ROOT / ".local" / "bench-drain-consumer.log").open("w") as log:
        consumer = start_consumer(log)
        started = time.perf_counter()
        try:
            poll_until_done(box.name, args.timeout, args.max_polls, lambda: queue_depth(sqs, settings.queue_url),
                            polls, keys)
        finally:
            assert consumer.stdin is not None and consumer.stdout is not None
            consumer.stdin.close()
            consumed = consumer.stdout.read()
            consumer.wait()
        elapsed = time.perf_counter() - started
        if consumer.returncode != 0:
            fail(f"the process consumer failed (exit {consumer.returncode}); its log: {log.name}")
    processing = json.loads(consumed.strip().splitlines()[-1])

    # Nothing lost, nothing doubled, everything settled.
    problems: list[str] = []
    if len(keys) != args.count or len(set(keys)) != args.count:
        problems.append(f"fetched {len(keys)} raw keys, {len(set(keys))} distinct; should be {args.count}")
    items = len(store.list_items())
    if items != args.count:
        problems.append(f"{items} items, should be {args.count}")
    ledger = store.list_ledger()
    not_final = [r for r in ledger if r.status not in FINAL]
    if len(ledger) != args.count or not_final:
        problems.append(f"{len(ledger)} ledger records, {len(not_final)} not final; should be {args.count}, 0")
    if processing["failed"]:
        problems.append(f"the process handler reported {processing['failed']} batch item failures")
    for name, url in (("queue", settings.queue_url), ("dead-letter queue", settings.dlq_url)):
        if url and sum(queue_depth(sqs, url)):
            problems.append(f"the {name} still holds {sum(queue_depth(sqs, url))} messages")
    state = server_state(args.protocol, box.username, password, move_to)
    unsettled = check_settled(after, args.count, state, store.load_uidls(box.name))
    if unsettled:
        problems.append(f"the mailbox on the server is not settled ({after}): {unsettled}")
    if problems:
        fail("; ".join(problems))

    fetch_seconds = sum(p["wall"] for p in polls)
    print(f"result: {len(polls)} polls ({len(polls) - 1} x more, then done), {items} items, {len(ledger)} ledger "
          f"records all final, server settled ({state}), queue and DLQ empty")
    print(f"end to end: {elapsed:.1f} s, {args.count / elapsed:.1f} mails/s (polls back to back, cold starts "
          f"included, until the queue was empty)")
    print(f"fetch only: {fetch_seconds:.1f} s in the handler, {args.count / fetch_seconds:.1f} mails/s; "
          f"longest poll {max(p['wall'] for p in polls):.1f} s of {args.timeout} s")
    peak = max(polls, key=lambda p: p["peak_kb"])
    print(f"peak RSS: fetch {peak['peak_kb'] / 1024:.1f} MB (highest of {len(polls)} runs; imports "
          f"{peak['imports_kb'] / 1024:.1f} MB), process {processing['peak_kb'] / 1024:.1f} MB (one consumer "
          f"for all {processing['processed']} messages; imports {processing['imports_kb'] / 1024:.1f} MB); "
          f"template.yaml: {fetch_limits[1]} and {process_limits[1]} MB")


if __name__ == "__main__":
    main()
