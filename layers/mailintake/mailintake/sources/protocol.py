"""What every mail source offers the fetch loop (IMAP, POP3 and Microsoft Graph).

The fetch loop (:class:`mailintake.fetching.Fetcher`) reads a mailbox through this interface only:

1. ``with source:`` the source is opened (connected, logged in, its cursor loaded from the
   :class:`~mailintake.sources.cursors.CursorStore` it was given);
2. ``pending()`` yields the mails not stored before, oldest first, each as a :class:`Pending`;
3. ``download(item)`` (small mails) or ``chunks(item)`` (mails over the streaming threshold) reads one;
4. the loop writes it to S3 under ``raw/<mailbox>/<key_suffix>.eml`` and, a batch at a time, queues it;
5. ``settle(items)`` is called only after a batch is both in S3 and queued: it applies the mailbox's
   after-storing action on the server and counts the mails as read, in memory;
6. ``remember()`` writes what was settled to the cursor store: every few batches and once at the end
   of the run (also after an interruption);
7. leaving the ``with`` block ends the session. An exception leaving it must not commit anything
   that was not settled.

Before the first run, once, when the mailbox is added: ``begin(start)`` (in a ``with source:`` block of its
own) counts the folder and records in the cursor store where reading starts, by a :data:`StartAt` choice
that means the same for every protocol:

- ``new``: only mail that arrives after this call; what the folder holds now is left alone, untouched;
- ``unread``: what is unread now (for a protocol with a read state), and everything that arrives after;
- ``all``: everything the folder holds, and everything after (the same as never calling ``begin``).

"After this call" must lose nothing: the position is read from the server in one step that every later
mail is beyond (IMAP: UIDNEXT and UIDVALIDITY from one STATUS; POP3: the UIDLs listed now are recorded
as skipped, not as stored, so that a mailbox that deletes after storing never deletes them; Graph: a
delta token taken at that moment, ``$deltatoken=latest``), and the mailbox's schedule is created only
after it is recorded. A source that cannot honour a choice raises :class:`StartNotSupported`.

A server going away after the source was opened must surface as one of :data:`INTERRUPTIONS`: the loop
then queues what it had stored, remembers what was settled and ends the run as "interrupted" (not a
configuration problem). Anything else raised is a fault of the run.

Exactly once, by construction rather than by transaction:

- Nothing is settled before it is stored and queued, so a crash at any point never loses a mail: at worst
  the mail is still on the server and in no cursor.
- A mail read again (a crash after storing, before ``remember``) has the same ``key_suffix`` as before,
  so it lands in the same S3 key, with the same queue deduplication id; processing recognises the key
  (ledger) and the Message-ID. Read twice, it still makes one outcome.
- ``key_suffix`` must therefore be stable for a mail across runs, and distinct between mails.

What settling means differs by protocol:

- IMAP: ``\\Seen`` is set, the mail is moved, or deleted (expunged at once), as the mailbox says; the
  cursor is UIDVALIDITY and the highest UID settled. A changed UIDVALIDITY rereads the folder into keys
  that name the new UIDVALIDITY; processing deduplicates by Message-ID.
- POP3: the mail is marked for deletion (``DELE``) when the mailbox deletes, and its UIDL joins the set
  of UIDLs seen. The server commits deletions only at ``QUIT``: leaving the block with an exception closes
  the connection without QUIT, so the server rolls them back. UIDLs remembered but still on the server
  at the next run (deleted by a run that died before QUIT) are deleted then, without being read again.
- Microsoft Graph: the mail is marked read, moved or deleted, one request each; the cursor is a delta
  link, moved only over stretches of the round whose mails are all settled, with the digests of the mails
  settled since that link beside it (see :mod:`mailintake.sources.graph`). Graph throttling is waited out
  within the time the fetch loop gives the source; a wait longer than that is an interruption.
"""

from __future__ import annotations

import imaplib
import poplib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from mailintake.sources.cursors import CursorStore
    from mailintake.store import MailboxRecord
    from mailintake.tokens import MailboxLogin

# Parts in which a large mail travels from the server to S3. S3 parts must be at least 5 MiB, except the last.
PART_BYTES = 8 * 1024 * 1024

# What a mail server going away mid-run raises: a dropped connection, a BYE (imaplib's abort is an
# IMAP4.error), a timeout, a POP3 error reply to a command that worked a moment ago; Graph's
# GraphUnavailable and GraphThrottled are ConnectionErrors, so OSError covers them.
INTERRUPTIONS: tuple[type[BaseException], ...] = (imaplib.IMAP4.error, poplib.error_proto, OSError, EOFError)


# Where a new mailbox's reading starts (see the module's contract): the same three words for every source.
StartAt = Literal["new", "unread", "all"]
START_CHOICES: tuple[StartAt, ...] = ("new", "unread", "all")


class StartNotSupported(ValueError):
    """A start choice this protocol cannot honour (POP3 has no read state: no ``unread``)."""


@dataclass(frozen=True)
class FolderCount:
    """What ``begin`` found: the mails in the folder, how many are unread (None: the protocol cannot tell),
    and how many the first run will take."""

    total: int
    unread: int | None
    first_run: int


@dataclass(frozen=True)
class Pending:
    """One mail on the server that has not been stored yet."""

    ref: str  # the server's handle: IMAP UID, or POP3 message number
    key_suffix: str  # the stable part of its S3 key
    size: int = 0  # as the server announces it (RFC822.SIZE, POP3 LIST); 0 when unknown


class MailSource(Protocol):
    """An open mailbox on a mail server, read in the order of the module's contract."""

    def __enter__(self) -> MailSource: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        """End the session: commit the settled actions after a clean run, nothing more after a failed one."""

    def pending(self) -> Iterator[Pending]:
        """The mails not stored before, oldest first."""

    def download(self, item: Pending) -> bytes:
        """The whole raw mail, for mails small enough to hold in memory."""

    def chunks(self, item: Pending) -> Iterator[bytes]:
        """The raw mail in parts of about PART_BYTES (the last one shorter), never whole in memory."""

    def settle(self, items: list[Pending]) -> None:
        """Apply the after-storing action to mails already stored and queued; count them as read."""

    def remember(self) -> None:
        """Write what was settled since the last call to the cursor store (nothing when nothing was)."""

    def begin(self, start: StartAt) -> FolderCount:
        """Once, when the mailbox is added: count the folder and record where reading starts."""


# How the fetch loop opens a mailbox: the mailbox, what it logs in with (a password or OAuth tokens, see
# mailintake.tokens.MailboxLogin), where its cursor is kept, and the seconds the source may spend waiting
# (for a throttled server) in this run.
SourceFactory = Callable[["MailboxRecord", "MailboxLogin", "CursorStore", Callable[[], float]], MailSource]
