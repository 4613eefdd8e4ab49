"""The hand-over between the fetch and the process function: one intake-queue message per raw mail.

The message names the raw mail's S3 object. Small mails also travel inside it (base64), so processing a
plain mail needs no S3 read; S3 stays the durable copy, and what is inlined is checked against its hash.
Mails of one conversation share a FIFO message group, so an original is processed before its replies
even when both arrive in one poll, while unrelated mails are processed side by side.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32

# A batch of ten such bodies stays well under SQS's 256 KiB per request.
INLINE_MAX_BYTES = 12 * 1024

HEADER_SCAN_BYTES = 256 * 1024
_MESSAGE_ID = re.compile(r"<([^<>\s]+)>")


class InlineMismatch(ValueError):
    """The inlined mail is not the one stored (its hash differs)."""


@dataclass(frozen=True)
class QueuedMessage:
    bucket: str
    key: str
    mailbox: str
    sha256: str
    size: int
    raw: str | None = None  # base64 of the whole raw mail, when it is at most INLINE_MAX_BYTES
    # Epoch seconds the mail arrived on its server (IMAP INTERNALDATE), when the source tells: the start of
    # the arrival-to-item latency. Carried in the body, as the FIFO message's own time is the fetch's.
    arrived: float | None = None

    def to_json(self) -> str:
        data = {k: v for k, v in asdict(self).items() if v is not None}
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, body: str) -> QueuedMessage:
        data = json.loads(body)
        arrived = data.get("arrived")
        return cls(**{k: data[k] for k in ("bucket", "key", "mailbox", "sha256", "size")}, raw=data.get("raw"),
                   arrived=float(arrived) if arrived is not None else None)

    @classmethod
    def of(cls, bucket: str, key: str, mailbox: str, raw: bytes, arrived: float | None = None) -> QueuedMessage:
        inline = base64.b64encode(raw).decode("ascii") if len(raw) <= INLINE_MAX_BYTES else None
        return cls(bucket, key, mailbox, hashlib.sha256(raw).hexdigest(), len(raw), inline, arrived)

    def inline_bytes(self) -> bytes | None:
        if self.raw is None:
            return None
        data = base64.b64decode(self.raw)
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise InlineMismatch(f"inlined copy of {self.key} does not match its sha256")
        return data


def key_of(body: str) -> tuple[str, str]:
    """The raw mail's key and mailbox in a queue message body, "" where the body does not say (for the
    correlation id and the metrics of a mail that failed before it was read)."""
    try:
        data = json.loads(body)
    except ValueError:
        return "", ""
    if not isinstance(data, dict):
        return "", ""
    return str(data.get("key", "")), str(data.get("mailbox", ""))


def header_block(raw: bytes) -> bytes:
    """The header block at the start of ``raw`` (which may be just the mail's first bytes), without the
    blank line; at most HEADER_SCAN_BYTES."""
    ends = [e for e in (raw.find(b"\n\n", 0, HEADER_SCAN_BYTES), raw.find(b"\r\n\r\n", 0, HEADER_SCAN_BYTES))
            if e >= 0]
    return raw[: min(ends) if ends else HEADER_SCAN_BYTES]


def conversation_group(raw: bytes) -> str:
    """The FIFO message group of a raw mail: the first Message-ID of its thread.

    References lists the thread from its root; In-Reply-To names the parent; a new mail starts its own
    thread. Only the header block is parsed. A mail with none of them gets a group of its own.
    """
    # Only the header block: parsebytes would otherwise decode the whole mail into a string first.
    headers = BytesHeaderParser(policy=compat32).parsebytes(header_block(raw))
    for name in ("references", "in-reply-to", "message-id"):
        ids = _MESSAGE_ID.findall(str(headers.get(name, "")))
        if ids:
            return hashlib.sha256(ids[0].encode("utf-8", "replace")).hexdigest()[:64]
    return hashlib.sha256(raw[:HEADER_SCAN_BYTES]).hexdigest()[:64]
