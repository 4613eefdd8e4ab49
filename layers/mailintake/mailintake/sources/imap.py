"""IMAP mailboxes (RFC 3501) as a :class:`~mailintake.sources.protocol.MailSource`."""

from __future__ import annotations

import contextlib
import imaplib
import re
import time
from collections.abc import Iterator

from aws_lambda_powertools import Logger
from imap_tools import AND, BaseMailBox, MailBox, MailBoxStartTls, MailBoxUnencrypted, MailMessageFlags, U

from mailintake.sources.cursors import CursorStore
from mailintake.sources.protocol import PART_BYTES, Pending
from mailintake.sources.tls import SOCKET_TIMEOUT, tls_context
from mailintake.store import MailboxRecord

logger = Logger(child=True)

_FETCH_ITEM = re.compile(rb"(UID|RFC822\.SIZE) (\d+)")
_INTERNALDATE = re.compile(rb'INTERNALDATE "([^"]+)"')


class ImapSource:
    """One folder, read by UID above the cursor's last UID; settling flags, moves or deletes (expunges)."""

    def __init__(self, mailbox: MailboxRecord, password: str, cursors: CursorStore) -> None:
        self.mailbox = mailbox
        self.cursors = cursors
        self.cursor = cursor = cursors.load_imap(mailbox.name)
        self.box = self._connect(mailbox)
        self.box.login(mailbox.username, password, initial_folder=mailbox.folder)
        status = self.box.folder.status(mailbox.folder, ["UIDVALIDITY"])
        uidvalidity = int(status["UIDVALIDITY"])
        self.changed = cursor.uidvalidity != uidvalidity  # the cursor needs writing
        if self.changed:
            if cursor.uidvalidity is not None:
                # UIDs were renumbered: read the folder again. Keys include UIDVALIDITY and processing
                # deduplicates by Message-ID, so mails read before make nothing new.
                logger.warning("UIDVALIDITY changed; rereading folder", extra={"mailbox": mailbox.name})
            cursor.uidvalidity = uidvalidity
            cursor.last_uid = 0

    @staticmethod
    def _connect(mailbox: MailboxRecord) -> BaseMailBox:
        host, port = mailbox.host, int(mailbox.port)
        if mailbox.security == "ssl":
            return MailBox(host, port, timeout=SOCKET_TIMEOUT, ssl_context=tls_context(mailbox.ca_bundle))
        if mailbox.security == "starttls":
            return MailBoxStartTls(host, port, timeout=SOCKET_TIMEOUT, ssl_context=tls_context(mailbox.ca_bundle))
        return MailBoxUnencrypted(host, port, timeout=SOCKET_TIMEOUT)

    def pending(self) -> Iterator[Pending]:
        last = self.cursor.last_uid
        # "UID n:*" always matches the newest mail, even when its UID is below n: filter.
        uids = sorted(int(u) for u in self.box.uids(AND(uid=U(str(last + 1), "*"))) if int(u) > last)
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
