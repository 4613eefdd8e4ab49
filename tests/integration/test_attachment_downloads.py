"""Stored attachments are downloads, never pages: over the real Dovecot and moto's S3.

A presigned link to an attachment stored with the sender's ``text/html`` (or SVG, or XHTML) would render
the attacker's page, with its scripts, on the bucket's origin. Every attachment is stored with
``Content-Disposition: attachment`` and, unless its type is one a browser only shows, as
``application/octet-stream``; the item keeps the type the sender declared, for display.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mailintake import store
from mailintake.aws_clients import client
from mailintake.localrun import run_cycle

from .conftest import make_mail

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def test_active_attachment_types_are_stored_as_downloads_of_a_safe_type(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    payloads = [("invoice.html", "text/html", b"<script>alert(document.cookie)</script>"),
                ("logo.svg", "image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>"),
                ("page.xhtml", "application/xhtml+xml", b"<html xmlns='http://www.w3.org/1999/xhtml'/>"),
                ("run.js", "text/javascript", b"alert(1)"),
                ("photo.png", "image/png", PNG),
                ("Grüße.pdf", "application/pdf", b"%PDF-1.4\n")]
    box = mailbox("imap", "ssl")
    deliver(box, make_mail("Files", attachments=payloads))
    run_cycle(settings)

    (item,) = store.list_items()
    s3 = client("s3", settings.region)
    heads = {a.filename: s3.head_object(Bucket=settings.bucket, Key=a.key) for a in item.attachments}
    assert {name: head["ContentType"] for name, head in heads.items()} == {
        "invoice.html": "application/octet-stream", "logo.svg": "application/octet-stream",
        "page.xhtml": "application/octet-stream", "run.js": "application/octet-stream",
        "photo.png": "image/png", "Grüße.pdf": "application/pdf"}
    for name, head in heads.items():
        assert head.get("ContentDisposition", "").startswith("attachment;"), name
    assert heads["Grüße.pdf"]["ContentDisposition"].endswith("filename*=UTF-8''Gr%C3%BC%C3%9Fe.pdf")
    # What the sender declared stays on the item, for display.
    assert [a.content_type for a in item.attachments] == [ctype for _, ctype, _ in payloads]
