"""A local Microsoft Graph: the documented subset of the mail API the Graph source and ``sendMail`` use.

Microsoft Graph cannot run here, so the tests talk to this server, which speaks its protocol as
documented (learn.microsoft.com/graph/api): the real client code (:mod:`mailintake.graph_api`) cannot
tell the difference for the requests it makes.

- ``GET /users/{u}/mailFolders/{id or well-known name}``, ``GET /users/{u}/mailFolders`` and
  ``.../{id}/childFolders`` with ``$filter=displayName eq '...'``;
- ``GET /users/{u}/mailFolders/{id}/messages/delta``: rounds of pages (``$top`` or ``Prefer:
  odata.maxpagesize``, default 10) linked by ``@odata.nextLink``, ending with ``@odata.deltaLink``; a
  round reports what changed after the previous round's link and no later (changes made during a round go
  to the next one), removals as ``@removed``; ``$expand`` of the size property (``Integer 0x0E08``);
- ``GET /users/{u}/messages/{id}/$value`` (the raw MIME), ``PATCH`` (``isRead``), ``POST .../move``
  (``destinationId``), ``DELETE``;
- ``POST /users/{u}/sendMail``: MIME (``Content-Type: text/plain``, base64) or a JSON message;
- a bearer token on every request: a missing, unknown or expired token gets 401 with Graph's
  ``InvalidAuthenticationToken`` error body;
- faults on demand: 429/503 with ``Retry-After``, connections dropped without an answer, the server
  stopped and started again on the same port.

The state (mail, folders, sent mail, tokens) is in memory, seeded from .eml bytes. Ids are immutable
ids: a message keeps its id when moved. The server binds an ephemeral port on loopback.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from mailintake.mailboxes import MailboxSpec, add_mailbox
from mailintake.settings import Settings
from mailintake.store import MailboxRecord

if TYPE_CHECKING:
    from mailintake.localstack.oauth import AuthorizationServer

WELL_KNOWN = {"inbox": "Inbox", "archive": "Archive", "deleteditems": "Deleted Items", "sentitems": "Sent Items",
              "junkemail": "Junk Email", "drafts": "Drafts"}
SIZE_PROPERTY = "Integer 0x0E08"
GRAPH_DEFAULT = "https://graph.microsoft.com/.default"  # the scope of tokens Graph takes
DEFAULT_PAGE = 10
MAX_PAGE = 1000


@dataclass
class Message:
    id: str
    folder: str  # folder id
    raw: bytes
    received: str
    is_read: bool = False
    seq: int = 0  # when it last changed in its folder


@dataclass
class Folder:
    id: str
    name: str
    parent: str | None = None
    well_known: str | None = None
    tombstones: dict[str, int] = field(default_factory=dict)  # message id -> when it left


@dataclass
class Fault:
    """What the next matching requests get instead of an answer."""

    kind: str  # "status" | "drop"
    times: int
    status: int = 429
    retry_after: str | None = "1"
    path: str = ""  # only requests whose path contains this


@dataclass
class Mailbox:
    user: str
    folders: dict[str, Folder] = field(default_factory=dict)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message,
                      "innerError": {"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                                     "request-id": secrets.token_hex(8), "client-request-id": secrets.token_hex(8)}}}


def _new_id(prefix: str = "AAMk") -> str:
    # Shaped like Graph's ids: URL-safe base64, long, ending in "=".
    return prefix + base64.urlsafe_b64encode(secrets.token_bytes(60)).decode().rstrip("=") + "AAA="


class GraphState:
    """Mailboxes, tokens, sent mail and faults, shared by the server's request threads."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.mailboxes: dict[str, Mailbox] = {}
        self.messages: dict[str, Message] = {}
        self.tokens: dict[str, float] = {}  # token -> expiry (time.time())
        self.seq = 0
        self.sent: list[dict[str, Any]] = []  # {"user", "mime" or "json", "save"}
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request answered
        self.max_page = MAX_PAGE  # the most changes a delta page holds, whatever the client prefers
        # Tokens of an authorization server (see accept_tokens_of): (token, user) -> None when the token
        # may read the user's mailbox, "invalid" (401) or "forbidden" (403). None: only tokens issued here.
        self.token_check: Callable[[str, str], str | None] | None = None

    def tick(self) -> int:
        self.seq += 1
        return self.seq

    def move(self, message: Message, target: Folder | None) -> None:
        """Take the message out of its folder (a tombstone there) and into ``target`` (None: deleted)."""
        for mailbox in self.mailboxes.values():
            if message.folder in mailbox.folders:
                mailbox.folders[message.folder].tombstones[message.id] = self.tick()
        if target is None:
            del self.messages[message.id]
            return
        target.tombstones.pop(message.id, None)
        message.folder = target.id
        message.seq = self.tick()


