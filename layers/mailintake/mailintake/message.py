"""What a parsed mail is: plain data, with no parser behind it.

:mod:`mailintake.parsing` makes a :class:`ParsedMessage` from raw bytes; the intake rules
(:mod:`mailintake.intake`), the machine-mail classifier (:mod:`mailintake.automail`) and the replies read it.
Kept apart from the parser so that those readers need neither the parser's libraries nor an import of the
parser (which itself asks :mod:`mailintake.automail` whether a mail looks like a bounce).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Address:
    email: str  # lower-cased addr-spec, "" when missing
    name: str = ""


@dataclass
class Attachment:
    filename: str  # decoded name as the sender gave it, for display
    safe_name: str  # sanitised for use in a storage key: no path, no control chars, bounded length
    content_type: str
    data: bytes
    content_id: str | None = None  # without <>, for cid: links from the HTML body
    inline: bool = False

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class Forwarded:
    """A mail a person forwarded, as the forward shows it (:mod:`mailintake.forwards`): who wrote it first,
    and where the forwarder's own note ends. Nothing here is verified: the forwarder wrote it all, so the
    intake rules believe it only from people allowed to forward on someone's behalf."""

    sender: Address  # the original sender, a valid addr-spec
    subject: str  # the original subject ("" when the forward does not show one)
    date: str  # the original date as the forward writes it
    note: str  # the forwarder's own text above the forwarded message (may be "")
    kind: str  # "inline" (quoted in the body) or "attached" (a message/rfc822 part)
    client: str = ""  # how it was recognised: "forward marker", "original-message line", "header block"
    # The forwarded message's own text: only for an attached one (an inline one is in the body already).
    text: str = ""


@dataclass
class ParsedMessage:
    message_id: str | None  # without <>
    subject: str  # decoded, folded white space collapsed, trimmed
    sender: Address
    to: list[Address] = field(default_factory=list)
    cc: list[Address] = field(default_factory=list)
    reply_to: list[Address] = field(default_factory=list)
    date: datetime | None = None
    in_reply_to: list[str] = field(default_factory=list)  # message ids without <>
    references: list[str] = field(default_factory=list)
    text: str = ""  # the full body as plain text: the item description
    html: str | None = None  # sanitised HTML of the body, when the mail had an HTML part
    reply_text: str = ""  # the body with quoted history and signature cut: the comment text
    attachments: list[Attachment] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased name -> decoded value (first)
    # Every Authentication-Results value, top of the message first: which one counts depends on its place.
    authentication_results: list[str] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    # Signals for automail.classify(), computed while the MIME tree is at hand so that the tree itself
    # need not be kept alive (it holds a second copy of every attachment).
    content_types: list[str] = field(default_factory=list)  # every MIME part's type, in tree order
    report_type: str | None = None  # report-type of a top-level multipart/report, lower-cased
    bounced_recipients: list[str] = field(default_factory=list)  # failed recipients found by flufl.bounce
    # Kinds of detached signature the mail carries ("openpgp", "smime"); the signature parts themselves are
    # attachments. Recorded, not verified: nothing here says the signature is valid.
    signed: tuple[str, ...] = ()
    # What was simplified because the mail passed one of the bounds of mailintake.bounds, in words ("HTML
    # nested 20,000 elements deep: ..."); it reaches the item or comment record and the ledger. Empty for
    # ordinary mail.
    simplified: list[str] = field(default_factory=list)
    # The envelope recipients the receiving servers recorded (X-Original-To, then Delivered-To), lower-cased
    # addr-specs: where the mail was delivered, whatever To and Cc say.
    delivered_to: list[str] = field(default_factory=list)
    # A forwarded mail this one carries (inline or attached), when it carries one.
    forwarded: Forwarded | None = None

    @property
    def size_hint(self) -> int:
        return len(self.text) + sum(a.size for a in self.attachments)
