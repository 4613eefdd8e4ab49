"""How an attachment is stored in S3: always a download, of a type a browser only shows (no stack)."""

from __future__ import annotations

import pytest

from mailintake.processing import download_headers


@pytest.mark.parametrize("declared", [
    "text/html", "TEXT/HTML; charset=utf-8", "image/svg+xml", "application/xhtml+xml", "text/xml",
    "application/xml", "text/javascript", "application/javascript", "application/x-shockwave-flash",
    "multipart/related", "message/rfc822", "", "nonsense",
])
def test_active_or_unknown_types_are_stored_as_opaque_downloads(declared: str) -> None:
    assert download_headers(declared, "x.bin")[0] == "application/octet-stream"


@pytest.mark.parametrize("declared", ["image/png", "image/jpeg; name=a.jpg", "application/pdf", "text/plain"])
def test_types_a_browser_only_shows_are_kept(declared: str) -> None:
    assert download_headers(declared, "x")[0] == declared.split(";")[0]


def test_the_disposition_is_a_download_with_an_ascii_fallback_and_the_utf8_name() -> None:
    _, disposition = download_headers("image/png", 'Grüße "quoted".png')
    assert disposition == ("attachment; filename=\"Gr__e _quoted_.png\";"
                           " filename*=UTF-8''Gr%C3%BC%C3%9Fe%20%22quoted%22.png")
    assert disposition.isascii()
