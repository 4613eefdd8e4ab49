"""Hostile input, property-based: whatever a sender puts in the raw bytes, headers or HTML, parsing never
raises, no script survives sanitising, attachment names stay inside their S3 prefix and header injection
cannot add recipients to a reply.

Budgets are bounded (``max_examples``, no deadline) so this runs in `make test` in seconds.
"""

from __future__ import annotations

import base64
import dataclasses
import email
import io
import re
import smtplib
import unicodedata
from email import policy
from email.header import Header
from email.utils import getaddresses
from html.parser import HTMLParser
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mailintake import bounds, outgoing
from mailintake.parsing import Address, ParsedMessage, parse_message, safe_name, sanitize_html
from mailintake.processing import attachment_key, attachment_prefix
from mailintake.settings import Settings
from mailintake.system_settings import Config

BUDGET = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SMALL_BUDGET = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------------------------------------
# Strategies

# Text a header value may carry: anything, but weighted towards what breaks parsers and mail headers.
NASTY_FRAGMENTS = [
    "\r\n", "\n", "\r", "\r\nBcc: evil@attacker.example", "\nCc: evil@attacker.example", "\x00", "\x7f",
    "=?utf-8?B?", "?=", "=?utf-8?Q?=0D=0ABcc:_evil@attacker.example?=", "=?bogus?X?zz?=", '"', "<", ">",
    ",", ";", ":", "@", "\\", "(", ")", "\u202e", "\ufeff", "\ud800", "../", "..", "/", "%2e%2e%2f", "\t",
    " ", "é", "日本", "evil@attacker.example", "<evil@attacker.example>",
]
header_text = st.lists(st.one_of(st.sampled_from(NASTY_FRAGMENTS), st.text(max_size=12)), max_size=12).map("".join)
# Header values as bytes, including 8-bit and invalid UTF-8.
header_bytes = st.one_of(
    header_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=60),
)

CONTENT_TYPES = [
    "text/plain", "text/html", "multipart/mixed", "multipart/alternative", "multipart/related",
    "multipart/report", "message/rfc822", "message/delivery-status", "application/octet-stream",
    "application/ms-tnef", "image/png", "text/rfc822-headers", "multipart/signed", "bogus", "",
]
ENCODINGS = ["7bit", "8bit", "base64", "quoted-printable", "x-uuencode", "binary", "bogus", ""]
CHARSETS = ["utf-8", "iso-8859-1", "iso-2022-jp", "shift_jis", "utf-7", "x-unknown", "bogus", ""]


@st.composite
def mime_part(draw: st.DrawFn, depth: int = 0) -> bytes:
    """One MIME entity, possibly multipart, with hostile parameters, names and bodies."""
    ctype = draw(st.sampled_from(CONTENT_TYPES))
    boundary = draw(st.sampled_from(["b1", "b2", "", "=_", "--", "b1 b2"]))
    lines = [
        b"Content-Type: " + ctype.encode() + b"; charset=" + draw(st.sampled_from(CHARSETS)).encode()
        + b"; boundary=\"" + boundary.encode() + b"\"; name=\"" + draw(header_bytes) + b"\"",
        b"Content-Transfer-Encoding: " + draw(st.sampled_from(ENCODINGS)).encode(),
    ]
    if draw(st.booleans()):
        lines.append(b"Content-Disposition: " + draw(st.sampled_from([b"attachment", b"inline", b"x"]))
                     + b"; filename*=" + draw(st.sampled_from([b"utf-8''", b"bogus'en'", b""]))
                     + draw(header_bytes))
    if draw(st.booleans()):
        lines.append(b"Content-ID: <" + draw(header_bytes) + b">")
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    if ctype.startswith("multipart/") and depth < 3:
        children = draw(st.lists(mime_part(depth + 1), max_size=3))
        sep = b"--" + boundary.encode()
        body = b"".join(sep + b"\r\n" + child + b"\r\n" for child in children)
        if draw(st.booleans()):
            body += sep + b"--\r\n"  # sometimes the closing boundary is missing
        return head + body
    body = draw(st.one_of(
        st.binary(max_size=200),
        header_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.just(b"<html><body onload=alert(1)><script>alert(1)</script><p>hi</p></body></html>"),
        st.just(b"begin 644 x\r\nbad uuencode\r\nend\r\n"),
        st.just(b"=ZZ=\r\n=\r\n====41"),
    ))
    return head + body


