"""Texts too large for a DynamoDB item, kept whole in S3 beside it.

DynamoDB refuses an item over 400 KB, counting every attribute, while a mail may be 25 MiB of text, or
text and HTML together, or a comment's reply text, full text and HTML. An item or comment keeps its texts
in the table as long as the whole record stays under ``BUDGET_BYTES``; a larger one keeps a preview of
each text (``PREVIEW_BYTES``; no HTML, a cut HTML document is not one) and ``body_key``, the key of one S3
object that holds the whole texts. Readers fetch it (``mailintake item show``). Small mails cost no S3
write, and the key is derived from the raw mail's key, so a retry writes the same object again.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any, BinaryIO

from mailintake.store import ITEM_LIMIT_BYTES, CommentRecord, ItemRecord, item_size

PREFIX = "bodies/"
# A text preview: enough to read what the mail is about and to search the table by, a sixth of the limit.
PREVIEW_BYTES = 64 * 1024
TITLE_PREVIEW_BYTES = 1000  # as much of a subject as the ledger keeps
# Below the limit by a margin for what the size estimate may miss (DynamoDB's rounding of numbers and
# lists), so that an item judged to fit does fit.
BUDGET_BYTES = ITEM_LIMIT_BYTES - 48 * 1024
FORMAT = 1

# The text attributes of each record, in the order they are moved out; a title only when it is itself large.
_TEXTS: dict[type, tuple[str, ...]] = {
    ItemRecord: ("description", "html"),
    CommentRecord: ("full_text", "text", "html"),
}


class StillTooLarge(Exception):
    """Even with its texts in S3 the record passes the limit (thousands of attachments or CC addresses):
    retrying cannot help."""


def key_for(source_key: str) -> str:
    """The S3 key of a raw mail's whole texts (one per raw mail: an item or a comment, never both)."""
    return f"{PREFIX}{hashlib.sha256(source_key.encode()).hexdigest()[:24]}.json"


def preview(text: str, limit: int = PREVIEW_BYTES) -> str:
    """The start of ``text``, at most ``limit`` UTF-8 bytes, cut at a character boundary."""
    if len(text) <= limit // 4 or (len(text) <= limit and text.isascii()):
        return text
    # Each character is at least one byte: the first ``limit`` of them are enough (a 25 MB text is not
    # encoded whole to keep 64 KB of it).
    data = text[:limit].encode("utf-8", "surrogatepass")
    if len(text) <= limit and len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


def shrink(record: ItemRecord | CommentRecord, key: str) -> dict[str, str] | None:
    """Make ``record`` fit DynamoDB's item limit, in place, its whole texts to be stored under ``key``;
    those texts, or None when it fits as it is (the usual case: nothing changes, nothing goes to S3).

    Raises StillTooLarge when the rest of the record alone passes the budget.
    """
    if item_size(record) <= BUDGET_BYTES:
        return None
    whole: dict[str, str] = {}
    for name in _TEXTS[type(record)]:
        value = getattr(record, name)
        if not value:
            continue
        if not (name == "text" and value == whole.get("full_text")):  # a reply that is all of the mail: once
            whole[name] = value
        setattr(record, name, None if name == "html" else preview(value))
    if isinstance(record, ItemRecord):  # comments have no title
        title = record.title
        if title and len(title.encode("utf-8", "surrogatepass")) > TITLE_PREVIEW_BYTES:
            whole["title"] = title
            record.title = preview(title, TITLE_PREVIEW_BYTES)
    record.body_key = key
    size = item_size(record)
    if size > BUDGET_BYTES:
        raise StillTooLarge(f"the record is {size} bytes even with its texts in S3 (limit {ITEM_LIMIT_BYTES})")
    return whole


def put(s3: Any, bucket: str, key: str, source_key: str, whole: dict[str, str]) -> None:
    """Store the whole texts under ``key`` (the same bytes on every retry)."""
    import tempfile  # here, not at import: only large mail comes this way

    # Spooled to /tmp and uploaded from there: built in memory, the JSON of 25 MB of text was a second copy
    # of it as a string and a third as UTF-8 (up to 3 bytes a character), beside the texts themselves.
    with tempfile.TemporaryFile() as spool:
        write_json(spool, source_key, whole)
        spool.seek(0)
        # Served as a download, never rendered: it holds the sender's (sanitised) HTML.
        s3.put_object(Bucket=bucket, Key=key, Body=spool, ContentType="application/json; charset=utf-8",
                      ContentDisposition="attachment")


_SLICE = 1 << 18  # characters escaped and encoded at a time


def write_json(out: BinaryIO, source_key: str, whole: dict[str, str]) -> None:
    """Write the object ``put`` stores to ``out``, a slice of each text at a time: byte for byte
    ``json.dumps({"format": FORMAT, "source_key": source_key, "texts": whole}, ensure_ascii=False)`` in
    UTF-8 (lone surrogates passed through), without that string or its encoding held whole."""
    dumps = functools.partial(json.dumps, ensure_ascii=False)
    out.write(f'{{"format": {dumps(FORMAT)}, "source_key": {dumps(source_key)}, "texts": {{'.encode(
        "utf-8", "surrogatepass"))
    for n, (name, text) in enumerate(whole.items()):
        out.write(f'{", " if n else ""}{dumps(name)}: "'.encode("utf-8", "surrogatepass"))
        for start in range(0, len(text), _SLICE):
            # JSON escapes character by character, so the slices' escapes joined are the whole's.
            out.write(dumps(text[start:start + _SLICE])[1:-1].encode("utf-8", "surrogatepass"))
        out.write(b'"')
    out.write(b"}}")


def load(s3: Any, bucket: str, key: str) -> dict[str, str]:
    """The whole texts stored under ``key``: attribute name -> value (a comment's ``text`` may be absent,
    meaning its ``full_text``)."""
    data = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8", "surrogatepass"))
    texts: dict[str, str] = data["texts"]
    return texts
