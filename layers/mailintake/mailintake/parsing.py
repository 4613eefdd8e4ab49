"""Parsing a raw message into what an item or comment needs (title, text, safe HTML, attachments).

The processing function calls :func:`parse_message` on the raw bytes streamed from S3.

Design notes:

* The stdlib parser runs with the ``compat32`` policy: header values stay raw strings, so every decoding
  step (encoded words, RFC 2231, 8-bit headers, charsets) is ours and can never raise half-way through a
  message. The modern ``email.policy.default`` parses headers lazily and raises on some broken ones.
* Nothing here may raise on bad input: problems end up in ``ParsedMessage.defects``.
* The work is bounded by the mail's size, not its shape (``mailintake.bounds``): MIME nesting and part
  counts, header counts and lengths, HTML nesting and the HTML handed to html2text are capped, and what a
  cap simplified is listed in ``ParsedMessage.simplified``. A ``Deadline`` stops the parse between steps.
"""

from __future__ import annotations

import binascii
import itertools
import logging
import mimetypes
import posixpath
import quopri
import re
import secrets
import unicodedata
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import errors
from email import policy as email_policy
from email.feedparser import BytesFeedParser
from email.generator import BytesGenerator
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parsedate_to_datetime
from io import BytesIO
from typing import BinaryIO, Protocol

import html2text
import nh3

from mailintake import automail, forwards, htmlshape, quoting
from mailintake.addresses import is_address, parse_mailbox
from mailintake.bounds import (
    MAX_ADDRESS_CHARS,
    MAX_ADDRESSES,
    MAX_CONVERTED_CHARS,
    MAX_HEADER_CHARS,
    MAX_HEADER_FIELDS,
    MAX_HTML_CONVERT_CHARS,
    MAX_HTML_DEPTH,
    MAX_LINE_BYTES,
    MAX_MIME_DEPTH,
    MAX_MIME_PARTS,
    MAX_NAME_CHARS,
    MAX_REFERENCES,
    MAX_REPLY_SCAN_CHARS,
    MAX_SANITIZED_CHARS,
    MAX_SUBJECT_CHARS,
    BudgetExceeded,
    Deadline,
    check,
)
from mailintake.charsets import UNKNOWN_CHARSETS, breaks_are_bytes, decode_bytes, message_hints, reading_codec
from mailintake.handover import HEADER_SCAN_BYTES, header_block

# What a parse makes, re-exported: callers that parse take the result types from here too.
from mailintake.message import Address as Address
from mailintake.message import Attachment as Attachment
from mailintake.message import Forwarded
from mailintake.message import ParsedMessage as ParsedMessage


class Readable(Protocol):
    """What the parser reads a mail from: a file, a BytesIO, or S3's streaming body."""

    def read(self, size: int, /) -> bytes: ...

log = logging.getLogger(__name__)
# flufl.bounce logs every heuristic detector that trips over an unusual message as an error with a
# traceback; those are expected on ordinary mail and would drown real errors in the Lambda logs.
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)


class _Simplified:
    """What a parse simplified, one line per kind however often it happened (a mail of 10,000 over-deep
    parts gets one line with the count, not 10,000)."""

    def __init__(self) -> None:
        self._first: dict[str, str] = {}
        self._count: dict[str, int] = {}

    def add(self, kind: str, text: str) -> None:
        if kind not in self._first:
            self._first[kind] = text
            self._count[kind] = 1
        elif text != self._first[kind]:  # the same thing noticed twice is one thing
            self._count[kind] += 1

    def __contains__(self, kind: str) -> bool:
        return kind in self._first

    def lines(self) -> list[str]:
        return [text if self._count[kind] == 1 else f"{text} (and {self._count[kind] - 1:,} more like it)"
                for kind, text in self._first.items()]


def _kb(chars: int) -> str:
    return f"{chars / 1024:,.0f} KB" if chars < 1024 * 1024 else f"{chars / 1024 / 1024:,.1f} MB"


# --------------------------------------------------------------------------------------------------------
# Headers


_ENCODED_WORD = re.compile(r"=\?([^?\s]*)\?([qQbB])\?([^?]*)\?=")


def _raw_bytes(text: str) -> bytes:
    # compat32 keeps 8-bit header bytes as surrogate escapes; this gets the original bytes back.
    return text.encode("utf-8", errors="surrogateescape")


_SURROGATE = re.compile("[\udc80-\udcff]")


def _has_surrogates(text: str) -> bool:
    return _SURROGATE.search(text) is not None


def _decode_plain(text: str, defects: list[str] | None, hints: Sequence[str] = ()) -> str:
    if not _has_surrogates(text):
        return text
    return decode_bytes(_raw_bytes(text), None, defects, "header: ", hints)


def decode_header_value(value: object, defects: list[str] | None = None, hints: Sequence[str] = ()) -> str:
    """Decode a raw header value: RFC 2047 words in any charset, raw 8-bit text; unfolded, never raises.

    Adjacent encoded words in the same charset are joined as bytes before decoding, because many mailers
    split a multi-byte character across two words. ``hints`` are the message's charsets for raw 8-bit
    text (:func:`mailintake.charsets.message_hints`).
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        try:
            value = str(value)
        except Exception:
            return ""
    text = re.sub(r"\r?\n[ \t]*", " ", value)
    # (charset, the bytes of adjacent encoded words in it) for encoded words, ("", str) for text. The bytes
    # are joined once at the end: adding each word to a bytes object would copy the run every time.
    pieces: list[tuple[str, list[bytes] | str]] = []
    pos = 0
    for m in _ENCODED_WORD.finditer(text):
        between = text[pos:m.start()]
        # RFC 2047: white space between two encoded words is not part of the text.
        if between and not (pieces and pieces[-1][0] and between.isspace()):
            pieces.append(("", between))
        charset = m.group(1).split("*", 1)[0] or "us-ascii"
        payload = m.group(3)
        try:
            if m.group(2) in "bB":
                payload = re.sub(r"[^A-Za-z0-9+/]", "", payload)
                payload += "=" * (-len(payload) % 4)
                if len(payload) % 4 == 1:  # an impossible length: drop the dangling character
                    payload = payload[:-1]
                data = binascii.a2b_base64(payload)
            else:
                data = re.sub(rb"=([0-9A-Fa-f]{2})", lambda q: bytes([int(q.group(1), 16)]),
                              _raw_bytes(payload).replace(b"_", b" "))
        except (binascii.Error, ValueError):
            if defects is not None:
                defects.append(f"header: undecodable encoded word {m.group(0)[:60]!r}")
            pieces.append(("", m.group(0)))
            pos = m.end()
            continue
        last = pieces[-1][1] if pieces else None
        if isinstance(last, list) and pieces[-1][0].lower() == charset.lower():
            last.append(data)
        else:
            pieces.append((charset, [data]))
        pos = m.end()
    if pos < len(text):
        pieces.append(("", text[pos:]))
    out: list[str] = []
    for charset, chunk in pieces:
        if isinstance(chunk, list):
            out.append(decode_bytes(b"".join(chunk), charset, defects, "header: ", hints))
        else:
            out.append(_decode_plain(chunk, defects, hints))
    return "".join(out)


def _clip_name(text: str) -> str:
    return text if len(text) <= MAX_NAME_CHARS else text[:MAX_NAME_CHARS - 1].rstrip() + "…"


def _clean_line(text: str) -> str:
    """Collapse white space (incl. folding) and drop control characters, for single-line header values."""
    text = "".join(ch if unicodedata.category(ch) != "Cc" else " " for ch in text)
    return " ".join(text.split())


# Characters that only change the order in which the text around them is shown: the bidirectional embeddings,
# overrides, isolates and marks (and the deprecated U+206A-F, which switch mirroring and shaping). With U+202E
# "invoice\u202efdp.exe" shows as "invoiceexe.pdf". They are removed, not replaced by a visible mark: what is
# left reads in its true order, and right-to-left titles (Hebrew and Arabic mailers put U+200F marks in their
# subjects) stay clean; the display's own bidi algorithm still lays out each script in its direction.
_BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u206a-\u206f]")


def display_text(text: str) -> str:
    """Text to show as a title or a name, without the characters that reorder its display."""
    return _BIDI_CONTROLS.sub("", text)


def _exact_name(text: str) -> str:
    """A file name for display, as the sender wrote it: control characters become spaces, but runs of spaces
    inside the name stay (people do name files "Scan  2024.pdf"; only ``safe_name`` normalises, for keys).

    Folding was already undone by the header decoding; white space around the name is quoting debris.
    """
    return "".join(ch if unicodedata.category(ch) != "Cc" else " " for ch in text).strip()


_MSGID = re.compile(r"<([^<>\s]+)>")


def _ids(value: str | None) -> list[str]:
    value = value or ""
    found = _MSGID.findall(value)
    if not found and value.strip() and "@" in value and "<" not in value:
        # Some mailers omit the angle brackets; accept bare id tokens containing '@'.
        found = [tok for tok in re.split(r"[\s,]+", value.strip()) if "@" in tok]
    return found


def _thread_ids(value: str, keep_root: bool, notes: _Simplified, field_name: str) -> list[str]:
    """The message ids of In-Reply-To or References, at most MAX_REFERENCES: for References the root (the
    conversation's first mail) and the newest, which is what threading looks up."""
    found = _ids(value)
    if len(found) <= MAX_REFERENCES:
        return found
    notes.add(f"ids-{field_name}", f"{field_name}: {len(found):,} message ids; only {MAX_REFERENCES} read "
              "(the first and the newest)" if keep_root else
              f"{field_name}: {len(found):,} message ids; only the first {MAX_REFERENCES} read")
    if keep_root:
        return [found[0], *found[-(MAX_REFERENCES - 1):]]
    return found[:MAX_REFERENCES]


_ADDR_SPEC = re.compile(r"[^\s<>()\",;:@]+@[^\s<>()\",;:@]+")
# What can be an address at all: something@something, no white space or angle brackets. The stdlib gives
# back whatever it could not parse as the address ("unterminated" from '"unterminated', "bob <bob@x.org"
# from '"Bob <bob@x.org>'): such text must never become a user.
_PLAUSIBLE_ADDRESS = re.compile(r"[^\s<>@]+@[^\s<>@]+")


def _bounded_value(raw: str, field_name: str, notes: _Simplified | None) -> str:
    """A raw header value cut to MAX_HEADER_CHARS (noted when cut)."""
    if len(raw) <= MAX_HEADER_CHARS:
        return raw
    if notes is not None:
        label = "-".join(word[:1].upper() + word[1:] for word in field_name.split("-"))
        notes.add(f"header-{label.lower()}", f"{label}: a header of {_kb(len(raw))}; only its first "
                  f"{_kb(MAX_HEADER_CHARS)} read")
    return raw[:MAX_HEADER_CHARS]


def _sender(raw_values: list[str], defects: list[str], hints: Sequence[str] = (),
            notes: _Simplified | None = None) -> Address:
    """The author: exactly one From header holding exactly one mailbox (:func:`mailintake.addresses.
    parse_mailbox`), else no address at all, an unknown sender. Only the display name is decoded, and it
    never supplies the address; a display name holding another address is dropped, as it would show one
    person's address on another's mail."""
    if len(raw_values) != 1:
        if raw_values:
            defects.append(f"from: {len(raw_values)} From headers; no sender")
        return Address("", "")
    mailbox = parse_mailbox(_bounded_value(raw_values[0], "From", notes))
    if mailbox is None:
        defects.append(f"from: not exactly one mailbox {raw_values[0][:80]!r}; no sender")
        return Address("", "")
    email = mailbox.addr_spec.lower()
    # A mailbox without an address (a bounce's "<MAILER-DAEMON>") keeps its local part as a name, for automail.
    raw_name = mailbox.display_name or mailbox.comment or mailbox.local_part
    name = display_text(_clean_line(decode_header_value(raw_name, defects, hints)))
    name = name.strip("\"' ")
    if name.lower() == email:
        name = ""
    elif any(found.lower().rstrip(".") != email for found in _ADDR_SPEC.findall(name)):
        defects.append(f"from: display name {name[:80]!r} names another address; dropped")
        name = ""
    return Address(email, name)


def _addresses(raw_values: list[str], defects: list[str], hints: Sequence[str] = (),
               notes: _Simplified | None = None, field_name: str = "address") -> list[Address]:
    """To, Cc, Reply-To: read leniently (they add readers and editors), at most MAX_ADDRESSES of each, but
    an address that is not a plain addr-spec is dropped, so that garbage names no user."""
    result: list[Address] = []
    seen = 0
    for raw in raw_values:
        raw = re.sub(r"\r?\n[ \t]*", " ", _bounded_value(raw, field_name, notes))
        try:
            pairs = getaddresses([raw])
        except Exception:
            pairs = []
        pairs = [(n, a) for n, a in pairs if a or n]
        junk = any(a and not is_address(a.strip("<> ").lower()) for _, a in pairs)
        if not pairs or (junk and _ADDR_SPEC.search(raw)):
            # The stdlib gave up (or produced junk): fall back to finding addr-specs in the raw value.
            found = _ADDR_SPEC.findall(raw)
            if found:
                if pairs:
                    defects.append(f"address: unparsable list {raw[:80]!r}")
                pairs = [("", a) for a in found]
                if len(found) == 1:
                    name = raw.split("<", 1)[0] if "<" in raw else ""
                    pairs = [(name.strip().strip('"'), found[0])]
        seen += len(pairs)
        for name, addr in pairs:
            if len(result) >= MAX_ADDRESSES:
                break
            name = _clean_line(decode_header_value(name, defects, hints)).strip("\"' ")
            addr = _clean_line(_decode_plain(addr, defects, hints)).strip("<> ").lower()
            name = _clip_name(name)
            if name.lower() == addr:
                name = ""
            if addr and (len(addr) > MAX_ADDRESS_CHARS or not is_address(addr)):
                # Garbage ('"unterminated', '=?utf-8?q?x'): no address, so nobody to create or answer.
                defects.append(f"address: not an address {addr[:80]!r}")
                addr = ""
            if addr or name:
                result.append(Address(addr, name))
    if seen > MAX_ADDRESSES and notes is not None:
        notes.add(f"addresses-{field_name}", f"{field_name}: {seen:,} addresses; only the first "
                  f"{MAX_ADDRESSES} read")
    return result


def _header_values(msg: Message, name: str) -> list[str]:
    # raw_items(), not get_all(): compat32 turns values with 8-bit bytes into Header objects whose str()
    # has lost those bytes; the raw value still holds them (as surrogate escapes) for our decoder.
    name = name.lower()
    try:
        return [v if isinstance(v, str) else str(v) for k, v in msg.raw_items() if k.lower() == name]
    except Exception:
        return []


# --------------------------------------------------------------------------------------------------------
# File names


_RESERVED_WINDOWS = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])$", re.IGNORECASE)
_UNSAFE_CHARS = re.compile(r'[<>:"|?*\x00-\x1f\x7f]')
_MAX_NAME_BYTES = 150
_MAX_EXT_CHARS = 16


