"""Microsoft 365 mailboxes through Microsoft Graph as a :class:`~mailintake.sources.protocol.MailSource`.

A folder of a user or shared mailbox is read with Graph's delta query
(``/users/{id}/mailFolders/{folder}/messages/delta``): a round of pages linked by ``@odata.nextLink`` that
ends with an ``@odata.deltaLink``, from which the next round reports only what changed. Each mail is
downloaded as raw MIME (``/messages/{id}/$value``, streamed in parts when large) and, once stored and
queued, marked read (``PATCH isRead``), moved (``POST /move``) or deleted (``DELETE``). Ids are Graph's
immutable ids (``Prefer: IdType="ImmutableId"``), so a mail keeps its S3 key even when it moves.

The cursor is a link, and the source moves it only over what it has settled:

- the round is read a stretch at a time (up to ``STRETCH`` changes, a few pages); a stretch's mails are
  yielded oldest first, and once all of them are settled the cursor may move to the link that follows the
  stretch (a nextLink mid-round, the deltaLink at its end). A run that stops midway (deadline, server gone,
  crash) leaves the cursor before the first stretch not wholly settled: the next run reads that again.
- Settling is itself a change that a later round reports (a mail marked read comes back as updated: in
  the next round, or later in the same one), and a stretch read again brings back mails settled before.
  So the digests of the mails settled are kept beside the cursor (``UidlsRecord`` parts, as POP3's UIDLs,
  each part named for the round it was settled in) and skipped. A round reports the changes made since
  the round before it began, which are the settling of that round's mails and its own: when a round is
  over (the cursor moves to its deltaLink), the digests of earlier rounds are forgotten (at the end of a
  clean run; until then they are merely skipped too).
- A mail changed or moved back into the folder later comes back with the same key; processing recognises
  the key, so it makes no second outcome. An expired link (410) reads the folder anew, the same way.

Nothing here is lost on a crash: nothing is settled before it is stored, and a link is remembered only
after every mail before it is settled. Paging therefore never loses a mail (a stretch is read again until
it is settled) nor doubles one (same key, and the settled digests skip it).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from aws_lambda_powertools import Logger

from mailintake.graph_api import (
    IMMUTABLE_IDS,
    BearerTokens,
    GraphClient,
    GraphError,
    GraphNotFound,
    GraphSyncReset,
    GraphUnavailable,
    user_path,
)
from mailintake.sources.cursors import CursorStore, GraphCursor
from mailintake.sources.protocol import PART_BYTES, FolderCount, Pending, StartAt, StartNotSupported
from mailintake.store import MailboxRecord, utcnow
from mailintake.tls import TlsContexts, context_for

logger = Logger(child=True)

PAGE_SIZE = 100  # Prefer: odata.maxpagesize (Graph's default for messages is 10)
STRETCH = 500  # changes read before their mails are handed to the fetch loop
# PidTagMessageSize, the size Exchange keeps for a mail: asked for with each change so that large mails
# are streamed (Graph's message resource has no size of its own).
SIZE_PROPERTY = "Integer 0x0E08"
# Folders every mailbox has, addressed by these names instead of an id (Graph's wellKnownName values).
WELL_KNOWN = frozenset({"inbox", "archive", "deleteditems", "junkemail", "sentitems", "drafts", "outbox",
                        "clutter", "conversationhistory", "scheduled", "searchfolders", "msgfolderroot"})


def digest(message_id: str) -> str:
    """The short, stable name of a Graph message id (ids run to 150 characters; records keep thousands)."""
    return hashlib.sha256(message_id.encode()).hexdigest()[:32]


def key_suffix(message_id: str) -> str:
    return f"graph-{digest(message_id)}"


@dataclass
class Change:
    """One mail a delta round reported as added or changed."""

    id: str
    received: str  # receivedDateTime, ISO 8601 in UTC: sorts as it reads
    size: int


def changes_of(page: dict[str, Any], into: dict[str, Change]) -> None:
    """Fold a delta page's entries into ``into`` (by id, a later entry replacing an earlier one; a removal
    taking the mail out: it is gone from the folder, nothing to read)."""
    for entry in page.get("value") or ():
        message_id = entry.get("id")
        if not isinstance(message_id, str) or not message_id:
            continue
        if "@removed" in entry:
            into.pop(message_id, None)
            continue
        size = 0
        for prop in entry.get("singleValueExtendedProperties") or ():
            if str(prop.get("id", "")).lower() == SIZE_PROPERTY.lower():
                with contextlib.suppress(TypeError, ValueError):
                    size = int(prop.get("value"))
        into.pop(message_id, None)  # a later report moves it to the end
        into[message_id] = Change(message_id, str(entry.get("receivedDateTime") or ""), size)


@dataclass
class Stretch:
    """Part of a round: the link that follows it (the deltaLink when ``last``), and the digests of its
    mails not settled yet."""

    link: str
    last: bool
    outstanding: set[str] = field(default_factory=set)


class GraphSource:
    """One folder of a mailbox on Microsoft Graph, read by delta; settling marks read, moves or deletes."""

    def __init__(self, mailbox: MailboxRecord, tokens: BearerTokens, cursors: CursorStore,
                 seconds_left: Callable[[], float], client: GraphClient | None = None,
                 tls: TlsContexts | None = None) -> None:
        self.mailbox = mailbox
        self.cursors = cursors
        self.client = client or GraphClient(str(mailbox.host), tokens, seconds_left,
                                            context_for(tls, mailbox.ca_bundle))
        self.user = user_path(str(mailbox.username))
        # Opening checks what configuration decides: the token, the user, the folders.
        self.folder_id = self.folder(str(mailbox.folder))
        self.move_to_id = self.folder(str(mailbox.move_to)) if mailbox.after == "move" else ""
        self.run = utcnow().strftime("%Y%m%dT%H%M%S%f")
        self.cursor = cursors.load_delta(mailbox.name)
        if self.cursor.done or not self.cursor.link:
            # A new round begins with this run; the last one's settled mails are still skipped in it.
            self.round = f"R{self.run}"
        else:
            self.round = self.cursor.round  # going on with a round begun by an earlier run
        self.parts = cursors.load_uidls(mailbox.name)
        self.skip: set[str] = set().union(*self.parts.values())  # settled in this round and the one before
        self.settled: set[str] = set()  # settled in this run
        self.unremembered: set[str] = set()
        self.stretches: list[Stretch] = []
        self.finished = False  # the cursor moved to this round's deltaLink

    def folder(self, path: str) -> str:
        """The id of a folder given by well-known name, id, or display names from the top ("Inbox/Support")."""
        segments = [s for s in path.split("/") if s]
        if not segments:
            raise GraphNotFound(404, "ErrorFolderNotFound", "no folder named", f"folder {path!r}")
        first = segments[0].lower() if segments[0].lower() in WELL_KNOWN else segments[0]
        try:
            found = self.client.json("GET", f"{self.user}/mailFolders/{quote(first, safe='')}?$select=id")
        except GraphError as exc:
            if exc.status not in (400, 404):
                raise
            found = self._child(f"{self.user}/mailFolders", segments[0], path)
        for segment in segments[1:]:
            found = self._child(f"{self.user}/mailFolders/{quote(found['id'], safe='')}/childFolders", segment, path)
        return str(found["id"])

    def _child(self, listing: str, name: str, path: str) -> Any:
        query = urlencode({"$filter": f"displayName eq '{name.replace(chr(39), chr(39) * 2)}'",
                           "$select": "id,displayName"}, quote_via=quote)
        found = (self.client.json("GET", f"{listing}?{query}") or {}).get("value") or []
        if not found:
            raise GraphNotFound(404, "ErrorFolderNotFound", f"no folder {name!r} (in {path!r})", f"folder {path!r}")
        return found[0]

    def _first_link(self, latest: bool = False) -> str:
        options = {"$select": "id,receivedDateTime",
                   "$expand": f"singleValueExtendedProperties($filter=id eq '{SIZE_PROPERTY}')"}
        if self.mailbox.start in ("new", "unread") and self.mailbox.created is not None:
            # Started with "new" or "unread": mail older than the mailbox is left alone, even when an
            # expired link makes the folder be read again (delta's one filter: receivedDateTime ge).
            options["$filter"] = f"receivedDateTime ge {self.mailbox.created.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        if latest:
            options["$deltatoken"] = "latest"  # no changes, only a deltaLink from now on
        query = urlencode(options, quote_via=quote)
        return f"{self.user}/mailFolders/{quote(self.folder_id, safe='')}/messages/delta?{query}"

    def begin(self, start: StartAt) -> FolderCount:
        """Where reading starts: ``new`` takes a deltaLink of this moment (``$deltatoken=latest``), so that
        every later mail is a change after it; ``all`` leaves the cursor unread (the first round reads the
        folder). Graph's delta cannot select unread mail, so ``unread`` is not offered."""
        if start == "unread":
            raise StartNotSupported("Graph's delta query cannot start at the unread mail: start with new or all")
        found = self.client.json("GET", f"{self.user}/mailFolders/{quote(self.folder_id, safe='')}"
                                        "?$select=totalItemCount,unreadItemCount") or {}
        total, unread = int(found.get("totalItemCount") or 0), int(found.get("unreadItemCount") or 0)
        if start == "all":
            return FolderCount(total, unread, total)
        page = self.client.json("GET", self._first_link(latest=True)) or {}
        link = page.get("@odata.deltaLink")
        if not link:
            raise GraphUnavailable("$deltatoken=latest gave no @odata.deltaLink")
        self.cursor = GraphCursor(str(link), f"R{self.run}", True)
        self.cursors.save_delta(self.mailbox.name, self.cursor)
        return FolderCount(total, unread, 0)

    def _collect(self, link: str) -> tuple[list[Change], str, bool]:
        """Pages from ``link`` until the round ends or a stretch is full: the changes, oldest first, the
        link that follows them, and whether it is the round's deltaLink."""
        changes: dict[str, Change] = {}
        headers = {"Prefer": f"{IMMUTABLE_IDS}, odata.maxpagesize={PAGE_SIZE}"}
        while True:
            page = self.client.json("GET", link, headers=headers) or {}
            changes_of(page, changes)
            if page.get("@odata.deltaLink"):
                return sorted(changes.values(), key=lambda c: c.received), str(page["@odata.deltaLink"]), True
            following = page.get("@odata.nextLink")
            if not following:
                raise GraphUnavailable("a delta page had neither @odata.nextLink nor @odata.deltaLink")
            link = str(following)
            if len(changes) >= STRETCH:
                return sorted(changes.values(), key=lambda c: c.received), link, False

    def pending(self) -> Iterator[Pending]:
        link = self.cursor.link or self._first_link()
        while True:
            try:
                changes, link, done = self._collect(link)
            except GraphSyncReset:
                if link == self._first_link():
                    raise
                # Graph forgot the sync state (links expire): read the folder again; keys are the same.
                logger.warning("delta link expired; rereading the folder", extra={"mailbox": self.mailbox.name})
                self.stretches.clear()
                link = self._first_link()
                continue
            fresh = [c for c in changes if digest(c.id) not in self.skip and digest(c.id) not in self.settled]
            self.stretches.append(Stretch(link, done, {digest(c.id) for c in fresh}))
            for change in fresh:
                yield Pending(change.id, key_suffix(change.id), change.size, _arrival(change.received))
            if done:
                return

    def _value(self, item: Pending) -> str:
        return f"{self.user}/messages/{quote(item.ref, safe='')}/$value"

    def download(self, item: Pending) -> bytes:
        try:
            return self.client.read(self._value(item))
        except GraphNotFound as exc:
            # Deleted by someone else since the round was read: the next round reports it removed.
            raise GraphUnavailable(f"message gone from the server: {exc}") from exc

    def chunks(self, item: Pending) -> Iterator[bytes]:
        try:
            yield from self.client.read_parts(self._value(item), PART_BYTES)
        except GraphNotFound as exc:
            raise GraphUnavailable(f"message gone from the server: {exc}") from exc

    def _apply(self, message_id: str) -> None:
        path = f"{self.user}/messages/{quote(message_id, safe='')}"
        if self.mailbox.after == "seen":
            self.client.json("PATCH", path, {"isRead": True})
        elif self.mailbox.after == "move":
            self.client.json("POST", f"{path}/move", {"destinationId": self.move_to_id})
        elif self.mailbox.after == "delete":
            self.client.request("DELETE", path).release_conn()

    def settle(self, items: list[Pending]) -> None:
        for item in items:
            try:
                self._apply(item.ref)
            except GraphNotFound:
                # Already gone (someone deleted or moved it): nothing left to do to it.
                logger.info("settled mail no longer on the server", extra={"mailbox": self.mailbox.name})
            name = digest(item.ref)
            self.settled.add(name)
            self.unremembered.add(name)
            for stretch in self.stretches:
                stretch.outstanding.discard(name)

    def remember(self) -> None:
        if self.unremembered:
            part = self.cursors.add_uidls(self.mailbox.name, f"{self.round}-{self.run}-{len(self.parts):05d}",
                                          self.unremembered)
            self.parts[part] = self.unremembered
            self.unremembered = set()
        moved: Stretch | None = None
        while self.stretches and not self.stretches[0].outstanding:
            moved = self.stretches.pop(0)
        if moved is not None and moved.link != self.cursor.link:
            self.cursor = GraphCursor(moved.link, self.round, moved.last)
            self.cursors.save_delta(self.mailbox.name, self.cursor)
            self.finished = moved.last

    def __enter__(self) -> GraphSource:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.client.pool.clear()
        if exc_type is not None or not self.finished:
            return
        # The round is over: the next one reports changes since it began, so what earlier rounds settled
        # is not reported again and need not be skipped.
        keep = set().union(*(ids for part, ids in self.parts.items() if self.round in part))
        self.cursors.compact_uidls(self.mailbox.name, self.parts, keep)


def _arrival(received: str) -> float | None:
    """receivedDateTime (ISO 8601, UTC) as epoch seconds: the start of the arrival-to-item latency."""
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(received.replace("Z", "+00:00")).timestamp() if received else None
    return None
