"""Where each mailbox's reading stands, kept apart from the mail sources that use it.

A source is given a :class:`CursorStore` when it is opened; it loads its cursor from it and writes to it
on ``remember()`` (see :mod:`mailintake.sources.protocol`). :class:`DynamoCursorStore` keeps cursors in
the stack's table, in the records ``mailintake.store`` defines (unchanged: no migration):

- IMAP: one ``CursorRecord`` per mailbox, ``pk=CURSOR#<mailbox>, sk=CURSOR``, with ``uidvalidity``,
  ``last_uid`` and ``updated``.
- POP3: ``UidlsRecord`` parts beside it, ``sk=UIDLS#<part>``, each a set of UIDLs already stored. A run adds
  a small part per write and compacts the parts at its end (records of at most ``UIDLS_PER_RECORD``).
- Microsoft Graph: the ``CursorRecord``'s ``delta_link``, the link the next delta request starts from, with
  the round it belongs to and whether it ends it, and in ``UidlsRecord`` parts the digests of the mails
  settled in this round and the one before (see :mod:`mailintake.sources.graph`).
  The UIDLs a ``--start new`` mailbox left alone are kept apart, under ``sk=SKIPPED#<part>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from mailintake import store


@dataclass
class ImapCursor:
    """The folder's UIDVALIDITY when it was last read (None: never read), and the highest UID settled."""

    uidvalidity: int | None = None
    last_uid: int = 0
    # Started with "unread": below this UID only mail unread at the time it is read is taken (None: all).
    unread_below: int | None = None


@dataclass
class GraphCursor:
    """Where a Graph folder's delta reading stands: the link to go on from (None: never read), the round
    it belongs to, and whether the link is that round's deltaLink (the round is over)."""

    link: str | None = None
    round: str = ""
    done: bool = False


# POP3 has no order to resume from, only the UIDLs seen, kept in parts: part name -> UIDLs.
UidlParts = dict[str, set[str]]


class CursorStore(Protocol):
    """Reads and writes the cursors of mailboxes. A missing cursor reads as never read."""

    def load_imap(self, mailbox: str) -> ImapCursor:
        """The IMAP cursor, as last saved."""

    def save_imap(self, mailbox: str, cursor: ImapCursor) -> None:
        """Replace the IMAP cursor."""

    def load_uidls(self, mailbox: str) -> UidlParts:
        """The POP3 UIDLs already stored, by the part that holds them."""

    def add_uidls(self, mailbox: str, part: str, uidls: set[str]) -> str:
        """Record some UIDLs as stored under a new part named ``part``; the part's name as load_uidls gives it."""

    def compact_uidls(self, mailbox: str, parts: UidlParts, keep: set[str]) -> None:
        """Rewrite ``parts`` (as loaded, plus those added) to hold exactly ``keep``; a crash midway may leave
        UIDLs known twice, never forgotten."""

    def load_delta(self, mailbox: str) -> GraphCursor:
        """The Graph cursor, as last saved."""

    def save_delta(self, mailbox: str, cursor: GraphCursor) -> None:
        """Replace the Graph cursor."""

    def load_skipped(self, mailbox: str) -> set[str]:
        """The POP3 UIDLs left alone when the mailbox was added (``--start new``): never read, never deleted."""

    def add_skipped(self, mailbox: str, uidls: set[str]) -> None:
        """Record UIDLs as skipped (kept apart from the stored ones, which a deleting mailbox deletes)."""


class DynamoCursorStore:
    """Cursors in the stack's DynamoDB table (``mailintake.store`` records)."""

    def load_imap(self, mailbox: str) -> ImapCursor:
        record = store.load_cursor(mailbox)
        uidvalidity = None if record.uidvalidity is None else int(record.uidvalidity)
        below = None if record.unread_below is None else int(record.unread_below)
        return ImapCursor(uidvalidity, int(record.last_uid or 0), below)

    def save_imap(self, mailbox: str, cursor: ImapCursor) -> None:
        store.save_cursor(store.CursorRecord(*store.CursorRecord.key_for(mailbox), uidvalidity=cursor.uidvalidity,
                                             last_uid=cursor.last_uid, unread_below=cursor.unread_below))

    def load_uidls(self, mailbox: str) -> UidlParts:
        return store.load_uidls(mailbox)

    def add_uidls(self, mailbox: str, part: str, uidls: set[str]) -> str:
        return store.add_uidls(mailbox, part, uidls)

    def compact_uidls(self, mailbox: str, parts: UidlParts, keep: set[str]) -> None:
        store.compact_uidls(mailbox, parts, keep)

    def load_delta(self, mailbox: str) -> GraphCursor:
        record = store.load_cursor(mailbox)
        return GraphCursor(str(record.delta_link) if record.delta_link else None, str(record.delta_round or ""),
                           bool(record.delta_done))

    def save_delta(self, mailbox: str, cursor: GraphCursor) -> None:
        store.save_cursor(store.CursorRecord(*store.CursorRecord.key_for(mailbox), delta_link=cursor.link,
                                             delta_round=cursor.round, delta_done=cursor.done))

    def load_skipped(self, mailbox: str) -> set[str]:
        return store.load_skipped(mailbox)

    def add_skipped(self, mailbox: str, uidls: set[str]) -> None:
        store.add_skipped(mailbox, uidls)
