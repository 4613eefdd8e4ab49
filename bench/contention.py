"""How many items a second the one item-number counter lets through, by process-function concurrency: a
discrete-event model of mailintake.store.write_item's retry rules, with DynamoDB's conflict rule.

    python bench/contention.py [--hold-ms 15] [--work-ms 30] [--seconds 60]

Every item's transaction updates the counter (numbers are system-wide and have no gaps), so DynamoDB
cancels a transaction (TransactionConflict) that reaches the counter while another transaction holds it.
Each of K consumers (Lambda containers, MaximumConcurrency) loops: ``--work-ms`` of work per mail that
does not touch the counter (the queue, parsing, the facts, S3), then the transaction, which holds the
counter for ``--hold-ms``. Rules as in write_item: each container tries the number after the last it
took; a stale number fails its condition (holding the counter for half a transaction, a round trip lost)
and the failed condition's value is taken; a conflict (the counter held) costs a third of a round trip,
then store.Backoff's full-jitter delay, and the next try guesses the number after the one in flight. The model is not a
measurement of DynamoDB: it shows the shape (a ceiling near 1/hold, conflicts growing with K) for the
latencies given. The local stack cannot show it: moto applies one transaction at a time and never conflicts.
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "layers" / "mailintake"))

from mailintake.store import Backoff


def simulate(consumers: int, hold: float, work: float, seconds: float, seed: int = 1) -> tuple[float, float, float]:
    """Items per second, cancelled or failed tries per item, and the mean time (s) an item spent between
    its first try and its commit beyond one transaction."""
    rng = random.Random(seed)
    backoff = Backoff()
    counter = 0  # the committed value
    busy_until = 0.0  # a transaction holds the counter until then
    last = [0] * consumers  # each container's Numbering.last
    # (time, consumer, attempt, number tried or 0 for "take the next")
    events: list[tuple[float, int, int, int]] = []
    first_try: dict[int, float] = {}
    commits: list[tuple[float, int]] = []  # (when, value) of transactions in flight
    for c in range(consumers):
        heapq.heappush(events, (rng.uniform(0, work), c, 0, 0))
    items = retries = 0
    waited = 0.0
    while events:
        now, c, attempt, number = heapq.heappop(events)
        if now > seconds:
            break
        while commits and commits[0][0] <= now:
            counter = max(counter, heapq.heappop(commits)[1])
        if attempt == 0:
            first_try[c] = now
        number = number or last[c] + 1
        if now < busy_until:  # TransactionConflict: nothing written; wait, then guess the next number
            retries += 1
            heapq.heappush(events, (now + hold / 3 + backoff.delay(attempt), c, attempt + 1, number + 1))
            continue
        if number != counter + 1:  # the condition fails in the prepare; its value comes back
            retries += 1
            busy_until = now + hold / 2
            last[c] = counter
            heapq.heappush(events, (now + hold, c, attempt + 1, counter + 1))
            continue
        busy_until = now + hold
        heapq.heappush(commits, (now + hold, number))
        last[c] = number
        items += 1
        waited += now - first_try[c]
        heapq.heappush(events, (now + hold + work * rng.uniform(0.5, 1.5), c, 0, 0))
    return items / seconds, retries / max(items, 1), waited / max(items, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hold-ms", type=float, default=15.0, help="time a transaction holds the counter")
    parser.add_argument("--work-ms", type=float, default=30.0, help="a consumer's work per mail besides it")
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    hold, work = args.hold_ms / 1000, args.work_ms / 1000
    print(f"counter held {args.hold_ms:g} ms per transaction, {args.work_ms:g} ms of other work per mail; "
          f"serial ceiling {1 / hold:.0f} items/s")
    print("consumers  items/s  retries/item  ms lost to retries per item")
    for k in (1, 2, 3, 4, 5, 6, 8, 10, 20):
        rate, per_item, wait = simulate(k, hold, work, args.seconds)
        print(f"{k:9d}  {rate:7.1f}  {per_item:12.2f}  {wait * 1000:8.1f}")


if __name__ == "__main__":
    main()