def safe_name(name: str, content_type: str = "application/octet-stream") -> str:
    """Make a file name safe as the last segment of an S3 key (and as a download name on any OS).

    Keeps the base name only, NFC-normalised, without control/format characters or characters that
    Windows refuses, never ``.``/``..``, at most ``_MAX_NAME_BYTES`` UTF-8 bytes with the extension kept.
    """
    name = unicodedata.normalize("NFC", name or "")
    # Format characters include right-to-left overrides used to disguise extensions ("txt.exe" shown
    # as "exe.txt"), so they go with the control characters.
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn"))
    name = name.replace("\\", "/")
    name = posixpath.basename(name.rstrip("/ ")) or name.replace("/", "_")
    name = _UNSAFE_CHARS.sub("_", name)
    name = " ".join(name.split())
    name = name.strip(". ")
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    if not stem:  # ".bashrc" keeps its text as the name, not as an extension
        stem, ext = ext, ""
    if len(ext) > _MAX_EXT_CHARS or not ext.strip("_"):
        stem, ext = name, ""
    if _RESERVED_WINDOWS.match(stem.split(".", 1)[0]):
        stem = "_" + stem
    if not stem:
        stem = "attachment"
        if not ext:
            guessed = mimetypes.guess_extension(content_type or "", strict=False)
            ext = guessed.lstrip(".") if guessed else ""
    suffix = f".{ext}" if ext else ""
    budget = _MAX_NAME_BYTES - len(suffix.encode())
    encoded = stem.encode()
    if len(encoded) > budget:
        stem = encoded[:budget].decode("utf-8", errors="ignore").rstrip(". ") or "attachment"
    return unicodedata.normalize("NFC", stem + suffix)


def _unique(name: str, taken: set[str]) -> str:
    # Two attachments called "image.png" would overwrite each other under one key prefix.
    if name.lower() not in taken:
        taken.add(name.lower())
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    i = 2
    while True:
        candidate = f"{stem}-{i}.{ext}" if ext else f"{stem}-{i}"
        if candidate.lower() not in taken:
            taken.add(candidate.lower())
            return candidate
        i += 1


def _param(part: Message, name: str, header: str, hints: Sequence[str] = ()) -> str | None:
    """A (possibly RFC 2231 encoded, possibly continued) parameter, decoded; never raises."""
    raw = _header_values(part, header)
    if raw and _has_surrogates(raw[0]):
        # Raw 8-bit parameter (commonly a UTF-8 file name): the stdlib would see it through a Header
        # object that has already replaced those bytes, so read it from the raw value.
        m = re.search(rf'(?:^|;)\s*{re.escape(name)}\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', raw[0], re.IGNORECASE)
        if m:
            return _decode_plain(m.group(1).strip().strip('"'), None, hints)
    try:
        value = part.get_param(name, header=header)
    except Exception:
        return None
    if value is None:
        return None
    if isinstance(value, tuple):  # RFC 2231: (charset, language, text with bytes as latin-1 chars)
        charset, _lang, text = value
        try:
            data = text.encode("latin-1", errors="surrogateescape")
        except UnicodeEncodeError:
            data = _raw_bytes(text)
        return decode_bytes(data, charset or None, None, "", hints)
    if not isinstance(value, str):
        return None
    return value


def _filename(part: Message, defects: list[str], hints: Sequence[str] = ()) -> str:
    raw = (_param(part, "filename", "content-disposition", hints) or _param(part, "name", "content-type", hints)
           or "")
    # Encoded words are not allowed in parameters, but Outlook and others put them there anyway.
    name = decode_header_value(raw.strip().strip('"'), defects, hints) if raw else ""
    return _exact_name(name)


# --------------------------------------------------------------------------------------------------------
# Bodies


def _materialize(part: Message) -> None:
    """Give a part whose body was gathered beside the parser its payload as the parser stores it."""
    raw = getattr(part, "raw_body", None)
    if raw is not None:
        part._payload = raw.decode("ascii", "surrogateescape")  # type: ignore[attr-defined]
        part.raw_body = None  # type: ignore[attr-defined]


def _raw_payload_bytes(part: Message, raw: bytes) -> bytes | None:
    """``get_payload(decode=True)`` of a body gathered as bytes, read from them directly (no 8-bit text as
    surrogate escapes, no re-encoding); None where only the stdlib's decoding will do."""
    if str(part.get("content-transfer-encoding", "")).strip().lower() == "base64":
        if raw.isascii():
            try:
                return binascii.a2b_base64(raw)
            except (binascii.Error, ValueError):
                pass
        return None
    cte = str(part.get("content-transfer-encoding", "")).lower()  # as get_payload compares it
    if cte == "quoted-printable":
        return quopri.decodestring(raw)
    if cte in ("base64", "x-uuencode", "uuencode", "uue", "x-uue"):
        return None
    return raw


