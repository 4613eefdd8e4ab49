"""POP3 mailboxes (RFC 1939) as a :class:`~mailintake.sources.protocol.MailSource`."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import poplib
from collections.abc import Callable, Iterator

from mailintake.sources.cursors import CursorStore
from mailintake.sources.protocol import PART_BYTES, FolderCount, Pending, StartAt, StartNotSupported
from mailintake.store import MailboxRecord, utcnow
from mailintake.tls import SOCKET_TIMEOUT, context_for
from mailintake.tokens import MailboxLogin, refused, xoauth2


class Pop3Source:
    """The maildrop, read by UIDL not seen before; settling deletes (committed at QUIT) or keeps."""

    def __init__(self, mailbox: MailboxRecord, login: MailboxLogin, cursors: CursorStore) -> None:
        self.mailbox = mailbox
        self.cursors = cursors
        self.parts = cursors.load_uidls(mailbox.name)  # the UIDLs already stored, as recorded
        self.known: set[str] = set().union(*self.parts.values())
        # Left alone since the mailbox was added ("new"): never read, and never deleted as "stored".
        self.skipped = cursors.load_skipped(mailbox.name)
        self.settled: set[str] = set()  # settled in this run, not yet remembered
        self.deleted: set[str] = set()
        self.run = utcnow().strftime("%Y%m%dT%H%M%S%f")
        host, port = mailbox.host, int(mailbox.port)
        self.conn: poplib.POP3
        if mailbox.security == "ssl":
            self.conn = poplib.POP3_SSL(host, port, timeout=SOCKET_TIMEOUT,
                                        context=context_for(login.tls, mailbox.ca_bundle))
        else:
            self.conn = poplib.POP3(host, port, timeout=SOCKET_TIMEOUT)
            if mailbox.security == "starttls":
                self.conn.stls(context=context_for(login.tls, mailbox.ca_bundle))
        if login.oauth:
            self._authenticate(login)
        else:
            self.conn.user(mailbox.username)
            self.conn.pass_(login.password())
        self.listing: dict[str, str] = {}  # uidl -> message number, in server order
        for line in self.conn.uidl()[1]:
            number, uidl = line.decode("ascii", "replace").split(" ", 1)
            self.listing[uidl] = number
        self.sizes: dict[str, int] = {}  # message number -> octets
        for line in self.conn.list()[1]:
            number, octets = line.decode("ascii", "replace").split(" ", 1)
            self.sizes[number] = int(octets.split()[0])

    def _authenticate(self, login: MailboxLogin) -> None:
        """AUTH XOAUTH2 with the initial response (RFC 5034; poplib has no AUTH); a refused token is
        replaced once, a fresh one refused is the app's missing permission."""
        # poplib's command primitive (typeshed does not list it); poplib itself has no AUTH.
        command: Callable[[str], bytes] = self.conn._shortcmd  # type: ignore[attr-defined]
        for attempt in (1, 2):
            initial = base64.b64encode(xoauth2(self.mailbox.username, login.token())).decode("ascii")
            try:
                reply = command(f"AUTH XOAUTH2 {initial}")
                if reply.startswith(b"+ "):
                    # A challenge holding the JSON error: an empty line gets the final -ERR.
                    reply = command("")
                if reply.startswith(b"+OK"):
                    return
                raise poplib.error_proto(reply.decode("ascii", "replace"))
            except poplib.error_proto as exc:
                if attempt == 2:
                    raise refused(self.mailbox, "the POP3 server", exc) from exc
                login.rejected()

    def pending(self) -> Iterator[Pending]:
        if self.mailbox.after == "delete":
            # Stored and queued in an earlier run that died before QUIT committed its deletes.
            leftovers = [Pending(n, "") for u, n in self.listing.items() if u in self.known]
            if leftovers:
                self._delete(leftovers)
        for uidl, number in self.listing.items():
            if uidl not in self.known and uidl not in self.skipped:
                yield Pending(number, "pop3-" + hashlib.sha256(uidl.encode()).hexdigest()[:32],
                              self.sizes.get(number, 0))

    def begin(self, start: StartAt) -> FolderCount:
        """POP3 has no read state. "new" records every UIDL listed now as skipped: the maildrop is locked for
        this session, so mail that arrives meanwhile is listed only later, under a UIDL not recorded here."""
        if start == "unread":
            raise StartNotSupported("POP3 has no read state: start with new or all")
        fresh = {u for u in self.listing if u not in self.known and u not in self.skipped}
        if start == "new":
            if fresh:
                self.cursors.add_skipped(self.mailbox.name, fresh)
            self.skipped |= fresh
            return FolderCount(len(self.listing), None, 0)
        return FolderCount(len(self.listing), None, len(fresh))

    def download(self, item: Pending) -> bytes:
        return b"".join(self.chunks(item))

    def chunks(self, item: Pending) -> Iterator[bytes]:
        """RETR, read in parts of about PART_BYTES, dot-unstuffed, with CRLF line ends.

        poplib's own retr() refuses lines over 2,048 bytes ("line too long"), which real mail (unwrapped
        HTML) has, and holds the whole mail as a list of lines: this reads the same response from the
        connection's file, with no line limit.
        """
        # poplib has no public way to read a multi-line response in parts: speak RETR on its socket.
        self.conn.sock.sendall(f"RETR {int(item.ref)}\r\n".encode("ascii"))
        stream = self.conn.file
        status = stream.readline(512)
        if not status.startswith(b"+OK"):
            raise poplib.error_proto(status.decode("ascii", "replace").strip() or "-ERR EOF")
        buffer = bytearray()
        at_line_start = True
        while True:
            line = stream.readline(PART_BYTES)
            if line.endswith(b"\r"):
                line += stream.read(1)  # a CRLF split by the read limit stays one line end
            if not line:
                raise poplib.error_proto("-ERR EOF in RETR")
            if at_line_start:
                if line in (b".\r\n", b".\n"):
                    break
                if line.startswith(b".."):
                    line = line[1:]  # dot-unstuffing (RFC 1939 3)
            at_line_start = line.endswith(b"\n")
            if at_line_start:
                buffer += line[:-2] if line.endswith(b"\r\n") else line[:-1]
                buffer += b"\r\n"
            else:
                buffer += line  # the rest of this line comes with the next read
            if len(buffer) >= PART_BYTES:
                yield bytes(buffer)
                buffer.clear()
        if buffer:
            yield bytes(buffer)

    def _delete(self, items: list[Pending]) -> None:
        numbers = {i.ref for i in items}
        for uidl, number in self.listing.items():
            if number in numbers:
                self.conn.dele(int(number))
                self.deleted.add(uidl)

    def settle(self, items: list[Pending]) -> None:
        numbers = {i.ref for i in items}
        settled = {u for u, n in self.listing.items() if n in numbers}
        self.settled |= settled
        self.known |= settled
        if self.mailbox.after == "delete":
            self._delete(items)

    def remember(self) -> None:
        if not self.settled:
            return
        part = self.cursors.add_uidls(self.mailbox.name, f"{self.run}-{len(self.parts):05d}", self.settled)
        self.parts[part] = self.settled
        self.settled = set()

    def __enter__(self) -> Pop3Source:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            # Leave without QUIT: the server rolls back the deletes, and the cursor still knows the UIDLs.
            with contextlib.suppress(OSError):
                self.conn.close()
            return
        self.conn.quit()  # commits the deletes
        # Forget UIDLs no longer on the server, and merge this run's small records.
        self.cursors.compact_uidls(self.mailbox.name, self.parts,
                                   {u for u in self.known if u in self.listing and u not in self.deleted})
