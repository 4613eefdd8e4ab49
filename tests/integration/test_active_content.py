"""Active content a mail carries never reaches what people read: links the sanitiser drops stay out of the
description, and bidirectional overrides cannot disguise a title or an attachment name (issue 11, part 4)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mailintake import store
from mailintake.aws_clients import client
from mailintake.localrun import run_cycle

from .conftest import make_mail

pytestmark = pytest.mark.integration

HTML = """<html><body>
<p>Please <a href="javascript:alert(document.cookie)">click here</a> or
<a href="vbscript:msgbox(1)">here</a> or <a href="data:text/html;base64,PHNjcmlwdD4=">there</a>.</p>
<p>The manual is at <a href="https://docs.example.org/manual">the docs</a>.</p>
</body></html>"""


def test_description_of_html_mail_keeps_safe_links_and_never_a_dropped_one(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    # Before the fix the description was made from the raw HTML: "[click here](javascript:alert(...))".
    box = mailbox("imap", "ssl")
    raw = (b"From: Ada <ada@example.org>\r\nTo: support@tracker.example\r\nSubject: Links\r\n"
           b"Message-ID: <links@example.org>\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
           + HTML.replace("\n", "\r\n").encode())
    deliver(box, raw)
    run_cycle(settings)

    (item,) = store.list_items()
    for scheme in ("javascript:", "vbscript:", "data:"):
        assert scheme not in item.description
        assert scheme not in (item.html or "")
    # The words of every link stay, and a link that is safe keeps its target.
    for words in ("click here", "here", "there", "the docs"):
        assert words in item.description
    assert "https://docs.example.org/manual" in item.description


BIDI = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: "invoice\u202efdp.exe" shows as "invoiceexe.pdf"


def test_bidirectional_overrides_cannot_disguise_a_title_or_an_attachment_name(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    box = mailbox("imap", "ssl")
    controls = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
    raw = make_mail(f"Invoice {BIDI}fdp.exe{controls} overdue", attachments=[
        (f"invoice{BIDI}fdp.exe", "application/octet-stream", b"MZ"),
        (f"{controls}scan.pdf", "application/pdf", b"%PDF"),
    ]).replace(b"\n", b"\r\n")
    deliver(box, raw)
    run_cycle(settings)

    (item,) = store.list_items()
    (record,) = store.list_ledger()
    assert item.title == record.subject == "Invoice fdp.exe overdue"
    names = [a.filename for a in item.attachments]
    assert names == ["invoicefdp.exe", "scan.pdf"]
    for text in (item.title, record.subject, *names):
        assert not any(ch in text for ch in controls)
    # What is stored as sent is not touched: the raw mail keeps every character.
    stored = client("s3", settings.region).get_object(Bucket=settings.bucket, Key=record.key)["Body"].read()
    assert stored == raw