class GraphHandler(BaseHTTPRequestHandler):
    server: GraphHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests look at state, not at a request log on stderr."""

    # --- plumbing ------------------------------------------------------------------------------------

    def _send(self, status: int, payload: Any = None, headers: dict[str, str] | None = None,
              raw: bytes | None = None, content_type: str = "application/json") -> None:
        body = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
        self.send_response(status)
        if body or status not in (202, 204):
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _fault(self, path: str) -> bool:
        state = self.server.state
        with state.lock:
            fault = next((f for f in state.faults if f.times > 0 and f.path in path), None)
            if fault is None:
                return False
            fault.times -= 1
        if fault.kind == "drop":
            self._body()
            self.close_connection = True
            self.connection.close()  # no answer at all: the client sees the connection go
            return True
        self._send(fault.status, _error("TooManyRequests" if fault.status == 429 else "ServiceUnavailable",
                                        "Please retry again later."),
                   {"Retry-After": fault.retry_after} if fault.retry_after is not None else {})
        return True

    def _authorised(self, user: str) -> bool:
        state = self.server.state
        header = self.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        with state.lock:
            expiry = state.tokens.get(token)
            check = state.token_check
        if expiry is not None:
            verdict = None if expiry > time.time() else "expired"
        elif token and check is not None:
            verdict = check(token, user)
        else:
            verdict = "malformed" if token else "empty"
        if verdict is None:
            return True
        self._body()
        if verdict == "forbidden":
            # What Graph answers when an application access policy leaves the mailbox out.
            self._send(403, _error("ErrorAccessDenied", "Access to OData is disabled: [RAOP] : Blocked by tenant"
                                                        " configured AppOnly AccessPolicy settings."))
            return False
        message = {"expired": "Access token has expired or is not yet valid.", "empty": "Access token is empty.",
                   }.get(verdict, "IDX14100: JWT is not well formed, there are no dots (.).")
        self._send(401, _error("InvalidAuthenticationToken", message),
                   {"WWW-Authenticate": 'Bearer realm="", authorization_uri='
                                        '"https://login.microsoftonline.com/common/oauth2/authorize"'})
        return False

    def _route(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        prefix = self.server.prefix
        if not path.startswith(prefix + "/users/"):
            self._send(404, _error("BadRequest", f"Resource not found for the segment '{path}'."))
            return
        segments = [unquote(s) for s in path[len(prefix) + len("/users/"):].split("/")]
        if self._fault(path) or not self._authorised(segments[0]):
            return
        with self.server.state.lock:
            self.server.state.requests.append((self.command, path))
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        api = GraphApi(self.server, self, segments[0])
        api.dispatch(self.command, segments[1:], query)

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def do_PATCH(self) -> None:
        self._route()

    def do_DELETE(self) -> None:
        self._route()


class GraphApi:
    """One request's answer, from the state."""

    def __init__(self, server: GraphHTTPServer, handler: GraphHandler, user: str) -> None:
        self.server = server
        self.state = server.state
        self.handler = handler
        self.user = user

    def send(self, status: int, payload: Any = None, **kwargs: Any) -> None:
        self.handler._send(status, payload, **kwargs)

    def dispatch(self, method: str, rest: list[str], query: dict[str, str]) -> None:
        state = self.state
        body = self.handler._body()
        with state.lock:
            mailbox = state.mailboxes.get(self.user.lower())
            if mailbox is None:
                self.send(404, _error("ErrorInvalidUser", f"The requested user '{self.user}' is invalid."))
                return
            route = (method, rest[0] if rest else "", len(rest))
            if route[:2] == ("POST", "sendMail") and len(rest) == 1:
                self.send_mail(body)
            elif route[1] == "mailFolders":
                self.folders(mailbox, method, rest[1:], query)
            elif route[1] == "messages" and len(rest) >= 2:
                self.message(mailbox, method, rest[1], rest[2:], body)
            else:
                self.send(400, _error("BadRequest", "Unsupported request."))

    # --- folders and delta ---------------------------------------------------------------------------

    def find_folder(self, mailbox: Mailbox, ref: str) -> Folder | None:
        if ref.lower() in WELL_KNOWN:
            return next((f for f in mailbox.folders.values() if f.well_known == ref.lower()), None)
        return mailbox.folders.get(ref)

    def folders(self, mailbox: Mailbox, method: str, rest: list[str], query: dict[str, str]) -> None:
        if method != "GET":
            self.send(405, _error("ErrorInvalidRequest", "Method not allowed."))
            return
        if not rest:
            self.list_folders(mailbox, None, query)
            return
        folder = self.find_folder(mailbox, rest[0])
        if folder is None:
            self.send(404, _error("ErrorItemNotFound", "The specified object was not found in the store."))
        elif len(rest) == 1:
            held = [m for m in self.state.messages.values() if m.folder == folder.id]
            self.send(200, {**self.folder_json(folder), "totalItemCount": len(held),
                            "unreadItemCount": sum(1 for m in held if not m.is_read)})
        elif rest[1:] == ["childFolders"]:
            self.list_folders(mailbox, folder.id, query)
        elif rest[1:] == ["messages", "delta"]:
            self.delta(folder, query)
        else:
            self.send(400, _error("BadRequest", "Unsupported request."))

    @staticmethod
    def folder_json(folder: Folder) -> dict[str, Any]:
        return {"id": folder.id, "displayName": folder.name, "parentFolderId": folder.parent}

    def list_folders(self, mailbox: Mailbox, parent: str | None, query: dict[str, str]) -> None:
        root = next(f.id for f in mailbox.folders.values() if f.well_known == "msgfolderroot")
        found = [f for f in mailbox.folders.values() if f.parent == (parent or root)]
        wanted = re.fullmatch(r"displayName eq '((?:[^']|'')*)'", query.get("$filter", ""))
        if "$filter" in query and wanted is None:
            self.send(400, _error("ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes."))
            return
        if wanted:
            name = wanted.group(1).replace("''", "'")
            found = [f for f in found if f.name.lower() == name.lower()]
        self.send(200, {"value": [self.folder_json(f) for f in found]})

    def delta(self, folder: Folder, query: dict[str, str]) -> None:
        """A page of the round; the tokens say where the round started, where it ends, and how far it got."""
        state = self.state
        if query.get("$deltatoken") == "latest":
            # A deltaLink of this moment and no changes: the next round has what happens from now on.
            size = SIZE_PROPERTY.lower() in query.get("$expand", "").lower()
            token = {"folder": folder.id, "size": size, "page": DEFAULT_PAGE, "since": state.seq,
                     "filter": query.get("$filter", "")}
            base = f"{self.server.base_url}/users/{quote(self.user, safe='@')}/mailFolders/{folder.id}/messages/delta"
            self.send(200, {"value": [], "@odata.deltaLink": f"{base}?$deltatoken={_token(token)}"})
            return
        if "$skiptoken" in query or "$deltatoken" in query:
            try:
                token = json.loads(base64.urlsafe_b64decode(query.get("$skiptoken") or query["$deltatoken"]))
                since, upto, after, size = int(token["since"]), token.get("upto"), int(token.get("after", 0)), \
                    bool(token.get("size"))
                page_size, received_filter = int(token["page"]), str(token.get("filter", ""))
            except (ValueError, KeyError, TypeError, binascii.Error):
                self.send(410, _error("SyncStateNotFound", "The sync state generation is not found."))
                return
            if token.get("folder") != folder.id or since > state.seq:
                self.send(410, _error("SyncStateNotFound", "The sync state generation is not found."))
                return
        else:
            since, upto, after = 0, None, 0
            received_filter = query.get("$filter", "")
            size = SIZE_PROPERTY.lower() in query.get("$expand", "").lower()
            prefer = self.handler.headers.get("Prefer", "")
            wanted = re.search(r"odata\.maxpagesize=(\d+)", prefer)
            page_size = min(state.max_page, int(query.get("$top") or (wanted.group(1) if wanted else DEFAULT_PAGE)))
        if upto is None:
            upto = state.seq  # the round reports changes up to now; later ones go to the next round
        upto = int(upto)
        received_test = _received_filter(received_filter)
        if received_test is None:
            self.send(400, _error("ErrorInvalidUrlQueryFilter", "Delta takes only receivedDateTime ge|gt."))
            return
        changes: list[tuple[int, dict[str, Any]]] = [
            (m.seq, self.message_json(m, size)) for m in state.messages.values()
            if m.folder == folder.id and since < m.seq <= upto and m.seq > after and received_test(m.received)]
        if since:  # an initial round has nothing to remove
            changes += [(seq, {"@odata.type": "#microsoft.graph.message", "id": mid, "@removed": {"reason": "deleted"}})
                        for mid, seq in folder.tombstones.items() if since < seq <= upto and seq > after]
        changes.sort(key=lambda c: c[0])
        page, rest = changes[:page_size], changes[page_size:]
        base = f"{self.server.base_url}/users/{quote(self.user, safe='@')}/mailFolders/{folder.id}/messages/delta"
        common = {"folder": folder.id, "size": size, "page": page_size, "since": since, "filter": received_filter}
        result: dict[str, Any] = {"@odata.context": f"{self.server.base_url}/$metadata#Collection(message)",
                                  "value": [c[1] for c in page]}
        if rest:
            token = {**common, "upto": upto, "after": page[-1][0]}
            result["@odata.nextLink"] = f"{base}?$skiptoken={_token(token)}"
        else:
            result["@odata.deltaLink"] = f"{base}?$deltatoken={_token({**common, 'since': upto})}"
        self.send(200, result)

    @staticmethod
    def message_json(message: Message, size: bool) -> dict[str, Any]:
        data: dict[str, Any] = {"@odata.type": "#microsoft.graph.message", "id": message.id,
                                "receivedDateTime": message.received, "isRead": message.is_read,
                                "parentFolderId": message.folder}
        if size:
            data["singleValueExtendedProperties"] = [{"id": SIZE_PROPERTY, "value": str(len(message.raw))}]
        return data

    # --- messages ------------------------------------------------------------------------------------

    def message(self, mailbox: Mailbox, method: str, message_id: str, rest: list[str], body: bytes) -> None:
        message = self.state.messages.get(message_id)
        if message is None or message.folder not in mailbox.folders:
            self.send(404, _error("ErrorItemNotFound", "The specified object was not found in the store."))
            return
        if method == "GET" and rest == ["$value"]:
            self.send(200, raw=message.raw, content_type="text/plain")
        elif method == "GET" and not rest:
            self.send(200, self.message_json(message, False))
        elif method == "PATCH" and not rest:
            changes = json.loads(body or b"{}")
            if "isRead" in changes:
                message.is_read = bool(changes["isRead"])
                message.seq = self.state.tick()
            self.send(200, self.message_json(message, False))
        elif method == "POST" and rest == ["move"]:
            target = self.find_folder(mailbox, str(json.loads(body or b"{}").get("destinationId", "")))
            if target is None:
                self.send(400, _error("ErrorInvalidIdMalformed", "Id is malformed."))
                return
            self.state.move(message, target)
            self.send(201, self.message_json(message, False))
        elif method == "DELETE" and not rest:
            self.state.move(message, None)
            self.send(204)
        else:
            self.send(400, _error("BadRequest", "Unsupported request."))

    def send_mail(self, body: bytes) -> None:
        content_type = self.handler.headers.get("Content-Type", "")
        if content_type.startswith("text/plain"):
            try:
                mime = base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                self.send(400, _error("ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."))
                return
            self.state.sent.append({"user": self.user, "mime": mime})
        elif content_type.startswith("application/json"):
            payload = json.loads(body or b"{}")
            if "message" not in payload:
                self.send(400, _error("ErrorInvalidRequest", "Empty Payload. JSON content expected."))
                return
            self.state.sent.append({"user": self.user, "json": payload})
        else:
            self.send(415, _error("UnsupportedMediaType", "Unsupported Content-Type."))
            return
        self.send(202)


