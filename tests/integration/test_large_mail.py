"""Large and long-lined mail over the real Dovecot and moto's server: the size limit, streaming, long lines."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

import pytest

from mailintake import store
from mailintake.aws_clients import client
from mailintake.localrun import run_cycle
from mailintake.processing import attachment_prefix

pytestmark = pytest.mark.integration


def mail_of_size(subject: str, size: int) -> bytes:
    """A mail of exactly ``size`` bytes (CRLF line ends, as IMAP and POP3 deliver it) with one attachment."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "Ada Lovelace <ada@example.org>"
    msg["To"] = "support@tracker.example"
    msg["Subject"] = subject
    msg["Date"] = "Tue, 24 Nov 2026 09:12:00 +0000"
    msg["Message-ID"] = f"<{hashlib.sha256(subject.encode()).hexdigest()[:20]}@example.org>"
    msg.set_content("The trace is attached.\n")
    # Base64 takes 78 bytes (76 characters and CRLF) for every 57.
    msg.add_attachment(bytes(range(256)) * (size * 57 // 78 // 256 - 64), maintype="application",
                       subtype="octet-stream", filename="trace.bin")
    raw = bytes(msg)
    # Header lines of padding make up the difference, none shorter than its "X-Padding: " and CRLF.
    missing = size - len(raw)
    lengths = [900] * (missing // 900) + ([missing % 900] if missing % 900 else [])
    if lengths and lengths[-1] < 13:
        lengths[-2:] = [lengths[-2] - 13, lengths[-1] + 13]
    padding = b"".join(b"X-Padding: " + b"x" * (n - 13) + b"\r\n" for n in lengths)
    raw = padding + raw
    assert len(raw) == size
    return raw


def raw_object(settings: Any, key: str) -> bytes:
    return bytes(client("s3", settings.region).get_object(Bucket=settings.bucket, Key=key)["Body"].read())


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_mail_at_the_size_limit_becomes_an_item_and_one_byte_over_is_rejected_and_kept(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None], protocol: str
) -> None:
    limit = settings.max_message_bytes  # 25 MiB by default
    box = mailbox(protocol, "ssl", after="delete")
    at_limit, over = mail_of_size("At the limit", limit), mail_of_size("Over the limit", limit + 1)
    deliver(box, at_limit)
    deliver(box, over)

    report = run_cycle(settings)

    assert [f["fetched"] for f in report.fetches] == [2]
    ledger = {r.subject: r for r in store.list_ledger()}
    assert Counter(r.status for r in ledger.values()) == Counter({"item": 1, "rejected": 1})
    rejected = ledger["Over the limit"]
    assert (rejected.step, rejected.sender) == ("size", "ada@example.org")
    assert f"{limit + 1} bytes > {limit}" in rejected.outcome
    # Both kept byte for byte, whatever became of them.
    assert raw_object(settings, ledger["At the limit"].key) == at_limit
    assert raw_object(settings, rejected.key) == over
    [item] = store.list_items()
    assert item.title == "At the limit"
    s3 = client("s3", settings.region)
    stored = s3.list_objects_v2(Bucket=settings.bucket, Prefix=attachment_prefix(item.source_key) + "/")["Contents"]
    assert [o["Key"].rsplit("/", 1)[-1] for o in stored] == ["trace.bin"]


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_mail_with_long_lines_and_leading_dots_is_fetched_byte_for_byte(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None], protocol: str
) -> None:
    # RFC 5322 allows 998 octets a line, but unwrapped HTML from real senders runs far longer.
    # Lines that begin with dots travel dot-stuffed in POP3 and must come back as they were.
    html = "<p>" + "A long unwrapped line of HTML. " * 2000 + "</p>\n.<p>dot</p>\n..<p>dots</p>\n.\n"
    msg = EmailMessage(policy=SMTP.clone(max_line_length=None))
    msg["From"] = "Ada Lovelace <ada@example.org>"
    msg["To"] = "support@tracker.example"
    msg["Subject"] = "Long lines"
    msg["Message-ID"] = "<long-lines@example.org>"
    msg.set_content(html, subtype="html", cte="8bit")
    raw = bytes(msg)
    assert max(len(line) for line in raw.split(b"\r\n")) > 60_000
    box = mailbox(protocol, "ssl", after="delete")
    deliver(box, raw)

    report = run_cycle(settings)

    assert [(f["status"], f["fetched"]) for f in report.fetches] == [("done", 1)]
    [record] = store.list_ledger()
    assert record.status == "item"
    assert raw_object(settings, record.key) == raw
    assert "A long unwrapped line of HTML." in store.list_items()[0].description