def _payload_bytes(part: Message, defects: list[str]) -> bytes:
    raw_body = getattr(part, "raw_body", None)
    if raw_body is not None:
        gathered = _raw_payload_bytes(part, raw_body)
        if gathered is not None:
            return gathered
        _materialize(part)  # bad base64, uuencode: as the stdlib decodes them, defects and all
    known = len(getattr(part, "defects", []))
    if str(part.get("content-transfer-encoding", "")).strip().lower() == "base64":
        raw = part.get_payload()
        if isinstance(raw, str) and raw.isascii():
            # Straight from the str: the stdlib path first makes a bytes copy and a list of all lines,
            # about three extra copies of a large attachment.
            try:
                return binascii.a2b_base64(raw)
            except (binascii.Error, ValueError):
                pass  # let the stdlib decode what it can and record the defects
    try:
        data = part.get_payload(decode=True)
    except Exception as exc:  # uu errors and the like
        defects.append(f"{part.get_content_type()}: undecodable payload ({exc.__class__.__name__})")
        raw = part.get_payload()
        return _raw_bytes(raw) if isinstance(raw, str) else b""
    # Decoding reports bad base64 padding / characters as defects on the part; keep them.
    defects.extend(f"{part.get_content_type()}: {d.__class__.__name__}" for d in part.defects[known:])
    if isinstance(data, bytes):
        return data
    return b""


def _stored_payload(part: Message) -> object:
    """A part's payload as the parser stored it. ``get_payload()`` re-encodes and re-decodes an 8-bit body
    on every call (for compat32: two more copies of a body that may be 25 MB); this is read-only."""
    return part._payload  # type: ignore[attr-defined]


def _payload_prefix(part: Message, size: int) -> bytes:
    """About the first ``size`` bytes of a part's decoded body, decoding no more than that (for evidence)."""
    raw = getattr(part, "raw_body", None)
    if raw is None:
        stored = _stored_payload(part)
        if not isinstance(stored, str):
            return b""
        raw = _raw_bytes(stored[:2 * size + 1024])
    head = raw[:2 * size + 1024]
    cte = str(part.get("content-transfer-encoding", "")).strip().lower()
    try:
        if cte == "base64":
            chars = re.sub(rb"[^A-Za-z0-9+/]", b"", head)
            return binascii.a2b_base64(chars[:len(chars) // 4 * 4])[:size]
        if cte == "quoted-printable":
            return quopri.decodestring(head)[:size]
    except (binascii.Error, ValueError):
        return b""
    return head[:size]


def _part_text(part: Message, defects: list[str], hints: Sequence[str] = (), strip: bool = False,
               release: Callable[[Message], None] | None = None) -> str:
    """The text of a body part, line breaks made "\n"; with ``strip``, no line breaks at either end.
    ``release`` lets go of the part's body once it is read."""
    charset = _param(part, "charset", "content-type")
    flowed = part.get_param("format") == "flowed" and not part.get_param("delsp")
    data = _payload_bytes(part, defects)
    if release is not None:
        release(part)
    in_bytes = breaks_are_bytes(reading_codec(data, charset, hints), data)
    if in_bytes:
        # _plain_breaks in the bytes, where each step copies the bytes, not the decoded text (up to four
        # bytes a character: each replace held a 25 MB body's text twice). Done here, where ``data`` is the
        # body's only reference, so that each copy replaces the one before.
        if strip and not flowed:
            data = _strip_breaks(data)
        for old, new in _BYTE_BREAKS:
            if old in data:
                data = data.replace(old, new)
    text = decode_bytes(data, charset, defects, f"{part.get_content_type()}: ", hints)
    del data  # a large body is held once at a time, not as bytes and text and copies of it
    if not in_bytes:
        text = _plain_breaks(text, strip and not flowed)
    elif "\x00" in text:
        text = text.replace("\x00", "")
    if flowed:
        text = _unflow(text)
    return text.strip("\n") if strip else text


_BREAKS = (("\r\n", "\n"), ("\r", "\n"), ("\x00", ""))
# NUL is dropped from the text, not the bytes: between a broken multi-byte lead byte and the next character
# it keeps them apart, as it does when the text is decoded first.
_BYTE_BREAKS = ((b"\r\n", b"\n"), (b"\r", b"\n"))


def _strip_breaks(data: bytes) -> bytes:
    """``data`` without line breaks at either end; indices, not strip: that copies a 25 MB body to count."""
    start, end = 0, len(data)
    while start < end and data[start] in b"\r\n":
        start += 1
    while end > start and data[end - 1] in b"\r\n":
        end -= 1
    return data[start:end] if start or end < len(data) else data


def _plain_breaks(text: str, strip: bool) -> str:
    """CRLF and CR made LF and NUL dropped; with ``strip``, no line breaks at either end. Stripped first:
    the line breaks at the ends, whatever they are, would be LF and stripped anyway (and a large text is
    not copied twice)."""
    if strip:
        text = text.strip("\r\n")
    for old, new in _BREAKS:
        if old in text:
            text = text.replace(old, new)
    return text


def _unflow(text: str) -> str:
    """Join RFC 3676 format=flowed soft line breaks (a line ending with a space continues)."""
    out: list[str] = []
    buf = ""
    for line in text.split("\n"):
        if line.startswith(" "):  # space-stuffed
            line = line[1:]
        if line == "-- ":  # the signature separator is never a soft break
            if buf:
                out.append(buf)
                buf = ""
            out.append(line)
            continue
        if line.endswith(" ") and not line.startswith(">"):
            buf += line
        else:
            out.append(buf + line)
            buf = ""
    if buf:
        out.append(buf)
    return "\n".join(out)


# Tags whose Markdown rendering is markup a reader would see as stray characters in plain text: headings
# ("## "), strikethrough ("~~") and code ("`") become plain runs of text; emphasis is switched off below.
_PLAIN_TAGS = {"h1": "p", "h2": "p", "h3": "p", "h4": "p", "h5": "p", "h6": "p",
               "del": "span", "s": "span", "strike": "span", "code": "span", "tt": "span", "kbd": "span"}


class _OutputFull(Exception):  # a signal from _PlainText.outtextf to html_to_text
    """html2text wrote as much text as one mail may have (MAX_CONVERTED_CHARS)."""


class _PlainText(html2text.HTML2Text):
    """html2text, but writing text for people to read rather than Markdown to render.

    The item description is shown as plain text: "**bold**", "\\-" and "1\\." would be noise there, and a
    search for the words a sender wrote must find them. Paragraphs, list bullets, block quotes ("> ", which
    the reply cutting relies on) and links stay, since they read naturally as plain text.

    Its output goes through :meth:`outtextf`, which stops the conversion when the text passes ``limit``
    characters or the deadline passes: the one place where html2text's work can be stopped from outside.
    """

    def __init__(self, limit: int = MAX_CONVERTED_CHARS, deadline: Deadline | None = None) -> None:
        super().__init__()
        self._limit = limit
        self._written = 0
        self._deadline = deadline
        self._calls = 0

    def handle_tag(self, tag: str, attrs: dict[str, str | None], start: bool) -> None:
        super().handle_tag(_PLAIN_TAGS.get(tag, tag), attrs, start)

    def handle_data(self, data: str, entity_char: bool = False) -> None:
        # html2text escapes Markdown characters in text unless it came from an entity; nothing here is
        # rendered as Markdown, so no text is escaped.
        super().handle_data(data, entity_char=True)

    def outtextf(self, s: str) -> None:
        super().outtextf(s)
        self._written += len(s)
        self._calls += 1
        if self._written > self._limit:
            raise _OutputFull
        if self._calls % 512 == 0:
            check(self._deadline, "converting HTML to text")

    def written(self) -> str:
        """The text written so far, when the conversion was stopped."""
        return "".join(self.outtextlist).replace("&nbsp_place_holder;", "\u00a0")


def html_to_text(html: str, *, deadline: Deadline | None = None, notes: _Simplified | None = None) -> str:
    """Readable plain text from HTML: paragraphs, lists and links kept; no Markdown emphasis or escapes.

    Only the HTML up to its first tag or comment that never ends is read (the rest shows nothing in a
    browser, and Python's HTML parser rescans it at every such tag). Text beyond MAX_CONVERTED_CHARS is cut
    (noted in ``notes``).
    """
    html = htmlshape.terminated(html)
    conv = _PlainText(deadline=deadline)
    conv.body_width = 0  # no hard wrapping: the UI wraps
    conv.ignore_images = True
    conv.ignore_emphasis = True
    conv.ignore_links = False
    conv.inline_links = True
    conv.protect_links = False
    conv.unicode_snob = True
    conv.single_line_break = False
    conv.mark_code = False
    try:
        text = conv.handle(html)
    except _OutputFull:
        text = conv.written()
        if notes is not None:
            notes.add("html-output", f"text of the HTML cut at {_kb(MAX_CONVERTED_CHARS)} (its quotes nest so "
                      "deep that each line repeats their marks)")
    except BudgetExceeded:
        raise
    except Exception:  # html2text is robust, but a crash must not lose the mail
        log.warning("html2text failed; falling back to tag stripping", exc_info=True)
        text = htmlshape.to_text(html)
    # html2text renders &nbsp; as U+00A0 and leaves runs of blank lines from empty Outlook paragraphs.
    text = text.replace("\u00a0", " ")
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n")


def _readable(html: str) -> str:
    """The HTML a text is made from: the sanitised HTML, not the raw, so that a link the sanitiser drops
    (``javascript:``, ``vbscript:``, ``data:``) never comes back as a link in the description. HTML too long
    to sanitise is over the conversion budget too, and the linear tag stripper writes no links at all."""
    return sanitize_html(html) if len(html) <= MAX_SANITIZED_CHARS else html


class _HtmlBudget:
    """How much of a mail's HTML the pure-Python HTML stages may still read: MAX_HTML_CONVERT_CHARS for the
    whole mail, whatever its number of HTML parts, for each pass (its text, its quote cutting, the text of
    the reply). Past it, HTML becomes text through the linear tag stripper, and its quotes are not cut."""

    def __init__(self, notes: _Simplified, deadline: Deadline | None) -> None:
        self.left = {"text": MAX_HTML_CONVERT_CHARS, "quotes": MAX_HTML_CONVERT_CHARS,
                     "reply": MAX_HTML_CONVERT_CHARS}
        self.notes = notes
        self.deadline = deadline

    def _take(self, stage: str, html: str) -> bool:
        check(self.deadline, "converting HTML to text")
        if len(html) > self.left[stage]:
            self.left[stage] = 0
            return False
        self.left[stage] -= len(html)
        return True

    def text(self, html: str, stage: str = "text") -> str:
        """The text of ``html``, which is sanitised already (_readable) when it is to be converted."""
        if self._take(stage, html):
            return html_to_text(html, deadline=self.deadline, notes=self.notes)
        self.notes.add("html-convert", f"HTML over {_kb(MAX_HTML_CONVERT_CHARS)}: turned into text without "
                       "layout (no links, tables or quote marks)")
        return htmlshape.to_text(html)

    def cut_quotes(self, html: str, forwarded: bool) -> str | None:
        """The HTML without the history its quote containers hold (quoting.cut_html_quotes); None when
        nothing was cut, or the HTML is over the budget (then its text is cut as plain text only)."""
        if not self._take("quotes", html):
            self.notes.add("html-quotes", f"HTML over {_kb(MAX_HTML_CONVERT_CHARS)}: quoted history is looked for "
                           "in its text only")
            return None
        whole = htmlshape.terminated(html)
        cut = quoting.cut_html_quotes(whole, forwarded=forwarded)
        return None if cut == whole else cut


# CSS properties that cannot load anything (no url() values) and cannot overlay the UI.
_SAFE_CSS = frozenset({
    "color", "background-color", "font", "font-family", "font-size", "font-style", "font-weight",
    "text-align", "text-decoration", "text-indent", "text-transform", "line-height", "letter-spacing",
    "white-space", "vertical-align", "margin", "margin-left", "margin-right", "margin-top", "margin-bottom",
    "padding", "padding-left", "padding-right", "padding-top", "padding-bottom", "border", "border-left",
    "border-right", "border-top", "border-bottom", "border-color", "border-style", "border-width",
    "border-collapse", "width", "max-width", "height", "list-style-type", "direction",
})

_HTML_TAGS = set(nh3.ALLOWED_TAGS) | {"font"}
_HTML_ATTRIBUTES: dict[str, set[str]] = {
    "*": {"style", "title", "dir", "lang", "align"},
    "a": {"href", "name"},
    "img": {"src", "alt", "width", "height"},
    "font": {"color", "face", "size"},
    "td": {"colspan", "rowspan", "valign", "width"},
    "th": {"colspan", "rowspan", "valign", "width"},
    "table": {"border", "cellpadding", "cellspacing", "width"},
    "ol": {"start", "type"},
    "li": {"value"},
    "blockquote": {"cite", "type"},
}
_INLINE_IMAGE_SRC = re.compile(r"^\s*(cid:|data:image/(png|gif|jpe?g|webp|bmp);)", re.IGNORECASE)


# nh3 filters CSS property names, not values: a value that loads or runs something goes, and so does any
# backslash, since a CSS escape could spell one of these out (u\72l).
_CSS_ACTIVE = re.compile(r"url\s*\(|expression\s*\(|image-set\s*\(|@import|javascript:|\\", re.IGNORECASE)


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    if attr == "style":
        kept = [d.strip() for d in value.split(";") if d.strip() and not _CSS_ACTIVE.search(d)]
        return "; ".join(kept) or None
    if tag == "img" and attr == "src":
        # Remote images are tracking beacons: only images carried in the mail itself may load.
        return value if _INLINE_IMAGE_SRC.match(value) else None
    if attr in ("href", "cite") and value.strip().lower().startswith("data:"):
        return None
    return value


def sanitize_html(html: str) -> str:
    """Sanitise mail HTML for display: no scripts/styles/handlers, no javascript:, no remote images."""
    try:
        return nh3.clean(
            html,
            tags=_HTML_TAGS,
            clean_content_tags={"script", "style", "title", "head", "noscript", "template", "xml"},
            attributes=_HTML_ATTRIBUTES,
            attribute_filter=_attribute_filter,
            url_schemes=set(nh3.ALLOWED_URL_SCHEMES) | {"cid", "data"},
            filter_style_properties=set(_SAFE_CSS),
            link_rel="noopener noreferrer nofollow",
            strip_comments=True,
        )
    except Exception:  # nh3 should not fail; if it does, showing nothing is the safe choice
        log.warning("nh3 failed to sanitise HTML", exc_info=True)
        return ""


# --------------------------------------------------------------------------------------------------------
# The MIME walk


# Detached signature parts (RFC 1847 multipart/signed): the kind of signature, and the name clients give the
# part when the sender's client gave none.
_SIGNATURE_TYPES: dict[str, tuple[str, str]] = {
    "application/pgp-signature": ("openpgp", "signature.asc"),
    "application/pkcs7-signature": ("smime", "smime.p7s"),
    "application/x-pkcs7-signature": ("smime", "smime.p7s"),
}
_REPORT_TYPES = frozenset({
    "message/delivery-status", "message/global-delivery-status", "message/disposition-notification",
    "message/global-disposition-notification", "message/feedback-report",
})
_TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})