@st.composite
def raw_mail(draw: st.DrawFn) -> bytes:
    headers = []
    for name in draw(st.lists(st.sampled_from([
        "From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
        "Auto-Submitted", "MIME-Version", "X-Junk", "Content-Type", "Received",
    ]), max_size=10)):
        headers.append(name.encode() + b": " + draw(header_bytes))
    raw = b"\r\n".join(headers) + b"\r\n" + draw(mime_part())
    if draw(st.booleans()):
        # Mangle: truncate, or flip a byte, somewhere.
        cut = draw(st.integers(0, len(raw)))
        raw = raw[:cut] if draw(st.booleans()) else raw[:cut] + bytes([draw(st.integers(0, 255))]) + raw[cut + 1:]
    return raw


def parse(raw: bytes) -> ParsedMessage:
    return parse_message(io.BytesIO(raw))


# --------------------------------------------------------------------------------------------------------
# parse_message never raises


def _assert_sane(parsed: ParsedMessage) -> None:
    # Single-line header values: CR/LF would let them break out of any header they are copied into.
    for value in (parsed.subject, parsed.sender.email, parsed.sender.name,
                  *(a.email for a in parsed.reply_to), *(a.name for a in parsed.reply_to)):
        assert "\r" not in value and "\n" not in value
    for att in parsed.attachments:
        _assert_safe_segment(att.safe_name, slack=8)  # _unique may append "-N" to a full-length name


@BUDGET
@given(raw_mail())
@example(b"")
@example(b"\r\n\r\n")
@example(b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n" * 60)
def test_parse_message_never_raises_on_hostile_mime(raw: bytes) -> None:
    _assert_sane(parse(raw))


@BUDGET
@given(st.binary(max_size=2000))
def test_parse_message_never_raises_on_random_bytes(raw: bytes) -> None:
    _assert_sane(parse(raw))


def test_parse_message_never_raises_on_deeply_nested_multipart() -> None:
    depth = 200
    raw = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(depth))
    parsed = parse(b"From: a@example.org\r\nSubject: nest\r\n" + raw + b"Content-Type: text/plain\r\n\r\nhi\r\n")
    assert (parsed.subject, parsed.sender.email) == ("nest", "a@example.org")
    assert any("MIME nesting deeper than" in s for s in parsed.simplified)
    # Below the bound the nesting is kept whole, the text at its bottom included, as an attachment.
    [kept] = parsed.attachments
    assert kept.content_type == "message/rfc822" and kept.data.endswith(b"text/plain\r\n\r\nhi")


# --------------------------------------------------------------------------------------------------------
# Pathological shapes: past each bound of mailintake.bounds the mail keeps its identity (so it becomes an
# item, not "rejected: empty subject"), keeps what passed the bound, and records what was simplified.
# Outcomes only: how long each shape takes is measured in bench/worst_case.py, never asserted here.

SHAPE_HEAD = b"From: Mallory <mallory@example.org>\r\nTo: support@example.org\r\nSubject: Worst case\r\n"


