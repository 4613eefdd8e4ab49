"""Ingest a mailbox of N plain mails (default 1,000) on the local stack, end to end, and print the rate
and the AWS requests made per mail.

    python bench/ingest.py [N] [--protocol imap|pop3] [--runs 3]

The clock covers one `mailintake poll` worth of work: the fetch handler reading the mailbox (IMAP over TLS
to the local Dovecot, raw mail to S3, batches to SQS, marking seen) and the process handler draining the
queue (S3 read, parse, one DynamoDB transaction per item). Delivering the mail into Dovecot is not timed.
A rate alone says little on a machine shared with other work: the comparison with a peer is made in one
run, on the same mailbox, by ../shared/bench-peers/side_by_side.py (django-helpdesk; goal: at least twice its
rate), whose ratio replaces the fixed 78 mails/s reference this script used to print.
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import ROOT, SECONDS, count_requests, deliver_plain, local_settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("count", type=int, nargs="?", default=1000)
    parser.add_argument("--protocol", choices=("imap", "pop3"), default="imap")
    parser.add_argument("--workers", type=int, default=1, help="concurrent process-handler consumers")
    parser.add_argument("--runs", type=int, default=3, help="measured runs (the median is reported): the"
                        " figure of one run on a shared 2-core VM varies by 10 %% or more")
    args = parser.parse_args()

    settings = local_settings()
    from aws_lambda_powertools.utilities import parameters

    from mailintake import directory, store, system_settings
    from mailintake.localrun import run_cycle
    from mailintake.localstack import dovecot, resources
    from mailintake.localstack.accounts import local_mailbox

    rates: list[float] = []
    for run in range(1, args.runs + 1):
        resources.reset(ROOT)
        # The table was emptied behind this process's caches: every run starts as cold as the first.
        directory.forget()
        system_settings.invalidate()
        dovecot.clear_mail(ROOT)
        box = local_mailbox(ROOT, settings, f"bench-{args.protocol}", args.protocol, "ssl")
        deliver_plain(ROOT, box.username, str(parameters.get_secret(box.secret_name, force_fetch=True)), args.count)
        SECONDS.clear()
        with count_requests() as counts:
            started = time.perf_counter()
            report = run_cycle(settings, workers=args.workers)
            elapsed = time.perf_counter() - started
        items = len(store.list_items())
        rates.append(args.count / elapsed)
        print(f"run {run}: {args.count} plain mails over {args.protocol.upper()}+TLS, fetched "
              f"{sum(f['fetched'] for f in report.fetches)}, items made {items}, failed {report.failed}: "
              f"{elapsed:.2f} s, {rates[-1]:.1f} mails/s")

    rate = statistics.median(rates)
    print(f"ingest: median of {len(rates)} runs {rate:.1f} mails/s (min {min(rates):.1f}, max {max(rates):.1f}); "
          "against a peer in the same run: ../shared/bench-peers/side_by_side.py")
    billed = sum(counts.values())
    print(f"AWS requests (last run): {billed} in all, {billed / args.count:.2f} per mail (budget 5)")
    for operation, number in counts.most_common():
        print(f"  {operation:40} {number:6}  {number / args.count:.3f}/mail  "
              f"{SECONDS[operation] / number * 1000:6.1f} ms each")

if __name__ == "__main__":
    main()