@dataclass
class _Body:
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    # The body parts in reading order, one alternative chosen per multipart/alternative: ("plain" | "html",
    # content). A multipart/mixed mail may say part of its text in plain text and part in HTML (Apple Mail
    # around inline images, a list server's HTML footer, an HTML signature part); all of it is the body.
    sequence: list[tuple[str, str]] = field(default_factory=list)

    def has_plain(self) -> bool:
        return any(p and not p.isspace() for p in self.plain)

    def has_html(self) -> bool:
        return any(htmlshape.has_text(h) for h in self.html)


class _Tracker:
    """One parse's count of MIME parts, shared by every :class:`_Part` the feed parser makes."""

    def __init__(self) -> None:
        self.parts = 0  # parts attached below the root so far
        self.too_deep = 0  # parts past MAX_MIME_DEPTH
        self.base_depth = 0  # depth of a root (a re-read part sits where it was)
        # Parts whose body _read_tree gathered as bytes (weakly: a part refers to its tracker, and a cycle
        # would keep a tree of 25 MB until the garbage collector runs).
        self.gathered: list[weakref.ref[_Part]] = []

    def gathered_parts(self) -> list[_Part]:
        return [part for part in (ref() for ref in self.gathered) if part is not None]


class _Part(Message):
    """A message (part) that knows how deep it sits, and past the bounds reads as one opaque body.

    The feed parser attaches each new part to its parent before it reads the part's headers, and decides
    from ``get_content_type()`` whether to descend into it. A part past MAX_MIME_DEPTH, or after the first
    MAX_MIME_PARTS parts, answers "application/octet-stream" there: the parser then takes everything up
    to its parent's next boundary as its body, without a generator and a boundary check per level.
    ``bound`` says which bound it passed; :meth:`declared_type` is what the part really says it is.
    """

    def __init__(self, tracker: _Tracker, policy: email_policy.Compat32 = email_policy.compat32) -> None:
        super().__init__(policy=policy)
        self._tracker = tracker
        self.depth = tracker.base_depth
        self.bound: str | None = None  # "depth" | "parts" once past a bound
        # The body as sent, when it was gathered beside the parser (see _read_tree); the payload is "" then.
        self.raw_body: bytes | None = None
        self.typed = False  # the parser has read the header block and asked what the part is
        self._container: weakref.ref[_Part] | None = None  # the part this one is attached to (no cycle)

    def attach(self, payload: Message) -> None:  # type: ignore[override]
        if isinstance(payload, _Part):
            payload._container = weakref.ref(self)
            payload.depth = self.depth + 1
            self._tracker.parts += 1
            if payload.depth > MAX_MIME_DEPTH:
                payload.bound = "depth"
                self._tracker.too_deep += 1
            elif self._tracker.parts > MAX_MIME_PARTS:
                payload.bound = "parts"
        super().attach(payload)

    def get_content_type(self) -> str:
        self.typed = True  # the feed parser asks first right after the header block
        if self.bound is not None:
            return "application/octet-stream"
        return super().get_content_type()

    def declared_type(self) -> str:
        return super().get_content_type()

    @property
    def container(self) -> _Part | None:
        """The part this one is attached to."""
        return self._container() if self._container is not None else None


def _bounded_parser(tracker: _Tracker) -> BytesFeedParser:
    def factory(policy: email_policy.Compat32 = email_policy.compat32) -> _Part:
        return _Part(tracker, policy)

    return BytesFeedParser(_factory=factory, policy=email_policy.compat32)


# A parameter line ("boundary=...", " charset=utf-8") and a header line ("Content-Transfer-Encoding: 7bit").
_PARAMETER_LINE = re.compile(r"[ \t]*[A-Za-z][\w.-]{0,60}\*?\d{0,3}\*?[ \t]*=")
_HEADER_LINE = re.compile(r"[!-9;-~]{1,76}:")


def _refolded(part: Message, tracker: _Tracker) -> Message | None:
    """A part whose header went on after a line break without the white space that folding needs.

    Some gateways write ``Content-Type: multipart/alternative;`` and then ``boundary="..."`` at the start of
    the next line. The stdlib ends the header block there and takes the rest (its other headers included)
    for the body, so the part loses its boundary and its text. Mail clients read the parameter line as a
    continuation; so does this, re-reading the part with those lines folded back in. None when the part is
    not that case.
    """
    payload = _stored_payload(part)
    if not isinstance(payload, str) or not any(
            isinstance(d, errors.MissingHeaderBodySeparatorDefect) for d in getattr(part, "defects", [])):
        return None
    lines = payload.split("\n", 40)
    if not lines or not _PARAMETER_LINE.match(lines[0]):
        return None
    count = 0
    while count < min(len(lines) - 1, 30) and lines[count].strip() and (
            _PARAMETER_LINE.match(lines[count]) or _HEADER_LINE.match(lines[count])):
        count += 1
    head = []
    for name, value in part.raw_items():
        head.append(f"{name}: {value}".rstrip("\r\n"))
    for line in lines[:count]:
        line = line.rstrip("\r")
        head.append(line if _HEADER_LINE.match(line) else " " + line.strip())
    rest = "\n".join(lines[count:])
    # Read with the same bounds, where the part was: what its body holds may nest as deep as anything.
    tracker.base_depth = getattr(part, "depth", 0)
    parser = _bounded_parser(tracker)
    try:
        parser.feed(("\n".join(head) + "\n" + rest).encode("utf-8", "surrogateescape"))
        return parser.close()
    except Exception:  # leave the part as the stdlib read it
        log.debug("re-reading a part with broken folding failed", exc_info=True)
        return None


