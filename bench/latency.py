"""Arrival-to-item latency on the local stack: p50 and p95 of the time from a mail's arrival on the server
(its IMAP INTERNALDATE) to its item written (the ledger record's time), as the ArrivalToItemSeconds metric
reports it.

    python bench/latency.py [--mails 200] [--rate 5] [--interval 10]

Two measurements, from a reset stack each:

1. *pipeline*: `--mails` mails delivered at once, then one scheduled cycle at once: the fetch (IMAP over
   TLS, S3, SQS) and the processing, with no wait for a schedule. The floor of the latency.
2. *steady*: the mails arrive at `--rate` per second, and a scheduled cycle runs every `--interval` seconds
   (standing in for the mailbox's schedule; in AWS the shortest is one minute, the default five), until
   every mail is an item. Each mail waits for the next cycle: about half an interval plus the pipeline.

INTERNALDATE has whole seconds, so each figure is good to about a second. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from common import ROOT, local_settings, plain_mail


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def latencies() -> list[float]:
    from mailintake import store

    return [r.created.timestamp() - float(r.arrived) for r in store.list_ledger()
            if r.arrived is not None and r.status in ("item", "comment")]


def fresh_mailbox(settings: object) -> tuple[str, str]:
    from aws_lambda_powertools.utilities import parameters

    from mailintake import directory, system_settings
    from mailintake.localstack import dovecot, resources
    from mailintake.localstack.accounts import local_mailbox

    resources.reset(ROOT)
    directory.forget()
    system_settings.invalidate()
    dovecot.clear_mail(ROOT)
    box = local_mailbox(ROOT, settings, "bench-latency", "imap", "ssl")  # type: ignore[arg-type]
    return box.username, str(parameters.get_secret(box.secret_name, force_fetch=True))


def deliver(user: str, password: str, numbers: range, rate: float | None) -> None:
    import imaplib

    from mailintake.localstack import dovecot

    info = dovecot.info(ROOT)
    conn = imaplib.IMAP4(info.host, info.imap_port)
    conn.login(user, password)
    started = time.monotonic()
    try:
        for n in numbers:
            if rate:
                time.sleep(max(0.0, started + (n - numbers.start) / rate - time.monotonic()))
            conn.append("INBOX", None, None, plain_mail(n))
    finally:
        conn.logout()


def report(name: str, values: list[float]) -> None:
    print(f"{name:9} {len(values):4} items  p50 {percentile(values, 0.5):6.2f} s  p95 {percentile(values, 0.95):6.2f} s"
          f"  max {max(values):6.2f} s  mean {statistics.mean(values):6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mails", type=int, default=200)
    parser.add_argument("--rate", type=float, default=5.0, help="mails per second arriving (steady)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between scheduled cycles (steady)")
    args = parser.parse_args()
    settings = local_settings()
    from mailintake.localrun import run_cycle

    user, password = fresh_mailbox(settings)
    deliver(user, password, range(args.mails), None)
    run_cycle(settings)
    report("pipeline", latencies())

    user, password = fresh_mailbox(settings)
    sender = threading.Thread(target=deliver, args=(user, password, range(args.mails), args.rate))
    sender.start()
    while True:
        cycle = time.monotonic()
        run_cycle(settings)
        if not sender.is_alive() and len(latencies()) >= args.mails:
            break
        time.sleep(max(0.0, cycle + args.interval - time.monotonic()))
    sender.join()
    report(f"steady {args.interval:g} s", latencies())


if __name__ == "__main__":
    main()