def _received_filter(text: str) -> Callable[[str], bool] | None:
    """The one $filter message delta takes, ``receivedDateTime ge|gt <instant>``, as a test; None if other."""
    if not text:
        return lambda received: True
    found = re.fullmatch(r"receivedDateTime (ge|gt) (\S+)", text.strip())
    if found is None:
        return None
    bound = datetime.fromisoformat(found.group(2).replace("Z", "+00:00"))
    strict = found.group(1) == "gt"

    def test(received: str) -> bool:
        when = datetime.fromisoformat(received.replace("Z", "+00:00"))
        return when > bound if strict else when >= bound

    return test


def _token(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()


class GraphHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: GraphState, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), GraphHandler)
        self.state = state
        self.prefix = "/v1.0"
        self.connections: set[socket.socket] = set()  # open client connections, closed when going away
        self.connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def go_away(self) -> None:
        """Stop serving and cut every open connection (kept-alive ones too), as a server that went down."""
        self.shutdown()
        self.server_close()
        with self.connections_lock:
            for connection in list(self.connections):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{self.prefix}"


class LocalGraph:
    """The server, run on a thread; mailboxes, tokens and faults set up by the tests through it."""

    def __init__(self) -> None:
        self.state = GraphState()
        self.httpd: GraphHTTPServer | None = None
        self.port = 0
        self.thread: threading.Thread | None = None

    def start(self) -> LocalGraph:
        """Serve (again, on the same port after ``stop``)."""
        self.httpd = GraphHTTPServer(self.state, self.port)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="local-graph", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        """Go away: no more connections accepted on the port."""
        if self.httpd is not None:
            self.httpd.go_away()
            self.httpd = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1.0"

    def __enter__(self) -> LocalGraph:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- set-up --------------------------------------------------------------------------------------

    def add_mailbox(self, user: str, folders: tuple[str, ...] = ()) -> None:
        """A mailbox with the well-known folders and top-level ``folders`` (names)."""
        with self.state.lock:
            mailbox = Mailbox(user)
            root = Folder(_new_id("AQMkRoot"), "Top of Information Store", None, "msgfolderroot")
            mailbox.folders[root.id] = root
            for well_known, name in WELL_KNOWN.items():
                folder = Folder(_new_id("AQMk"), name, root.id, well_known)
                mailbox.folders[folder.id] = folder
            self.state.mailboxes[user.lower()] = mailbox
            for name in folders:
                self.add_folder(user, name)

    def add_folder(self, user: str, name: str, parent: str | None = None) -> str:
        """A folder by display name, top-level or under the folder ``parent`` (an id); its id."""
        with self.state.lock:
            mailbox = self.state.mailboxes[user.lower()]
            root = next(f.id for f in mailbox.folders.values() if f.well_known == "msgfolderroot")
            folder = Folder(_new_id("AQMk"), name, parent or root)
            mailbox.folders[folder.id] = folder
            return folder.id

    def folder_id(self, user: str, name: str) -> str:
        mailbox = self.state.mailboxes[user.lower()]
        return next(f.id for f in mailbox.folders.values() if name.lower() in (f.well_known, f.name.lower()))

    def deliver(self, user: str, raw: bytes, folder: str = "inbox", received: datetime | None = None) -> str:
        """A mail arrives in a folder (well-known name or display name); its id."""
        with self.state.lock:
            message = Message(_new_id(), self.folder_id(user, folder), raw,
                              (received or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z")
            message.seq = self.state.tick()
            self.state.messages[message.id] = message
            return message.id

    def messages(self, user: str, folder: str = "inbox") -> list[Message]:
        with self.state.lock:
            folder_id = self.folder_id(user, folder)
            return sorted((m for m in self.state.messages.values() if m.folder == folder_id), key=lambda m: m.seq)

    def delete(self, message_id: str) -> None:
        """Someone else deletes a mail."""
        with self.state.lock:
            self.state.move(self.state.messages[message_id], None)

    def issue_token(self, lifetime: float = 3600) -> str:
        token = secrets.token_urlsafe(32)
        with self.state.lock:
            self.state.tokens[token] = time.time() + lifetime
        return token

    def expire(self, token: str) -> None:
        with self.state.lock:
            self.state.tokens[token] = 0.0

    def fail(self, times: int, status: int = 429, retry_after: str | None = "1", path: str = "") -> None:
        """The next ``times`` requests (whose path contains ``path``) are answered ``status``."""
        with self.state.lock:
            self.state.faults.append(Fault("status", times, status, retry_after, path))

    def drop(self, times: int, path: str = "") -> None:
        """The next ``times`` requests (whose path contains ``path``) get no answer: the connection closes."""
        with self.state.lock:
            self.state.faults.append(Fault("drop", times, path=path))

    @property
    def sent(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return list(self.state.sent)

    def requests(self, method: str = "", contains: str = "") -> list[tuple[str, str]]:
        with self.state.lock:
            return [r for r in self.state.requests if r[0].startswith(method) and contains in r[1]]



def accept_tokens_of(auth: AuthorizationServer) -> Callable[[str, str], str | None]:
    """Graph's check of a token from the local identity platform: issued there for Graph's scope, unexpired
    and unrevoked; an app-only token reads only the mailboxes its application access policy names (the
    app's ``mailboxes``; none named: every mailbox), a delegated one only its user's."""

    def check(token: str, user: str) -> str | None:
        with auth.lock:
            issued = auth.access.get(token)
            app = auth.apps.get(issued.client_id) if issued else None
            policy = {m.lower() for m in app.mailboxes} if app else set()
        if issued is None or issued.revoked or issued.expires_at <= time.time() or issued.scope != GRAPH_DEFAULT:
            return "invalid"
        if issued.user is None:
            return None if not policy or user.lower() in policy else "forbidden"
        return None if issued.user.lower() == user.lower() else "forbidden"

    return check


def local_graph_mailbox(graph: LocalGraph, settings: Settings, name: str, after: str | None = None,
                        move_to: str | None = None, folder: str = "inbox", folders: tuple[str, ...] = ("Processed",),
                        auth: AuthorizationServer | None = None, ca_bundle: str | None = None) -> MailboxRecord:
    """A mailbox ``<name>@contoso.example`` on the local Graph (with ``folders`` beside the well-known ones),
    registered as a ``--protocol graph`` mailbox. With ``auth``, it signs in as an app registered there
    (client credentials, its own tenant, client id and secret; ``ca_bundle`` trusts the server's
    certificate); without, its secret holds a token the Graph server issued."""
    user = f"{name}@contoso.example"
    graph.add_mailbox(user, folders)
    spec = MailboxSpec(name=name, protocol="graph", host=graph.base_url, username=user, folder=folder,
                       after=after, move_to=move_to, ca_bundle=ca_bundle)
    if auth is None:
        return add_mailbox(spec, settings, graph.issue_token())
    tenant, client_id, secret = str(uuid.uuid4()), str(uuid.uuid4()), secrets.token_urlsafe(24)
    auth.register_microsoft_app(tenant, client_id, secret, mailboxes={user})
    spec.auth, spec.tenant, spec.client_id, spec.oauth_endpoint = "microsoft", tenant, client_id, auth.base_url
    return add_mailbox(spec, settings, oauth_secret={"client_secret": secret})
