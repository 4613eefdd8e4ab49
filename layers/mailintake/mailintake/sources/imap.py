"""IMAP mailboxes (RFC 3501) as a :class:`~mailintake.sources.protocol.MailSource`."""

from __future__ import annotations

import contextlib
import imaplib
import re
import time
from collections.abc import Iterator
from datetime import date

from aws_lambda_powertools import Logger
from imap_tools import AND, BaseMailBox, MailBox, MailBoxStartTls, MailBoxUnencrypted, MailMessageFlags, U
from imap_tools.errors import MailboxLoginError

from mailintake.sources.cursors import CursorStore
from mailintake.sources.protocol import PART_BYTES, FolderCount, Pending, StartAt
from mailintake.store import MailboxRecord
from mailintake.tls import SOCKET_TIMEOUT, context_for
from mailintake.tokens import MailboxLogin, refused, xoauth2

logger = Logger(child=True)

_FETCH_ITEM = re.compile(rb"(UID|RFC822\.SIZE) (\d+)")
_INTERNALDATE = re.compile(rb'INTERNALDATE "([^"]+)"')


class ImapSource:
    """One folder, read by UID above the cursor's last UID; settling flags, moves or deletes (expunges)."""

    def __init__(self, mailbox: MailboxRecord, login: MailboxLogin, cursors: CursorStore) -> None:
        self.mailbox = mailbox
        self.cursors = cursors
        self.cursor = cursor = cursors.load_imap(mailbox.name)
        self.box = self._connect(mailbox, login)
        if login.oauth:
            self._authenticate(login)
        else:
            self.box.login(mailbox.username, login.password(), initial_folder=mailbox.folder)
        status = self.box.folder.status(mailbox.folder, ["UIDVALIDITY"])
        uidvalidity = int(status["UIDVALIDITY"])
        self.changed = cursor.uidvalidity != uidvalidity  # the cursor needs writing
        self.since: date | None = None
        if self.changed:
            if cursor.uidvalidity is not None:
                # UIDs were renumbered: read the folder again. Keys include UIDVALIDITY and processing
                # deduplicates by Message-ID, so mails read before make nothing new. A mailbox that started
                # with "new" or "unread" left older mail alone: only mail of the day it was added and later
                # is read again (IMAP's SINCE counts whole days).
                logger.warning("UIDVALIDITY changed; rereading folder", extra={"mailbox": mailbox.name})
                if mailbox.start in ("new", "unread") and mailbox.created is not None:
                    self.since = mailbox.created.date()
            cursor.uidvalidity = uidvalidity
            cursor.last_uid = 0
            cursor.unread_below = None

    def _authenticate(self, login: MailboxLogin) -> None:
        """AUTHENTICATE XOAUTH2; a refused token is replaced once (it may have expired or been revoked on the
        server's side before its announced expiry), a fresh one refused is the app's missing permission."""
        for attempt in (1, 2):
            token = login.token()
            # The server answers a bad token with a challenge holding a JSON error; the client's empty
            # reply then gets the NO (Google's and Microsoft's XOAUTH2 documentation).
            answers = iter((xoauth2(self.mailbox.username, token), b""))

            def answer(_challenge: bytes, answers: Iterator[bytes] = answers) -> bytes:
                return next(answers, b"")

            try:
                self.box.client.authenticate("XOAUTH2", answer)
            except (imaplib.IMAP4.error, MailboxLoginError) as exc:
                if attempt == 2 or isinstance(exc, imaplib.IMAP4.abort):
                    raise refused(self.mailbox, "the IMAP server", exc) from exc
                login.rejected()
                continue
            self.box.folder.set(self.mailbox.folder)
            return

    @staticmethod
    def _connect(mailbox: MailboxRecord, login: MailboxLogin) -> BaseMailBox:
        host, port = mailbox.host, int(mailbox.port)
        if mailbox.security == "ssl":
            return MailBox(host, port, timeout=SOCKET_TIMEOUT, ssl_context=context_for(login.tls, mailbox.ca_bundle))
        if mailbox.security == "starttls":
            return MailBoxStartTls(host, port, timeout=SOCKET_TIMEOUT,
                                   ssl_context=context_for(login.tls, mailbox.ca_bundle))
        return MailBoxUnencrypted(host, port, timeout=SOCKET_TIMEOUT)

    def begin(self, start: StartAt) -> FolderCount:
        """Where reading starts, from one STATUS: every mail that arrives later gets a UID of UIDNEXT or more,
        so "new" loses nothing that arrives while the mailbox is being added."""
        status = self.box.folder.status(self.mailbox.folder, ["MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN"])
        total, unseen = int(status["MESSAGES"]), int(status["UNSEEN"])
        uidnext = int(status.get("UIDNEXT") or 0) or self._uidnext_fallback()
        self.cursor.uidvalidity, self.cursor.unread_below = int(status["UIDVALIDITY"]), None
        if start == "new":
            self.cursor.last_uid, first_run = uidnext - 1, 0
        elif start == "unread":
            self.cursor.last_uid, self.cursor.unread_below, first_run = 0, uidnext, unseen
        else:
            self.cursor.last_uid, first_run = 0, total
        self.cursors.save_imap(self.mailbox.name, self.cursor)
        self.changed = False
        return FolderCount(total, unseen, first_run)

    def _uidnext_fallback(self) -> int:
        """UIDNEXT for a server whose STATUS leaves it out: one above the highest UID there is."""
        uids = [int(u) for u in self.box.uids("ALL")]
        return max(uids, default=0) + 1

    def pending(self) -> Iterator[Pending]:
        last = self.cursor.last_uid
        # "UID n:*" always matches the newest mail, even when its UID is below n: filter.
        criteria = AND(uid=U(str(last + 1), "*")) if self.since is None else AND(
            AND(uid=U(str(last + 1), "*")), date_gte=self.since)
        uids = sorted(int(u) for u in self.box.uids(criteria) if int(u) > last)
        below = self.cursor.unread_below
        if below is not None and uids and uids[0] < below:
            # Started with "unread": below the UIDNEXT of that moment, only what is unread now.
            unseen = {int(u) for u in self.box.uids(AND(AND(uid=U(str(last + 1), str(below - 1))), seen=False))}
            uids = [u for u in uids if u >= below or u in unseen]
        sizes = self._sizes(uids)
        for uid in uids:
            size, arrived = sizes.get(uid, (0, None))
            yield Pending(str(uid), f"{self.cursor.uidvalidity}-{uid:010d}", size, arrived)

    def _sizes(self, uids: list[int]) -> dict[int, tuple[int, float | None]]:
        """RFC822.SIZE and INTERNALDATE (when the mail arrived on the server) of every new mail, in one
        command."""
        if not uids:
            return {}
        typ, data = self.box.client.uid("FETCH", f"{uids[0]}:{uids[-1]}", "(RFC822.SIZE INTERNALDATE)")
        sizes: dict[int, tuple[int, float | None]] = {}
        for line in data if typ == "OK" else ():
            if isinstance(line, bytes):
                found = dict(_FETCH_ITEM.findall(line))
                if b"UID" in found and b"RFC822.SIZE" in found:
                    sizes[int(found[b"UID"])] = (int(found[b"RFC822.SIZE"]), _arrival(line))
        return sizes

    def download(self, item: Pending) -> bytes:
        # BODY.PEEK leaves \Seen alone: the mailbox's own action decides what happens to the mail.
        typ, data = self.box.client.uid("FETCH", item.ref, "(BODY.PEEK[])")
        if typ != "OK":
            raise imaplib.IMAP4.error(f"FETCH {item.ref} failed: {data!r}")
        for part in data:
            if isinstance(part, tuple):
                return bytes(part[1])
        raise imaplib.IMAP4.error(f"FETCH {item.ref} returned no message")

    def chunks(self, item: Pending) -> Iterator[bytes]:
        """The mail in parts of PART_BYTES, by partial FETCH (RFC 3501 6.4.5), until one comes back short."""
        offset = 0
        while True:
            typ, data = self.box.client.uid("FETCH", item.ref, f"(BODY.PEEK[]<{offset}.{PART_BYTES}>)")
            if typ != "OK":
                raise imaplib.IMAP4.error(f"FETCH {item.ref} failed: {data!r}")
            part = next((bytes(d[1]) for d in data if isinstance(d, tuple)), b"")
            if part:
                yield part
            if len(part) < PART_BYTES:
                return
            offset += len(part)

    def settle(self, items: list[Pending]) -> None:
        uids = [i.ref for i in items]
        if self.mailbox.after == "seen":
            self.box.flag(uids, MailMessageFlags.SEEN, True)
        elif self.mailbox.after == "move":
            self.box.move(uids, self.mailbox.move_to or "")
        elif self.mailbox.after == "delete":
            self.box.delete(uids)
        self.cursor.last_uid = max(self.cursor.last_uid, *(int(u) for u in uids))
        if self.cursor.unread_below is not None and self.cursor.last_uid >= self.cursor.unread_below - 1:
            self.cursor.unread_below = None  # past the mail that was there when the mailbox was added
        self.changed = True

    def remember(self) -> None:
        if self.changed:
            self.cursors.save_imap(self.mailbox.name, self.cursor)
            self.changed = False

    def __enter__(self) -> ImapSource:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            self.box.logout()


def _arrival(fetch_line: bytes) -> float | None:
    """INTERNALDATE of a FETCH response line as epoch seconds; None when absent or unreadable."""
    match = _INTERNALDATE.search(fetch_line)
    if match is None:
        return None
    with contextlib.suppress(ValueError, OverflowError):
        parsed = imaplib.Internaldate2tuple(b'INTERNALDATE "' + match.group(1) + b'"')
        if parsed is not None:
            return float(time.mktime(parsed))
    return None