def _shape(draw: st.DrawFn, name: str, extra: int) -> tuple[bytes, str, bytes]:
    """(raw mail, words its simplification must contain, bytes that must be kept: in the text or a file)."""
    junk = draw(header_text).encode("utf-8", "surrogatepass").replace(b"\r", b"").replace(b"\n", b"")
    if name == "html-deep":
        markup = b"<div>" * (bounds.MAX_HTML_DEPTH + extra) + b"deep text"
        return SHAPE_HEAD + b"Content-Type: text/html\r\n\r\n" + markup, "were flattened", b"deep text"
    if name == "multipart-deep":
        kind = draw(st.sampled_from([b"mixed", b"alternative", b"related"]))
        nest = b"".join(b"Content-Type: multipart/" + kind + b"; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
                        for i in range(bounds.MAX_MIME_DEPTH + extra))
        return (SHAPE_HEAD + nest + b"Content-Type: text/plain\r\n\r\nbottom text\r\n", "MIME nesting deeper",
                b"bottom text")
    if name == "rfc822-deep":
        nest = b"".join(b"Content-Type: message/rfc822\r\n\r\nSubject: %d " % i + junk + b"\r\n"
                        for i in range(bounds.MAX_MIME_DEPTH + extra))
        return SHAPE_HEAD + nest + b"\r\nbottom text\r\n", "MIME nesting deeper", b"bottom text"
    if name == "many-parts":
        parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\np%d\r\n" % i
                         for i in range(bounds.MAX_MIME_PARTS + extra))
        return (SHAPE_HEAD + b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + parts + b"--b--\r\n",
                "MIME parts", b"p0")
    if name == "many-headers":
        fields = b"".join(b"X-H%d: " % i + junk + b"\r\n" for i in range(bounds.MAX_HEADER_FIELDS + extra))
        return fields + SHAPE_HEAD + b"\r\nbody text\r\n", "header fields", b"body text"
    if name == "encoded-words":
        words = b" ".join([b"=?utf-8?q?caf=C3?= =?utf-8?q?=A9?="] * (bounds.MAX_HEADER_CHARS // 30 + extra))
        raw = SHAPE_HEAD.replace(b"Subject: Worst case", b"Subject: Worst case " + words)
        return raw + b"\r\nbody text\r\n", "Subject: a header", b"body text"
    if name == "recipients":
        to = b", ".join(b"\"P " + junk.replace(b'"', b"") + b"\" <p%d@example.org>" % i
                        for i in range(bounds.MAX_ADDRESSES + extra))
    return SHAPE_HEAD + b"Cc: " + to + b"\r\n\r\nbody text\r\n", "Cc: ", b"body text"


@st.composite
def pathological_mail(draw: st.DrawFn) -> tuple[bytes, str, bytes]:
    name = draw(st.sampled_from(["html-deep", "multipart-deep", "rfc822-deep", "many-parts", "many-headers",
                                 "encoded-words", "recipients"]))
    # Text longer than a record holds is not a parsing bound: mailintake.bodies keeps it whole beside the
    # record (tests/unit/test_bodies.py, tests/integration/test_large_bodies.py).
    return _shape(draw, name, draw(st.integers(1, 300)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(pathological_mail())
def test_mail_past_a_bound_keeps_its_identity_and_content_and_says_what_was_simplified(
    shape: tuple[bytes, str, bytes],
) -> None:
    raw, words, kept = shape
    parsed = parse(raw)
    assert (parsed.subject.split(" =?")[0][:10], parsed.sender.email) == ("Worst case", "mallory@example.org")
    assert any(words in line for line in parsed.simplified), parsed.simplified
    everywhere = parsed.text.encode() + b"".join(a.data for a in parsed.attachments)
    assert kept in everywhere
    _assert_sane(parsed)


# --------------------------------------------------------------------------------------------------------
# sanitize_html


class _Dangers(HTMLParser):
    """Collects what a browser could execute in a piece of HTML."""

    SCRIPT_TAGS = frozenset({"script", "iframe", "frame", "frameset", "object", "embed", "applet", "base",
                             "meta", "link", "style", "form", "svg", "math", "template", "noscript"})
    URL_ATTRS = frozenset({"href", "src", "action", "formaction", "xlink:href", "background", "cite",
                           "poster", "srcset", "data", "lowsrc", "dynsrc"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SCRIPT_TAGS:
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"{tag}[{name}]")
            # Browsers drop ASCII white space and controls inside a scheme ("java\tscript:").
            plain = re.sub(r"[\x00-\x20\x7f]+", "", value or "").lower()
            if name in self.URL_ATTRS and plain.startswith(("javascript:", "vbscript:", "livescript:")):
                self.found.append(f"{tag}[{name}]={value!r}")
            if name in ("href", "cite", "action") and plain.startswith("data:"):
                self.found.append(f"{tag}[{name}]={value!r}")
            # A style value that loads or runs something (see also the CSS test below).
            if name == "style" and re.search(r"javascript:|behavior:|url\(|expression\(", plain):
                self.found.append(f"{tag}[style]={value!r}")

    handle_startendtag = handle_starttag


def dangers(html: str) -> list[str]:
    parser = _Dangers()
    parser.feed(html)
    parser.close()
    found = parser.found
    # Independent of any parser: text is escaped, so a literal "<script" in the output is always a tag.
    if re.search(r"<\s*/?\s*script", html, re.IGNORECASE):
        found.append("literal <script")
    return found


HTML_TOKENS = [
    "<script>alert(1)</script>", "<script src=//evil.example/x.js></script>", "<SCRIPT>", "</script>",
    "<scr<script>ipt>alert(1)</script>", "<img src=x onerror=alert(1)>", "<img src=\"cid:a\" onload='x()'>",
    "<a href=\"javascript:alert(1)\">x</a>", "<a href=\"JaVaScRiPt:alert(1)\">", "<a href=\"java\tscript:x\">",
    "<a href=\"&#106;avascript:alert(1)\">", "<a href=\"&#x6A;avascript&colon;alert(1)\">",
    "<a href=\" \x01javascript:x\">", "<a href=\"vbscript:msgbox\">", "<a href=\"data:text/html,<script>\">",
    "<svg onload=alert(1)>", "<svg><script>alert(1)</script></svg>", "<math><mtext><script>x</script>",
    "<iframe src=\"javascript:x\"></iframe>", "<object data=\"x.swf\">", "<embed src=x>",
    "<body onload=alert(1)>", "<div style=\"background:url(javascript:x)\">", "<div style=\"width:expression(x)\">",
    "<style>*{x:expression(alert(1))}</style>", "<form action=\"javascript:x\"><button formaction=x>",
    "<!--", "-->", "<!-- <script>x</script> -->", "<![CDATA[", "]]>", "<noscript><p title=\"</noscript>"
    "<img src=x onerror=alert(1)>\">", "<template><script>x</script></template>", "<textarea>", "</textarea>",
    "<title>", "<xmp>", "</xmp>", "<base href=\"javascript:x//\">", "<meta http-equiv=refresh content=\"0;url=x\">",
    "<link rel=import href=x>", "<p>", "</p>", "<table><td>", "<font color=red face=\"x\" onmouseover=x>",
    "<a href=https://example.org>ok</a>", "<img src=\"data:image/png;base64,AAAA\">", "<", ">", "\"", "'",
    "=", "&", "&lt;script&gt;", "<a/href=javascript:x>", "<img/src/onerror=alert(1)>", "<a href=javascript&#58;x>",
    "<isindex action=javascript:x>", "<details open ontoggle=x>", "<video poster=javascript:x>",
]
hostile_html = st.lists(st.one_of(st.sampled_from(HTML_TOKENS), st.text(max_size=8)), max_size=25).map("".join)


@BUDGET
@given(hostile_html)
@example("<scr<script>ipt>alert(1)</scr</script>ipt>")
@example("<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\">")
def test_sanitize_html_output_has_no_scripts_handlers_or_javascript_urls(html: str) -> None:
    cleaned = sanitize_html(html)
    assert dangers(cleaned) == [], cleaned
    # Sanitising what was sanitised changes nothing: no construct the sanitiser lets through turns into
    # something else on a second parse (the usual shape of mutation XSS).
    assert dangers(sanitize_html(cleaned)) == []


def test_dangers_detector_finds_what_it_looks_for() -> None:
    # The property above is only as good as its detector.
    assert dangers("<a href=' JaVa\tscript:x'>") and dangers("<img onerror=x>") and dangers("<SCRIPT>")
    assert dangers("<a href=\"&#106;avascript:x\">") and dangers("<p style=\"behavior: url(x.htc)\">")
    assert dangers("<p>&lt;script&gt; is text</p>") == []


@pytest.mark.parametrize("style", ["width:expression(alert(1))", "font-family:url(https://tracker.example/t)",
                                   "color:red; background:u\\72l(https://tracker.example/t)"])
def test_css_values_that_run_or_load_something_are_removed(style: str) -> None:
    cleaned = sanitize_html(f'<p style="{style}">x</p>')
    assert not re.search(r"expression\s*\(|url\s*\(", cleaned, re.IGNORECASE), cleaned


@SMALL_BUDGET
@given(hostile_html)
def test_html_body_of_a_mail_reaches_the_item_sanitised(html: str) -> None:
    raw = (b"From: a@example.org\r\nSubject: html\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
           + html.encode("utf-8", "surrogatepass"))
    parsed = parse(raw)
    if parsed.html is not None:
        assert dangers(parsed.html) == [], parsed.html


# --------------------------------------------------------------------------------------------------------
# Attachment names and their S3 keys

MAX_NAME_BYTES = 150  # parsing._MAX_NAME_BYTES: the documented bound


def _assert_safe_segment(name: str, slack: int = 0) -> None:
    assert name, "empty name"
    assert "/" not in name and "\\" not in name
    assert name not in (".", "..") and not name.startswith(".")
    assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in name), repr(name)
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES + slack
    assert name == name.strip(), "leading or trailing white space"


path_like = st.lists(st.one_of(
    st.sampled_from(["..", ".", "/", "\\", "../", "..\\", "%2e%2e", "\x00", "\u202e", "\u200b", "\ufeff", "con",
                     "CON.txt", "nul", ":", "*", "?", "~", " ", "\t", "\n", "a" * 80, "日本語" * 20, "e\u0301",
                     ".exe", ".tar.gz", "\ud800", "\U000e0001"]),
    st.text(max_size=10),
), max_size=15).map("".join)


@BUDGET
@given(st.one_of(st.text(), path_like), st.sampled_from(["application/octet-stream", "image/png", "x/y", ""]))
@example("../../etc/passwd", "text/plain")
@example("..", "")
@example("\u202etxt.exe", "")
@example("." * 300, "")
def test_safe_name_of_any_string_is_one_bounded_key_segment(name: str, content_type: str) -> None:
    _assert_safe_segment(safe_name(name, content_type))


@BUDGET
@given(source_key=st.text(min_size=1, max_size=200), index=st.integers(0, 999), name=st.one_of(st.text(), path_like))
def test_attachment_key_stays_under_the_raw_message_prefix(source_key: str, index: int, name: str) -> None:
    prefix = attachment_prefix(source_key)
    key = attachment_key(source_key, index, safe_name(name))
    assert key.startswith(prefix + "/")
    segments = key.split("/")
    # attachments / <digest> / <index> / <name>: exactly four, none of them a relative step.
    assert len(segments) == 4 and segments[:2] == prefix.split("/")
    assert not {".", "..", ""} & set(segments)
    assert len(key.encode("utf-8")) <= 1024  # S3's key limit


@SMALL_BUDGET
@given(st.lists(path_like, min_size=1, max_size=4))
def test_attachment_names_from_a_mail_stay_under_the_prefix_and_apart(names: list[str]) -> None:
    parts = []
    for name in names:
        encoded = name.encode("utf-8", "surrogatepass")
        parts.append(b"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; "
                     b"filename=\"" + encoded + b"\"\r\n\r\ndata\r\n")
    raw = (b"From: a@example.org\r\nSubject: files\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           + b"".join(parts) + b"--b--\r\n")
    parsed = parse(raw)
    keys = [attachment_key("raw/box/1.eml", i, a.safe_name) for i, a in enumerate(parsed.attachments)]
    for key in keys:
        assert key.startswith(attachment_prefix("raw/box/1.eml") + "/")
        assert ".." not in key.split("/")
    assert len(set(keys)) == len(keys)
    for att in parsed.attachments:
        _assert_safe_segment(att.safe_name, slack=8)


# --------------------------------------------------------------------------------------------------------
# Header injection into replies

INTENDED = "victim@example.org"


class _FakeSes:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_raw_email(self, **kwargs: Any) -> dict[str, str]:
        self.sent.append(kwargs)
        return {"MessageId": "local"}


def _recipients(raw: bytes) -> list[str]:
    """Every recipient an SMTP client would derive from the headers (smtplib.send_message does this)."""
    msg = email.message_from_bytes(raw, policy=policy.compat32)
    fields = [str(v) for name in ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc")
              for v in msg.get_all(name, [])]
    return [addr.lower() for _, addr in getaddresses(fields) if addr]


injections = st.lists(st.sampled_from([
    "\r\nBcc: x@attacker.example", "\nCc: x@attacker.example", "\r\n To: x@attacker.example",
    "=?utf-8?Q?=0D=0ABcc:_x@attacker.example?=", "=?utf-8?B?DQpCY2M6IHhAYXR0YWNrZXIuZXhhbXBsZQ==?=",
    ", x@attacker.example", "; x@attacker.example", "\" <x@attacker.example>", "x@attacker.example",
    "\x00", "\r", "\n", "Hello", " ", "\u2028Bcc: x@attacker.example", "%0d%0aBcc: x@attacker.example",
]), max_size=4).map("".join)


def _hostile_mail(name: str, subject: str, message_id: str) -> bytes:
    def enc(text: str) -> bytes:
        return text.encode("utf-8", "surrogatepass")

    return (b"From: \"" + enc(name) + b"\" <" + INTENDED.encode() + b">\r\n"
            b"To: support@tracker.example\r\nSubject: " + enc(subject) + b"\r\n"
            b"Message-ID: <" + enc(message_id) + b">\r\n\r\nbody\r\n")


def _send_both(parsed: ParsedMessage, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Send a rejection reply and an acknowledgement for ``parsed`` through a fake SES; what went out."""
    ses = _FakeSes()
    monkeypatch.setattr(outgoing, "client", lambda service, region: ses)
    monkeypatch.setattr(outgoing, "take_reply_slots", lambda address, per_address, per_hour, now=None: None)
    config = Config(system={"reply.from": "tracker@tracker.example", "reply.acknowledgeItems": "true"})
    app = Settings()
    notes = [
        outgoing.reply_to_rejection(parsed, "subject", "", config, app),
        outgoing.acknowledge(parsed, "[HD#7]", 7, config, app),
    ]
    if parsed.sender.email == INTENDED and not parsed.reply_to:
        # Not vacuous: whenever the sender is readable, both mails really are built and sent.
        assert all(n.startswith("sent via ses") for n in notes), notes
    return ses.sent


def _header_count(raw: bytes, name: str) -> int:
    return len(email.message_from_bytes(raw, policy=policy.compat32).get_all(name, []))


def test_sender_address_the_header_registry_refuses_ends_as_a_failed_reply_not_an_exception(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Found by the property below: an unterminated quote made the lenient parser take the encoded word
    # itself as the address, and EmailMessage decodes it to CR/LF and raises ValueError. Uncaught, that
    # failed the whole message (retries, dead-letter queue) instead of recording its rejection. The strict
    # From parse now reads that header as no sender at all, so no reply is even tried...
    raw = _hostile_mail("=?utf-8?Q?=0D=0ABcc:_x@attacker.example?=\r\nBcc: x@attacker.example", "", "")
    parsed = parse(raw)
    assert parsed.sender == Address("", "")
    assert _send_both(parsed, monkeypatch) == []
    # ...and should such an address reach a reply anyway, it still ends as a failed reply, not an exception.
    parsed = dataclasses.replace(parsed, sender=Address("=?utf-8?q?=0d=0abcc:_x@attacker.example?=", ""))
    sent = _send_both(parsed, monkeypatch)
    assert sent == []
    config = Config(system={"reply.from": "tracker@tracker.example"})
    note = outgoing.reply_to_rejection(parsed, "subject", "", config, Settings())
    assert note.startswith("reply failed: ses: ValueError: not a plain address")


def _encoded_word(text: str, charset: str) -> str:
    return Header(text.encode("utf-8", "surrogatepass").decode("utf-8", "replace"), charset).encode()


@BUDGET
@given(name=injections, subject=injections, charset=st.sampled_from(["utf-8", "utf-16"]))
def test_header_injection_in_encoded_name_or_subject_cannot_add_recipients_to_a_reply(
    name: str, subject: str, charset: str
) -> None:
    # Encoded words keep the raw header intact, so whatever CR/LF, commas or addresses they decode to
    # are content of the display name and subject: the reply must still go to the sender alone.
    raw = _hostile_mail(_encoded_word(name, charset), _encoded_word(subject or "x", charset), "id@example.org")
    parsed = parse(raw)
    assert parsed.sender.email == INTENDED
    with pytest.MonkeyPatch.context() as monkeypatch:
        sent = _send_both(parsed, monkeypatch)
    assert len(sent) == 2
    for call in sent:
        assert call["Destinations"] == [INTENDED]
        raw_reply = call["RawMessage"]["Data"]
        assert _recipients(raw_reply) == [INTENDED]
        # The attacker's address may show up inside the Subject as text, never as a header of its own.
        assert _header_count(raw_reply, "to") == 1
        assert _header_count(raw_reply, "cc") == _header_count(raw_reply, "bcc") == 0


@BUDGET
@given(name=injections, subject=injections, message_id=injections)
@example(name="Eve\r\nBcc: x@attacker.example", subject="Hi\r\nCc: x@attacker.example", message_id="a@b")
def test_raw_hostile_from_subject_and_message_id_give_a_reply_with_exactly_one_recipient(
    name: str, subject: str, message_id: str
) -> None:
    # Raw CR/LF in the incoming mail is header structure, not content: the sender can name any From
    # they like. What must hold is that a reply goes to one address, the one the intake chose.
    parsed = parse(_hostile_mail(name, subject, message_id))
    with pytest.MonkeyPatch.context() as monkeypatch:
        sent = _send_both(parsed, monkeypatch)
    for call in sent:
        assert call["Destinations"] == [outgoing.reply_address(parsed)]
        raw_reply = call["RawMessage"]["Data"]
        assert len(_recipients(raw_reply)) == 1
        assert _header_count(raw_reply, "to") == 1
        assert _header_count(raw_reply, "cc") == _header_count(raw_reply, "bcc") == 0


def test_encoded_crlf_in_subject_and_name_still_gets_its_replies_to_the_sender_only() -> None:
    raw = _hostile_mail("=?utf-8?Q?Eve=0D=0ABcc:_x@attacker.example?=",
                        "=?utf-8?B?SGkNCkNjOiB4QGF0dGFja2VyLmV4YW1wbGU=?=", "a@b")
    parsed = parse(raw)
    assert parsed.sender.email == INTENDED
    with pytest.MonkeyPatch.context() as monkeypatch:
        sent = _send_both(parsed, monkeypatch)
    assert len(sent) == 2
    for call in sent:
        assert _recipients(call["RawMessage"]["Data"]) == [INTENDED]


@SMALL_BUDGET
@given(reply_to=injections)
def test_reply_to_with_several_or_injected_addresses_gets_one_recipient(reply_to: str) -> None:
    raw = (b"From: a@example.org\r\nReply-To: " + INTENDED.encode() + reply_to.encode("utf-8", "surrogatepass")
           + b"\r\nSubject: hi\r\n\r\nbody\r\n")
    parsed = parse(raw)
    with pytest.MonkeyPatch.context() as monkeypatch:
        sent = _send_both(parsed, monkeypatch)
    for call in sent:
        # One recipient, the From address: never a Reply-To entry nor an injected header's.
        assert call["Destinations"] == [outgoing.reply_address(parsed)]
        assert len(_recipients(call["RawMessage"]["Data"])) == 1
        assert _header_count(call["RawMessage"]["Data"], "cc") == _header_count(call["RawMessage"]["Data"], "bcc") == 0


# Found by the properties above (before the fix in outgoing.compose): Python's header registry decodes an
# encoded word handed to it as a header value, and Python 3.11 writes the CR/LF it decodes to as is.
ENCODED_BCC = "=?utf-8?Q?=0D=0ABcc:_x@attacker.example?="


@pytest.mark.parametrize(("subject", "message_id"), [
    # The subject decodes (once, by the parser) to a literal encoded word, which compose decoded again.
    ("=?utf-8?B?" + base64.b64encode(ENCODED_BCC.encode()).decode() + "?=", "plain@example.org"),
    # Message-IDs are not decoded by the parser and went into In-Reply-To and References as they were.
    ("Printer jams", ENCODED_BCC),
])
def test_encoded_word_in_subject_or_message_id_does_not_become_a_bcc_of_the_reply(
    subject: str, message_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = parse(_hostile_mail("Eve", subject, message_id))
    sent = _send_both(parsed, monkeypatch)
    assert len(sent) == 2
    for call in sent:
        raw_reply = call["RawMessage"]["Data"]
        assert _recipients(raw_reply) == [INTENDED]
        assert b"\nBcc:" not in raw_reply and _header_count(raw_reply, "bcc") == 0


def test_smtp_envelope_is_the_one_recipient_whatever_the_headers_say(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, Any]] = []

    class FakeSmtp:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def __enter__(self) -> FakeSmtp:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def starttls(self, **kwargs: Any) -> None:
            pass

        def send_message(self, message: Any, to_addrs: Any = None) -> None:
            calls.append((message, to_addrs))

    monkeypatch.setattr(smtplib, "SMTP", FakeSmtp)  # the module outgoing sends through
    config = Config(system={"reply.from": "tracker@tracker.example", "reply.transport": "smtp",
                            "reply.smtpHost": "127.0.0.1"})
    mail = outgoing.Outgoing(to=INTENDED, subject="Re: hi", body="b", in_reply_to="a@b")
    assert outgoing.send(mail, config, Settings()) == f"sent via smtp to {INTENDED}"
    ((_message, to_addrs),) = calls
    assert to_addrs == [INTENDED]
