"""Shared set-up for the benchmarks: the local stack's environment, request counting, sample mail."""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

# Lambda's Python runtime has no awscrt and the layer does not install it, so botocore signs requests in
# pure Python there. The dev tools pull awscrt into the virtualenv, which would switch signing to the CRT:
# measure the path that runs in AWS. (Read by botocore when it is first imported, hence here.)
os.environ.setdefault("BOTO_DISABLE_CRT", "true")

ROOT = Path(__file__).resolve().parents[1]
SECONDS: Counter[str] = Counter()  # time spent in each AWS operation, by count_requests()
# A Python expression for a child interpreter: its peak resident set in kB. Unlike ru_maxrss, VmHWM does not
# inherit the parent's figure across exec.
VMHWM = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])"


def local_settings() -> Any:
    """Point this process at the local stack (`make up` first), as the CLI does, and bind the store."""
    from mailintake.cli import load_environment
    from mailintake.runtime import bound_settings

    os.chdir(ROOT)
    if load_environment() != "local":
        raise SystemExit("the local stack is not up: run `make up`")
    return bound_settings()


@contextmanager
def count_requests() -> Iterator[Counter[str]]:
    """Count every AWS API call made in this process (boto3 and pynamodb both go through botocore)."""
    from botocore.client import BaseClient

    counts: Counter[str] = Counter()
    original = BaseClient._make_api_call

    def counting(self: BaseClient, operation_name: str, api_params: Any) -> Any:
        name = f"{self.meta.service_model.service_name}:{operation_name}"
        counts[name] += 1
        started = time.perf_counter()
        try:
            return original(self, operation_name, api_params)
        finally:
            SECONDS[name] += time.perf_counter() - started

    BaseClient._make_api_call = counting  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        BaseClient._make_api_call = original  # type: ignore[method-assign]


def plain_mail(n: int, size: int = 1500) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Sender {n % 37} <sender{n % 37}@example.org>"
    msg["To"] = "support@tracker.example"
    msg["Subject"] = f"Benchmark mail {n}: printer on floor {n % 9} jams"
    msg["Date"] = "Tue, 24 Nov 2026 09:12:00 +0000"
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@example.org>"
    line = "The printer jams on every duplex job; single-sided jobs work fine. "
    msg.set_content((line * (size // len(line) + 1))[:size] + "\n")
    return bytes(msg).replace(b"\n", b"\r\n")


def deliver_plain(root: Path, user: str, password: str, count: int) -> None:
    """Put ``count`` plain mails (``plain_mail(0)`` ...) into ``user``'s INBOX on the local Dovecot.

    One IMAP connection on the loopback plain-text port, one APPEND per mail: about 1,000 mails/s here.
    """
    import imaplib

    from mailintake.localstack import dovecot

    info = dovecot.info(root)
    conn = imaplib.IMAP4(info.host, info.imap_port)
    try:
        conn.login(user, password)
        for n in range(count):
            conn.append("INBOX", None, None, plain_mail(n))
    finally:
        conn.logout()
