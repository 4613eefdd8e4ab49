"""Run the fetch handler for one mailbox and SIGKILL the process at a chosen step (the n-th time it is reached).

    python tests/integration/fetch_killer.py MAILBOX STEP N

A real kill, not an exception: no ``finally`` runs, no QUIT or LOGOUT is sent, the lease is not released.
The steps, in the order one batch passes them:

- ``downloaded``: a mail was read from the server, before its S3 write;
- ``stored``: a batch is in S3, before it is sent to the queue;
- ``enqueued``: a batch is queued, before it is marked, moved or deleted on the server;
- ``marked``: a batch is settled on the server, before it is remembered (IMAP cursor, POP3 UIDLs, Graph
  delta link);
- ``finished``: the run is over (QUIT sent, cursor saved), before the lease is released.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from mailintake import fetching
from mailintake.localrun import invoke
from mailintake.sources import GraphSource, ImapSource, Pop3Source

# Each step is a call through one of the fetch loop's interfaces (RawMailStore, IntakeQueue, MailSource),
# caught on the class that implements it on the real stack.
STEPS: dict[str, list[tuple[Any, str]]] = {
    "downloaded": [(fetching.S3RawMailStore, "put")],
    "stored": [(fetching.SqsIntakeQueue, "send")],
    "enqueued": [(ImapSource, "settle"), (Pop3Source, "settle"), (GraphSource, "settle")],
    "marked": [(ImapSource, "remember"), (Pop3Source, "remember"), (GraphSource, "remember")],
    "finished": [(fetching, "release_lease")],
}


def kill_on(owner: Any, attribute: str, nth: int) -> None:
    original: Callable[..., Any] = getattr(owner, attribute)
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    setattr(owner, attribute, wrapper)


def main() -> None:
    mailbox, step, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for owner, attribute in STEPS[step]:
        kill_on(owner, attribute, nth)  # one protocol's source runs: its count is the one that matters
    invoke("fetch", {"mailbox": mailbox})
    raise SystemExit(f"the run ended without reaching {step} #{nth}")


if __name__ == "__main__":
    main()