class _Generator(BytesGenerator):
    """The stdlib's generator, writing a body gathered as bytes (see _read_tree) as it writes a payload:
    every line break as the generator's own.

    It writes a mark in its place: the generator copies each nested message's text into the one around it
    (twice a level), so a long body is put in once, at the mark, when the rest is written (:meth:`splice`).
    """

    MARK = b"\x00gathered-body-" + secrets.token_hex(16).encode() + b"\x00"
    marking = True

    def _handle_text(self, msg: Message) -> None:
        raw = getattr(msg, "raw_body", None)
        if raw is None:
            super()._handle_text(msg)  # type: ignore[misc]
        elif self.marking:
            self._fp.write(self.MARK)  # type: ignore[attr-defined]
        else:
            self.write_body(self._fp, raw, self._NL.encode("ascii"))  # type: ignore[attr-defined]

    _writeBody = _handle_text

    @staticmethod
    def write_body(out: BinaryIO, raw: bytes, newline: bytes) -> None:
        start = 0
        while start < len(raw):  # in slices that end at a line feed: no "\r\n" is split
            end = raw.find(b"\n", start + _CHUNK)
            end = len(raw) if end < 0 else end + 1
            piece = raw[start:end]
            if newline == b"\n":  # the same as the pattern, without a bytes object per line
                out.write(piece.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))
            else:
                out.write(_LINE_BREAK.sub(newline, piece))
            start = end

    @classmethod
    def flatten_message(cls, inner: Message, gathered: list[_Part]) -> bytes:
        """``inner`` as BytesGenerator(mangle_from_=False, policy=compat32) writes it."""
        buf = BytesIO()
        cls(buf, mangle_from_=False, policy=email_policy.compat32).flatten(inner)
        data = buf.getvalue()
        if cls.MARK not in data:
            return data
        bodies = [part.raw_body for part in gathered if part.raw_body is not None]
        if len(bodies) != 1 or data.count(cls.MARK) != 1:  # never, short of a mail holding the mark
            buf = BytesIO()
            _DirectGenerator(buf, mangle_from_=False, policy=email_policy.compat32).flatten(inner)
            return buf.getvalue()
        before, after = data.split(cls.MARK)
        out = BytesIO()
        out.write(before)
        cls.write_body(out, bodies[0], b"\n")  # compat32's line separator, as flatten used it
        del bodies
        out.write(after)
        return out.getvalue()


class _DirectGenerator(_Generator):
    marking = False


_LINE_BREAK = re.compile(rb"\r\n|\r|\n")  # email.generator.NLCRE, for bytes


class _Walker:
    def __init__(self, tracker: _Tracker, notes: _Simplified, hints: Sequence[str] = (),
                 deadline: Deadline | None = None) -> None:
        self.hints = hints  # the message's charsets for undeclared 8-bit text
        self.attachments: list[Attachment] = []
        self.defects: list[str] = []
        self.content_types: list[str] = []
        self.signed: list[str] = []  # kinds of detached signature parts met, in tree order
        self._taken: set[str] = set()
        self._tracker = tracker
        self._notes = notes
        self._deadline = deadline
        self._parts = 0
        self.release = False  # see _release

    def walk(self, part: Message, depth: int = 0) -> _Body:
        check(self._deadline, "reading the MIME parts")
        self._parts += 1
        bound = getattr(part, "bound", None)
        if bound == "parts" or self._parts > MAX_MIME_PARTS + 1:  # the root and MAX_MIME_PARTS below it
            self._notes.add("mime-parts", f"more than {MAX_MIME_PARTS:,} MIME parts: only the first "
                            f"{MAX_MIME_PARTS:,} were read; the rest are in the raw mail")
            return _Body()
        if bound == "depth" and isinstance(part, _Part):
            self._add_opaque(part)
            return _Body()
        refolded = _refolded(part, self._tracker)
        if refolded is not None:
            self.defects.append(f"{part.get_content_type()}: header continued without folding white space; "
                                "read as a continuation")
            part = refolded
            if getattr(part, "bound", None) is not None:
                return self.walk(part, depth)
        ctype = part.get_content_type()
        self.content_types.append(ctype)
        self.defects.extend(f"{ctype}: {d.__class__.__name__}" for d in getattr(part, "defects", []))
        if ctype == "message/rfc822" or (ctype.startswith("message/") and ctype in ("message/global",)):
            self._add_embedded_message(part)
            return _Body()
        if ctype in _REPORT_TYPES or ctype == "text/rfc822-headers":
            # Machine-readable report parts (DSN, MDN, ARF) are structure for automail, not files.
            return _Body()
        if part.is_multipart():
            children = [p for p in (part.get_payload() or []) if isinstance(p, Message)]
            if ctype == "multipart/alternative":
                return self._alternative(children, depth)
            body = _Body()
            for child in children:
                sub = self.walk(child, depth + 1)
                body.plain.extend(sub.plain)
                body.html.extend(sub.html)
                body.sequence.extend(sub.sequence)
            return body
        return self._leaf(part, ctype)

    def _add_opaque(self, part: _Part) -> None:
        """A part past MAX_MIME_DEPTH, kept whole (its headers and everything nested in it) as a .eml."""
        declared = part.declared_type()
        self.content_types.append(declared)
        self._notes.add("mime-depth", f"MIME nesting deeper than {MAX_MIME_DEPTH} levels: the {declared} part "
                        f"at level {part.depth} is kept whole as an attachment")
        raw = part.raw_body
        if raw is not None:  # gathered as bytes (see _read_tree)
            eol = "\n" if b"\r\n" not in raw[:4096] and b"\n" in raw[:4096] else "\r\n"
            head = "".join(f"{name}: {value}{eol}" for name, value in part.raw_items())
            data = (head + eol).encode("utf-8", "surrogateescape") + raw
            del raw
            self._release(part)
            part.raw_body = None
        else:
            payload = _stored_payload(part)
            body = payload if isinstance(payload, str) else ""
            eol = "\n" if "\r\n" not in body[:4096] and "\n" in body[:4096] else "\r\n"
            head = "".join(f"{name}: {value}{eol}" for name, value in part.raw_items())
            buf = bytearray((head + eol).encode("utf-8", "surrogateescape"))
            for start in range(0, len(body), _CHUNK * 16):  # in slices: the body is not held a third time
                buf += body[start:start + _CHUNK * 16].encode("utf-8", "surrogateescape")
            del body, payload
            self._release(part)
            data = bytes(buf)
            del buf
        name = _filename(part, self.defects, self.hints) or f"nested-{declared.replace('/', '-')}"
        if not name.lower().endswith(".eml"):
            name += ".eml"
        self._add(name, "message/rfc822", data)

    def _alternative(self, children: list[Message], depth: int) -> _Body:
        # Parts are ordered by increasing preference; take the plain text and the HTML from the best
        # alternative that has each, but collect attachments (inline images) from all of them.
        results = [self.walk(child, depth + 1) for child in children]
        body = _Body()
        for sub in results:
            if sub.has_plain():
                body.plain = sub.plain
            if sub.has_html():
                body.html = sub.html
        # The text reads from the best alternative with plain text, else from the best with HTML.
        chosen = [sub for sub in results if sub.has_plain()] or [sub for sub in results if sub.has_html()]
        if chosen:
            body.sequence = chosen[-1].sequence
        return body

    def _leaf(self, part: Message, ctype: str) -> _Body:
        disposition = (part.get_content_disposition() or "").lower()
        filename = _filename(part, self.defects, self.hints)
        signature = _SIGNATURE_TYPES.get(ctype)
        if signature is not None:
            # Kept as an attachment, as Zammad and mail clients list it: whoever checks the signature later
            # needs the part byte for byte, and dropping it silently hid that the mail was signed at all.
            if signature[0] not in self.signed:
                self.signed.append(signature[0])
            filename = filename or signature[1]
        if ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename:
            # Plain text is only ever used without the line breaks at its ends (see parse_message).
            text = _part_text(part, self.defects, self.hints, strip=ctype == "text/plain", release=self._release)
            if ctype == "text/plain":
                return _Body(plain=[text], sequence=[("plain", text)])
            text = self._bounded_html(text)
            return _Body(html=[text], sequence=[("html", text)])
        data = _payload_bytes(part, self.defects)
        self._release(part)
        if (ctype in _TNEF_TYPES or filename.lower() == "winmail.dat") and self._add_tnef(data):
            return _Body()
        cid = part.get("content-id")
        content_id = None
        if isinstance(cid, str) and cid.strip():
            content_id = _clean_line(cid).strip("<>") or None
        inline = disposition == "inline" or (disposition == "" and content_id is not None)
        if not filename:
            ext = mimetypes.guess_extension(ctype, strict=False) or ".bin"
            filename = ("image" if ctype.startswith("image/") else "attachment") + ext
        self._add(filename, ctype, data, content_id, (inline and content_id is not None) or
                  (inline and ctype.startswith("image/")))
        return _Body()

    def _release(self, part: Message) -> None:
        """Let go of a part's body once it is read, when nothing needs the tree afterwards (large mail): a
        25 MB body is otherwise held twice, as sent and as read."""
        if self.release:
            part.set_payload("")
            if isinstance(part, _Part):
                part.raw_body = None

    def _bounded_html(self, markup: str) -> str:
        """An HTML body part with its nesting bounded (MAX_HTML_DEPTH), for every later stage."""
        bounded = htmlshape.bound_depth(markup, MAX_HTML_DEPTH)
        if bounded.dropped:
            self._notes.add("html-depth", f"HTML nested {bounded.depth:,} elements deep: the "
                            f"{bounded.dropped:,} elements below level {MAX_HTML_DEPTH} were flattened (their text "
                            "kept)")
        return bounded.html

    def _add(self, filename: str, ctype: str, data: bytes, content_id: str | None = None,
             inline: bool = False) -> None:
        self.attachments.append(Attachment(
            filename=display_text(_clip_name(filename)),
            safe_name=_unique(safe_name(filename, ctype), self._taken),
            content_type=ctype[:MAX_NAME_CHARS],
            data=data,
            content_id=_clip_name(content_id) if content_id else None,
            inline=inline,
        ))

    def _add_embedded_message(self, part: Message) -> None:
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else None
        if isinstance(inner, Message):
            try:
                data = _Generator.flatten_message(inner, self._tracker.gathered_parts())
            except Exception as exc:
                self.defects.append(f"message/rfc822: cannot serialise ({exc.__class__.__name__})")
                data = b""
            subject = _clean_line(decode_header_value(inner.get("subject"), self.defects, self.hints))
            if self.release:
                part.set_payload("")
        else:
            data = _payload_bytes(part, self.defects)
            self._release(part)
            subject = ""
        filename = _filename(part, self.defects, self.hints)
        if not filename:
            filename = (subject[:100] or "message") + ".eml"
        elif not filename.lower().endswith((".eml", ".msg")):
            filename += ".eml"
        self._add(filename, "message/rfc822", data)

    def _add_tnef(self, data: bytes) -> bool:
        """Unpack an Outlook TNEF container into its real files; False leaves winmail.dat as it is."""
        try:
            from tnefparse import TNEF

            tnef = TNEF(data, do_checksum=False)
        except Exception as exc:
            self.defects.append(f"winmail.dat: not unpacked ({exc.__class__.__name__})")
            return False
        files = []
        for att in getattr(tnef, "attachments", []) or []:
            try:
                raw_name = att.long_filename() or att.name or ""
            except Exception:
                raw_name = getattr(att, "name", "") or ""
            if isinstance(raw_name, bytes):
                raw_name = decode_bytes(raw_name, None, None, "", self.hints)
            name = _exact_name(str(raw_name).rstrip("\x00"))
            payload = getattr(att, "data", b"") or b""
            if not isinstance(payload, bytes):
                continue
            files.append((name or "attachment.bin", payload))
        if not files:
            return False
        for name, payload in files:
            ctype = mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
            self._add(name, ctype, payload)
        return True


