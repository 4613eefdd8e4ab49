"""Active content a mail carries never reaches what people read: links the sanitiser drops stay out of the
description (issue 11, part 4)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mailintake import store
from mailintake.localrun import run_cycle

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
