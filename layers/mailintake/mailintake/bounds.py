"""Bounds on the work one mail can cause, whatever its shape, and the per-mail deadline that backs them up.

Parsing is linear in a mail's size only if no shape of it (nesting, counts, lengths) multiplies the work
of a stage. Each bound below caps one such shape. Past a bound the mail still becomes an item: the part
that exceeded it is kept (as an attachment, as plain text, or in the raw mail, which is always kept), and
``ParsedMessage.simplified`` says what was simplified and why; it reaches the item or comment record, the
ledger's notes and ``mailintake item show``.

The values are far above what real mail does. Across the shared and the held-out corpora (849 mails from
four projects' test suites) the deepest MIME nesting is 6 levels, the most MIME parts 17, the most header
fields 82 and the longest header value 1.8 KB.

:class:`Deadline` is the backstop for what the bounds do not foresee: parsing checks it at the loop
boundaries of this package's own code (each input chunk, MIME part, header, attachment, and every few
hundred pieces of converted HTML). It cannot stop a single call into a library (nh3, the stdlib's feed
parser on one chunk, charset-normalizer), which is why every such call gets bounded input.
This module is pure: no AWS, no I/O.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# --- MIME structure -------------------------------------------------------------------------------------

# Levels of multipart and message/rfc822 nesting parsed as structure. The stdlib feed parser checks every
# line against each enclosing boundary and resumes a generator per level, so its cost per line grows with
# the depth (20,000 levels of a 1 MB mail: quadratic; ~1,000 levels: RecursionError, which lost the
# headers). A part deeper than this is read as one opaque body and kept whole as an attachment. 30 is five
# times the deepest real mail seen (a bounce of a forwarded mail: 6).
MAX_MIME_DEPTH = 30

# MIME parts (entities) read. Each is a Message object (~650 bytes), a walk step and perhaps an S3 write:
# 230,000 tiny parts fit in 25 MB. Parts after this many are not read; they stay in the raw mail, which the
# item names. Sixty times the most parts a real mail in the corpora has (17).
MAX_MIME_PARTS = 1000

# --- Headers --------------------------------------------------------------------------------------------

# Header fields of one part decoded into ParsedMessage.headers and read for charset evidence. Real mail has
# under 100 (Office 365 bounces: 82); a flood of them is kept in the raw mail.
MAX_HEADER_FIELDS = 1000

# Bytes of one line handed to the stdlib parser. It gathers a line in a buffer of four bytes per character
# (a 25 MB line: 100 MB); a longer line gets a line break and a space put in (header folding; in a body,
# white space base64 skips and text shows as a break). RFC 5322 allows 998; unwrapped HTML runs to
# hundreds of kilobytes, which stays whole.
MAX_LINE_BYTES = 1024 * 1024

# Characters of one header value that are decoded (encoded words, 8-bit text). Decoding is linear, but
# every consumer of a value (address lists, threading, the automail patterns) then works on it; 64 KB is
# over a thousand addresses in a To line, thirty-five times the longest real header seen.
MAX_HEADER_CHARS = 64 * 1024

# The subject, as the item's title and the ledger's subject. Trackers cut titles far shorter (255 or so);
# a thousand characters keeps any real subject whole and every pattern matched on it cheap.
MAX_SUBJECT_CHARS = 1000

# Addresses read from one address field (To, Cc, Reply-To). A new CC can become a user (a DynamoDB write)
# and every CC an editor or reader of the item (kept in the item record, 400 KB at most); a mail copied to
# more than this is a broadcast, not a conversation with each of them.
MAX_ADDRESSES = 100

# Message ids read from References (the root and the newest ones) and In-Reply-To: threading looks each
# up in DynamoDB until one is known, so a flood of ids would be a flood of queries. Mail clients cut
# References to about this many themselves.
MAX_REFERENCES = 20

# --- Bodies ---------------------------------------------------------------------------------------------

# Element nesting of HTML handed to the HTML parsers. html5ever (nh3) checks the stack of open elements
# at each tag, so deep nesting costs the square of its depth (300,000 unclosed <div>: ~240 s); html2text's
# quote prefixes grow with it too. Elements opened deeper are dropped (their text stays, block elements
# become line breaks). Browsers stop nesting at 512 (Blink); real mail, even long Outlook threads, stays
# well under 100.
MAX_HTML_DEPTH = 128

# Characters of HTML laid out as text by html2text (and cut for reply history by quoting's HTML stage).
# html2text is pure Python and costs ~2 s per MB; longer HTML (machine-made reports, not letters) is
# turned into text by a linear tag stripper instead, without links and list marks.
MAX_HTML_CONVERT_CHARS = 512 * 1024

# Characters of text html2text may write for one mail. It prefixes every line with "> " once per quote
# level, so quotes nested a hundred deep multiply the text two hundred times (1 MB of them made 2 GB);
# past this the conversion stops and what it wrote so far is the text.
MAX_CONVERTED_CHARS = 2 * 1024 * 1024

# Characters of HTML sanitised for display (nh3). html5ever builds the whole document in memory, and an
# attribute flood ("<a <a <a ...", one element) of 25 MB took over a gigabyte; real newsletters are far
# smaller (the largest in the corpora: 220 KB). Longer HTML is shown as text and stays in the raw mail.
MAX_SANITIZED_CHARS = 1024 * 1024

# Characters of text quoting.cut_reply reads. A reply is written above its quotes, or between them near the
# top; a megabyte keeps every real reply and bounds the lines the reply cutting holds to some 20,000. (How
# much of a long text a record holds is mailintake.bodies' business: the rest is kept beside it in S3.)
MAX_REPLY_SCAN_CHARS = 1024 * 1024

# Characters of a display name, a file name, a Content-ID or a content type kept in a record: the
# longest file name most file systems allow. Each attachment and person is a few such fields in the record.
MAX_NAME_CHARS = 255

# Characters of an e-mail address: RFC 5321's limit on a path. Anything longer is not an address.
MAX_ADDRESS_CHARS = 254

# Attachments stored as S3 objects of their own, each one PUT (~3.5 ms of CPU for signing and sending)
# and one entry in the record (at most ~2.5 KB, with MAX_NAME_CHARS). Further attachments go into one
# archive (more-attachments.zip). Real mail rarely has more than a dozen.
MAX_ATTACHMENTS = 50

# Threads writing one mail's attachments to S3 at once: the writes wait on the network, not the CPU.
# Few enough that a 512 MB function's memory and connection pool are not strained.
ATTACHMENT_WRITERS = 8

# --- Time -----------------------------------------------------------------------------------------------

# Seconds the process function keeps for itself after a mail's budget ran out: reading the header block
# and writing the ledger record, each with the clients' retries, and returning before Lambda's timeout.
DEADLINE_RESERVE_SECONDS = 15.0


class BudgetExceeded(Exception):
    """A mail's processing passed its deadline (raised by :meth:`Deadline.check`)."""

    def __init__(self, stage: str, budget: float, shortened: bool) -> None:
        super().__init__(f"processing budget exceeded ({budget:g} s) in {stage}")
        self.stage = stage
        self.budget = budget
        # The budget was cut short by the invocation's remaining time, not by the per-mail setting: the mail
        # may well fit its full budget in another invocation, so it is worth a retry.
        self.shortened = shortened


@dataclass
class Deadline:
    """When a mail's processing must stop; checked by :meth:`check` at loop boundaries."""

    at: float  # time.monotonic() value
    budget: float  # seconds this mail was given
    shortened: bool = False  # less than the per-mail setting, because the invocation ends sooner
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def after(cls, seconds: float, shortened: bool = False) -> Deadline:
        now = time.monotonic()
        return cls(now + seconds, seconds, shortened, now)

    def left(self) -> float:
        return self.at - time.monotonic()

    def check(self, stage: str) -> None:
        if time.monotonic() > self.at:
            raise BudgetExceeded(stage, self.budget, self.shortened)


def check(deadline: Deadline | None, stage: str) -> None:
    """``deadline.check(stage)`` when there is a deadline (parsing without one, as the tests do, never stops)."""
    if deadline is not None:
        deadline.check(stage)