# --------------------------------------------------------------------------------------------------------
# Entry point


_CHUNK = 1 << 16
_FLUFL_MAX_BYTES = 2 * 1024 * 1024


# A line the stdlib parser takes as part of a header block (feedparser.headerRE): a field, a continuation,
# or the mbox "From " line. Anything else ends the block there, in the parser and so in the filter below.
_HEADER_LINE_BYTES = re.compile(rb"(From |[\041-\071\073-\176]*:|[\t ])")
# Fields kept whatever the count (each at most MAX_HEADER_CHARS, at most _VITAL_REPEATS of each name): what
# the mail is filed, threaded and parsed by.
_VITAL = frozenset({b"from", b"to", b"cc", b"reply-to", b"subject", b"date", b"message-id", b"in-reply-to",
                    b"references", b"content-type", b"content-transfer-encoding", b"content-disposition",
                    b"mime-version", b"auto-submitted", b"return-path"})
_VITAL_REPEATS = 8


class _Feed:
    """What the stdlib parser is fed: the mail as read, with two bounds applied on the way.

    * The top-level header block keeps MAX_HEADER_FIELDS fields (and the vital ones wherever they stand),
      each at most MAX_HEADER_CHARS: the parser holds every header line as an object (~70 bytes each), so a
      25 MB flood of fields or encoded words took 300 MB; the header is also what the mail is filed by.
    * No line is longer than MAX_LINE_BYTES: a line break and a space are put in (folding, in a header; in a
      body, white space that base64 ignores and text shows as a break). The parser gathers a line in a
      buffer of four bytes per character: a 25 MB line took 100 MB.

    The raw mail stays as it was sent; the notes say what the parse did not see.
    """

    def __init__(self, notes: _Simplified) -> None:
        self.notes = notes
        self.in_header = True
        self.line = bytearray()  # the header line being read (at most MAX_HEADER_CHARS of it)
        self.line_cut = False  # the header line went on past MAX_HEADER_CHARS
        self.field: list[bytes] = []  # the header field being read: its lines
        self.field_size = 0
        self.field_cut = False
        self.kept = 0  # header fields passed on (not counting vital ones)
        self.fields = 0  # header fields seen
        self.vital: dict[bytes, int] = {}
        self.run = 0  # length of the body line being passed on
        # Where in the bytes the last call returned the body starts (at the line that ended the header
        # block), when the header block ended in that call.
        self.body_at: int | None = None

    def __call__(self, chunk: bytes) -> bytes:
        if self.in_header:
            out, rest = self._header(chunk)
            if not self.in_header:
                self.body_at = len(out)
            return out + self._wrap(rest) if rest else out
        return self._wrap(chunk)

    def close(self) -> bytes:
        """What is still held when the mail ends inside its header block."""
        if not self.in_header:
            return b""
        if self.line:
            self._add_line(bytes(self.line))
        self.line.clear()
        return self._flush()

    # -- the header block

    def _header(self, chunk: bytes) -> tuple[bytes, bytes]:
        out: list[bytes] = []
        pos = 0
        n = len(chunk)
        while pos < n:
            nl = chunk.find(b"\n", pos)
            end = n if nl < 0 else nl + 1
            room = MAX_HEADER_CHARS - len(self.line)
            if end - pos > room:
                self.line += chunk[pos:pos + max(room, 0)]
                self.line_cut = True
            else:
                self.line += chunk[pos:end]
            pos = end
            if nl < 0:
                break
            line = bytes(self.line)
            self.line.clear()
            if self.line_cut:
                line = line.rstrip(b"\r\n") + b"\r\n"
            if line.strip(b"\r\n") == b"" or not _HEADER_LINE_BYTES.match(line):
                out.append(self._flush())  # the header block ends here, as the parser will see it
                self.in_header = False
                self._end_notes()
                return b"".join(out), line + chunk[pos:]
            out.append(self._add_line(line))
        return b"".join(out), b""

    def _add_line(self, line: bytes) -> bytes:
        cut, self.line_cut = self.line_cut, False
        if line[:1] in (b" ", b"\t") and self.field:
            if self.field_size + len(line) > MAX_HEADER_CHARS:
                self.field_cut = True
            else:
                self.field.append(line)
                self.field_size += len(line)
            self.field_cut = self.field_cut or cut
            return b""
        out = self._flush()
        self.field = [line]
        self.field_size = len(line)
        self.field_cut = cut
        return out

    def _flush(self) -> bytes:
        if not self.field:
            return b""
        field, self.field = self.field, []
        self.fields += 1
        name = field[0].split(b":", 1)[0].strip().lower()
        if name in _VITAL and self.vital.get(name, 0) < _VITAL_REPEATS:
            self.vital[name] = self.vital.get(name, 0) + 1
        elif self.kept < MAX_HEADER_FIELDS:
            self.kept += 1
        else:
            return b""
        if self.field_cut:
            label = name.decode("ascii", "replace").title()
            self.notes.add(f"header-{label.lower()}", f"{label}: a header longer than {_kb(MAX_HEADER_CHARS)}; "
                           f"only its first {_kb(MAX_HEADER_CHARS)} read")
        return b"".join(field)

    def _end_notes(self) -> None:
        passed = self.kept + sum(self.vital.values())
        if self.fields > passed:
            self.notes.add("header-fields", f"{self.fields:,} header fields: only {passed:,} were read (the first "
                           f"{MAX_HEADER_FIELDS:,}, and the sender, recipients, subject and threading fields "
                           "wherever they stand)")

    # -- long lines

    def _wrap(self, chunk: bytes) -> bytes:
        # The usual cases: no line in this chunk reaches the bound (the chunk is shorter than the bound, so
        # only the line it continues can).
        first = chunk.find(b"\n")
        if len(chunk) <= MAX_LINE_BYTES and self.run + (len(chunk) if first < 0 else first) <= MAX_LINE_BYTES:
            self.run = self.run + len(chunk) if first < 0 else len(chunk) - chunk.rfind(b"\n") - 1
            return chunk
        out: list[bytes] = []
        pos = 0
        n = len(chunk)
        while pos < n:
            nl = chunk.find(b"\n", pos)
            stop = n if nl < 0 else nl
            while self.run + (stop - pos) > MAX_LINE_BYTES:
                cut = pos + MAX_LINE_BYTES - self.run
                while cut > pos and chunk[cut] & 0xC0 == 0x80:  # not inside a UTF-8 character
                    cut -= 1
                out.append(chunk[pos:cut])
                out.append(b"\r\n ")
                self.notes.add("long-lines", f"lines longer than {_kb(MAX_LINE_BYTES)} were broken there (the raw "
                               "mail has them whole)")
                pos = cut
                self.run = 1
            if nl < 0:
                out.append(chunk[pos:])
                self.run += n - pos
                break
            out.append(chunk[pos:nl + 1])
            self.run = 0
            pos = nl + 1
        return b"".join(out)


def _header_only(head: bytes) -> Message:
    """The header block of a mail whose MIME structure could not be read (from its first bytes)."""
    try:
        return BytesHeaderParser(policy=email_policy.compat32).parsebytes(header_block(head))
    except Exception:
        log.warning("reading the header block alone failed", exc_info=True)
        return Message()


class _Gatherer:
    """The rest of the mail held as bytes for the part the feed parser is reading the body of, when nothing
    after it can end that body: the parser would hold it as one string per line (~50 bytes each besides the
    text, twice the text for 8-bit bytes, which it keeps as surrogate escapes) and then join them.

    Inside multipart parts, a line with the boundary of one of them ends the body: for a part past the
    bounds (read as one opaque body), the bytes are watched for anything that may be one (``--boundary`` at
    a line start, then nothing but ``-`` or white space), and handed back to the parser when it appears.
    Nothing is gathered inside message/delivery-status, where a blank line ends a part.
    """

    def __init__(self, part: _Part, boundaries: list[bytes]) -> None:
        self.part = part
        self.watch = re.compile(rb"(?:^|(?<=[\r\n]))--(?:" + b"|".join(re.escape(b) for b in boundaries)
                                + rb")(?![^-\s])") if boundaries else None
        self.keep = max(len(b) for b in boundaries) + 3 if boundaries else 0
        self.buffer = BytesIO()  # where nothing can end the body: the buffer becomes the body, not copied
        self.chunks: deque[bytes] = deque()  # where something can: handed back a chunk at a time if it does
        self.tail = b""  # the end of the bytes watched so far, where a boundary line may begin

    @staticmethod
    def watch_for(part: object) -> list[bytes] | None:
        """The boundaries that may end the body the parser is reading (``part``, the parser's current
        part), or None when its body is not to be gathered."""
        if not isinstance(part, _Part) or not part.typed or part.get_content_maintype() in ("multipart", "message"):
            return None
        if any(isinstance(d, errors.MissingHeaderBodySeparatorDefect) for d in part.defects):
            return None  # re-read by _refolded from the payload
        boundaries: list[bytes] = []
        node = part.container
        while node is not None:
            maintype = node.get_content_maintype()
            if maintype == "multipart":
                boundary = node.get_boundary()  # as the feed parser reads it
                if boundary is None:
                    return None
                try:
                    boundaries.append(boundary.encode("ascii", "surrogateescape"))
                except UnicodeEncodeError:  # a boundary decoded from RFC 2231 parameters: left to the parser
                    return None
            elif maintype != "message" or node.get_content_type() == "message/delivery-status":
                return None
            node = node.container
        if boundaries and part.bound is None:
            # An ordinary part inside a multipart ends at a boundary that comes: held here first, its body
            # would then be fed to the parser after all, and the memory of both kept. Only a part past the
            # bounds (an attacker's nesting) is worth watching.
            return None
        return boundaries

    def add(self, data: bytes) -> bool:
        """Hold ``data``; False when it may hold a line that ends the body (everything held is then to be
        fed to the parser after all: :attr:`chunks`)."""
        if self.watch is None:
            self.buffer.write(data)
            return True
        self.chunks.append(data)
        window = self.tail + data
        found = self.watch.search(window)
        if found is not None and found.start() < len(window) - self.keep:
            return False
        # A match in the last bytes may be only the start of a longer boundary: looked at again next time.
        self.tail = window[-(self.keep + 1):]
        return True

    def at_end(self) -> bool:
        """Whether the mail ended with nothing held that may end the body."""
        return self.watch is None or self.watch.search(self.tail) is None

    def last_line(self) -> bytes:
        """Inside a multipart, the last line gathered, taken back to be fed to the parser before it closes:
        the parser takes the line break before a boundary, or at the end, off the part's payload, and does
        so on what it read of it. (What it read ends at a line end, see _read_tree: no line is split.)"""
        if self.watch is None or not self.chunks:
            return b""
        last = self.chunks.pop()
        cut = last.rfind(b"\n", 0, len(last) - 1) + 1
        while cut == 0 and self.chunks:  # a last line longer than a chunk
            last = self.chunks.pop() + last
            cut = last.rfind(b"\n", 0, len(last) - 1) + 1
        if cut:
            self.chunks.append(last[:cut])
        self.line = last[cut:]
        return self.line

    line = b""

    def finish(self) -> None:
        """Give the part its body: what the parser read of it, the bytes gathered, and the last line as
        the parser left it."""
        part = self.part
        stored = _stored_payload(part)
        read = stored.encode("ascii", "surrogateescape") if isinstance(stored, str) else b""
        if self.watch is None:
            rest = self.buffer.getvalue()  # the buffer itself, not a copy
            part.raw_body = read + rest if read else rest
        else:
            # The payload is what the parser read before the gathering, then the last line, less its line
            # break (taken off by the nearest multipart around it, the part being the last one made): the
            # gathered bytes go between the two.
            kept = _NEWLINE_AT_END.sub(b"", self.line)
            cut = len(read) - len(kept)
            self.chunks.appendleft(read[:cut])
            self.chunks.append(read[cut:])
            part.raw_body = b"".join(self.chunks)
            self.chunks.clear()
        part.set_payload("")
        self.buffer = BytesIO()


_NEWLINE_AT_END = re.compile(rb"(\r\n|\r|\n)\Z")  # email.feedparser.NLCRE_eol, for bytes


def _read_tree(  # noqa: C901 (one read loop whose state is the parser's position; see _Gatherer)
        fp: Readable, defects: list[str], notes: _Simplified,
        deadline: Deadline | None) -> tuple[Message, int, _Tracker]:
    tracker = _Tracker()
    parser = _bounded_parser(tracker)
    feed = _Feed(notes)
    size = 0
    head = b""  # the mail's first bytes: its header block, should the parser fail
    gatherer: _Gatherer | None = None
    carry = b""  # the start of a line not yet fed: the parser is fed whole lines, so gathering starts at one

    def hand_back() -> None:
        nonlocal gatherer, carry
        assert gatherer is not None
        chunks = gatherer.chunks
        gatherer = None
        while len(chunks) > 1:
            parser.feed(chunks.popleft())
        last = chunks.pop() if chunks else b""
        split = last.rfind(b"\n") + 1
        parser.feed(last[:split])
        carry = last[split:]

    try:
        while True:
            check(deadline, "reading the mail")
            chunk = fp.read(_CHUNK)
            if not chunk:
                if gatherer is not None and not gatherer.at_end():
                    hand_back()
                if gatherer is None:
                    parser.feed(carry + feed.close())
                else:
                    parser.feed(gatherer.last_line())
                break
            if len(head) < HEADER_SCAN_BYTES:
                head += chunk[:HEADER_SCAN_BYTES - len(head)]
            size += len(chunk)
            data = feed(chunk)
            if gatherer is not None:
                if not gatherer.add(data):
                    hand_back()
                continue
            data, carry = carry + data, b""
            if feed.body_at is not None:  # the header block ended in this chunk: up to the line that ended it
                split = data.find(b"\n", feed.body_at) + 1 or len(data)
                feed.body_at = None
            else:
                split = data.rfind(b"\n") + 1
            parser.feed(data[:split])
            data = data[split:]
            # The parser's current part (FeedParser._cur): whose body it is reading, once past its header.
            current = getattr(parser, "_cur", None)
            boundaries = _Gatherer.watch_for(current)
            if boundaries is not None and isinstance(current, _Part):
                gatherer = _Gatherer(current, boundaries)
                if data and not gatherer.add(data):
                    hand_back()
            elif b"\n" in data:  # the rest of the header-ending chunk
                split = data.rfind(b"\n") + 1
                parser.feed(data[:split])
                carry = data[split:]
            else:
                carry = data
            if tracker.parts > MAX_MIME_PARTS:
                parser.feed(carry)
                break  # parts past the bound are not read (see _Walker.walk): the rest need not be parsed
    except BudgetExceeded:
        raise
    except Exception as exc:  # a stream error: parse what arrived
        defects.append(f"read error: {exc.__class__.__name__}: {exc}")
    try:
        msg = parser.close()
        if gatherer is not None:
            gatherer.finish()
            tracker.gathered.append(weakref.ref(gatherer.part))
        del gatherer
        return msg, size, tracker
    except Exception as exc:
        # The bounds keep the stdlib parser within its recursion limit; should anything else break it, the
        # mail still has its sender and subject.
        defects.append(f"parse error: {exc.__class__.__name__}: {exc}")
        notes.add("mime-error", f"the MIME structure could not be read ({exc.__class__.__name__}): only the "
                  "header was read; the body is in the raw mail")
        return _header_only(head), size, tracker


def _date(raw: str | None, defects: list[str]) -> datetime | None:
    if not raw:
        return None
    try:
        value = parsedate_to_datetime(_clean_line(raw))
    except Exception:
        defects.append(f"date: unparsable {raw[:60]!r}")
        return None
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _bounced(msg: Message) -> list[str]:
    # Never let flufl.bounce's heuristics break parsing.
    try:
        from flufl.bounce import scan_message

        found = scan_message(msg)
    except Exception:
        log.debug("flufl.bounce failed", exc_info=True)
        return []
    out = []
    for addr in found:
        text = addr.decode("utf-8", "replace") if isinstance(addr, bytes) else str(addr)
        out.append(text.strip("<> ").lower())
    return sorted(set(out))


_HINT_MAX_PARTS = 200
_HINT_BODY_BYTES = 1 << 16


def _charset_hints(msg: Message, deadline: Deadline | None) -> tuple[str, ...]:
    """The message's evidence for decoding its undeclared 8-bit text (see ``mailintake.charsets``): the
    charsets it declares anywhere, and the raw 8-bit bytes of its headers and of text parts without a
    charset, read as one. Bounded: the first parts, headers and the start of each body are plenty."""
    declared: list[str] = []
    undeclared: list[bytes] = []
    stack: list[tuple[Message, int]] = [(msg, 0)]
    seen = 0
    try:
        while stack and seen < _HINT_MAX_PARTS:
            check(deadline, "reading charset evidence")
            part, depth = stack.pop()
            seen += 1
            for _key, value in itertools.islice(part.raw_items(), MAX_HEADER_FIELDS):
                if not isinstance(value, str):
                    continue
                declared.extend(m.group(1).split("*", 1)[0] for m in _ENCODED_WORD.finditer(value))
                if _has_surrogates(value):
                    undeclared.append(_raw_bytes(value))
            payload = _stored_payload(part)
            if part.is_multipart() and isinstance(payload, list) and depth < MAX_MIME_DEPTH:
                stack.extend((p, depth + 1) for p in reversed(payload) if isinstance(p, Message))
            elif part.get_content_maintype() == "text":
                charset = _param(part, "charset", "content-type")
                if charset and charset.strip().lower() not in UNKNOWN_CHARSETS:
                    declared.append(charset)
                else:
                    undeclared.append(_payload_prefix(part, _HINT_BODY_BYTES))
        return message_hints(declared, undeclared)
    except BudgetExceeded:
        raise
    except Exception:  # evidence is a help; without it every piece is judged alone
        log.warning("charset evidence failed", exc_info=True)
        return ()


# Header fields parse_message reads wherever they stand in the header block, however many fields precede
# them (the first MAX_HEADER_FIELDS fields are also decoded into ParsedMessage.headers).
_INDEXED = frozenset({"from", "to", "cc", "reply-to", "delivered-to", "x-original-to", "subject", "date",
                      "message-id", "in-reply-to", "references", "authentication-results"})


def _index_headers(msg: Message, hints: Sequence[str], defects: list[str],
                   notes: _Simplified) -> tuple[dict[str, list[str]], dict[str, str]]:
    """One pass over the header block: the raw values of the fields in _INDEXED (each list at most
    MAX_HEADER_FIELDS long), and the first value of each of the first MAX_HEADER_FIELDS fields, decoded."""
    index: dict[str, list[str]] = {}
    headers: dict[str, str] = {}
    count = 0
    try:
        for key, value in msg.raw_items():
            count += 1
            k = str(key).strip().lower()
            raw = value if isinstance(value, str) else str(value)
            if k in _INDEXED:
                values = index.setdefault(k, [])
                if len(values) < MAX_HEADER_FIELDS:
                    values.append(raw)
            if count <= MAX_HEADER_FIELDS and k and k not in headers:
                headers[k] = decode_header_value(_bounded_value(raw, k, notes), None, hints).strip()
    except Exception:
        defects.append("headers: unreadable")
    if count > MAX_HEADER_FIELDS:
        notes.add("header-fields", f"{count:,} header fields: only the first {MAX_HEADER_FIELDS:,} were decoded "
                  "(sender, recipients, subject and threading fields are read wherever they stand)")
    return index, headers


def _cut_reply(text: str, forwarded: bool, notes: _Simplified) -> str:
    """quoting.cut_reply on the start of the text: a reply is written above its quotes or between them near
    the top."""
    if len(text) <= MAX_REPLY_SCAN_CHARS:
        return quoting.cut_reply(text, forwarded=forwarded)
    notes.add("reply-scan", f"text of {_kb(len(text))}: quoted history was looked for in its first "
              f"{_kb(MAX_REPLY_SCAN_CHARS)} only")
    head = text[:MAX_REPLY_SCAN_CHARS]
    reply = quoting.cut_reply(head, forwarded=forwarded)
    # A reply that runs to the end of what was scanned goes on past it: nothing below was seen to be quoted.
    tail, scanned = reply.rstrip()[-200:], head.rstrip()
    if tail and scanned.endswith(tail):
        if reply.rstrip() == scanned:
            return text  # nothing cut: the text itself, not a copy of it
        return reply.rstrip() + text[len(scanned):]
    return reply


# An attached forwarded message up to this size is parsed for its sender and text (the forward's description);
# a larger one only for its header block: the attachment keeps it whole either way.
FORWARD_PARSE_BYTES = 2 * 1024 * 1024


def _attached_forward(parsed: ParsedMessage, deadline: Deadline | None) -> Forwarded | None:
    """The one message/rfc822 attachment of a mail whose subject says it forwards (or that has no text of its
    own beside it), as the forwarded message; None for anything else."""
    embedded = [a for a in parsed.attachments if a.content_type == "message/rfc822"]
    if len(embedded) != 1 or not (quoting.is_forward_subject(parsed.subject) or not parsed.text.strip()):
        return None
    data = embedded[0].data
    if len(data) <= FORWARD_PARSE_BYTES:
        inner = parse_message(BytesIO(data), deadline, find_forwards=False)
        text = inner.text
    else:
        inner = parse_message(BytesIO(header_block(data) + b"\r\n\r\n"), deadline, find_forwards=False)
        text = "(the forwarded message is too long to show here: it is attached whole)"
    return forwards.attached(parsed.text, inner.sender, inner.subject, inner.headers.get("date", ""), text)


def _forwarded(parsed: ParsedMessage, deadline: Deadline | None) -> Forwarded | None:
    check(deadline, "looking for a forwarded message")
    return forwards.inline(parsed.text, parsed.subject) or _attached_forward(parsed, deadline)


def parse_message(  # noqa: C901 (the parse's stages in order, each a call; splitting it hides the order)
        fp: Readable, deadline: Deadline | None = None, *, find_forwards: bool = True) -> ParsedMessage:
    """Parse a raw RFC 5322 message from a binary stream (read incrementally, not copied whole).

    Never raises on bad input; problems are listed in ``defects``, and what a bound of
    :mod:`mailintake.bounds` simplified in ``simplified``. Raises :class:`BudgetExceeded` when ``deadline``
    passes (checked between steps, not inside a library's call). ``find_forwards``: look for a forwarded
    message in it (not inside an attached one: only the outermost forward counts).
    """
    defects: list[str] = []
    notes = _Simplified()
    msg, raw_size, tracker = _read_tree(fp, defects, notes, deadline)

    hints = _charset_hints(msg, deadline)
    index, headers = _index_headers(msg, hints, defects, notes)

    def header(name: str) -> str:
        values = index.get(name)
        return _bounded_value(values[0], name, notes) if values else ""

    subject = display_text(_clean_line(decode_header_value(header("subject"), defects, hints)))
    if len(subject) > MAX_SUBJECT_CHARS:
        notes.add("subject", f"subject of {len(subject):,} characters: cut to {MAX_SUBJECT_CHARS:,}")
        subject = subject[:MAX_SUBJECT_CHARS - 1] + "…"
    sender = _sender(index.get("from", []), defects, hints, notes)

    walker = _Walker(tracker, notes, hints, deadline)
    walker.release = raw_size > _FLUFL_MAX_BYTES  # the tree is kept for the bounce scan of small mail only
    try:
        body = walker.walk(msg)
    except BudgetExceeded:
        raise
    except Exception as exc:  # defensive: a bug in the walk must not lose the headers
        log.exception("MIME walk failed")
        defects.append(f"body: {exc.__class__.__name__}: {exc}")
        body = _Body()
    defects.extend(walker.defects)
    if walker.release:
        tracker.gathered.clear()  # read: their bodies go with the tree
    report_type = None
    if msg.get_content_type() == "multipart/report":
        report_type = (_param(msg, "report-type", "content-type") or "").strip().lower() or None
    tree: Message | None = msg if raw_size <= _FLUFL_MAX_BYTES else None
    # The tree holds every body as it was sent: past here only the bounce scan on small mail needs it.
    del msg
    if tracker.too_deep and "mime-depth" not in notes:
        # Inside a message/rfc822 part, kept whole as its .eml: what is deeper stays unparsed in there.
        notes.add("mime-depth", f"MIME nesting deeper than {MAX_MIME_DEPTH} levels: the parts below are kept "
                  "unparsed inside the attachment that holds them")

    html_source = "\n".join(h for h in body.html if h.strip()) or None
    check(deadline, "sanitising HTML")
    # Sanitised first: the text is made from the sanitised HTML (_readable), and the record keeps it.
    html = None
    if html_source is not None and len(html_source) <= MAX_SANITIZED_CHARS:
        html = sanitize_html(html_source)
    elif html_source is not None:
        notes.add("html", f"HTML of {_kb(len(html_source))} is too long to show (over {_kb(MAX_SANITIZED_CHARS)}):"
                  " shown as text; the HTML is in the raw mail")
    # A forward's quoted block is the forwarded message: content, not history to cut.
    forwarded = quoting.is_forward_subject(subject)
    sequence = [(kind, part) for kind, part in body.sequence
                if (part and not part.isspace() if kind == "plain" else htmlshape.has_text(part))]
    budget = _HtmlBudget(notes, deadline)
    if len({kind for kind, _ in sequence}) > 1:
        # Plain and HTML parts side by side in a multipart/mixed: each in its place, HTML as text.
        texts: list[str] = []
        replies: list[str] = []
        for kind, part in sequence:
            if kind == "plain":
                texts.append(part.strip("\n"))
                replies.append(part.strip("\n"))
                continue
            texts.append(budget.text(_readable(part)))
            cut = budget.cut_quotes(part, forwarded)
            replies.append(texts[-1] if cut is None else budget.text(_readable(cut), "reply"))
        text = "\n\n".join(texts)
        reply_text = _cut_reply("\n\n".join(replies), forwarded, notes)
    elif body.has_plain():
        plain = [p.strip("\n") for p in body.plain if p and not p.isspace()]  # stripped already: no copies
        body = _Body(html=body.html)  # the parts' text is held once, below
        sequence = []
        text = plain[0] if len(plain) == 1 else "\n\n".join(plain)
        del plain
        reply_text = _cut_reply(text, forwarded, notes)
    elif html_source is not None:
        text = budget.text(html if html is not None else html_source)
        cut = budget.cut_quotes(html_source, forwarded)
        reply_text = _cut_reply(text if cut is None else budget.text(_readable(cut), "reply"), forwarded, notes)
    else:
        text = reply_text = ""
    del body, sequence, html_source  # the parts' text, now in text and reply_text

    content_types = walker.content_types
    ids = _ids(header("message-id"))
    parsed = ParsedMessage(
        message_id=ids[0] if ids else None,
        subject=subject,
        sender=sender,
        to=_addresses(index.get("to", []), defects, hints, notes, "To"),
        cc=_addresses(index.get("cc", []), defects, hints, notes, "Cc"),
        reply_to=_addresses(index.get("reply-to", []), defects, hints, notes, "Reply-To"),
        date=_date(header("date"), defects),
        in_reply_to=_thread_ids(header("in-reply-to"), False, notes, "In-Reply-To"),
        references=_thread_ids(_bounded_value(" ".join(index.get("references", [])), "References", notes), True,
                               notes, "References"),
        text=text,
        html=html,
        reply_text=reply_text,
        attachments=walker.attachments,
        headers=headers,
        authentication_results=index.get("authentication-results", []),
        defects=defects,
        content_types=content_types,
        report_type=report_type,
        signed=tuple(walker.signed),
        simplified=notes.lines(),
        delivered_to=[a.email for a in _addresses(index.get("x-original-to", []) + index.get("delivered-to", []),
                                                  defects, hints, notes, "Delivered-To") if a.email],
    )
    if find_forwards:
        parsed.forwarded = _forwarded(parsed, deadline)
    # flufl.bounce's heuristics scan every text part: only where they could count (see automail), and
    # only on small mail (MTAs truncate the returned original; a large bounce still shows its structure).
    if tree is not None and automail.corroborated(parsed):
        check(deadline, "looking for bounced recipients")
        for gathered in tracker.gathered_parts():
            _materialize(gathered)  # flufl.bounce reads the payload as the parser stores it
        parsed.bounced_recipients = _bounced(tree)
    return parsed
