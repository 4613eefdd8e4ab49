"""Microsoft Graph over HTTPS: bearer tokens, throttling waited out, Graph's errors made ours.

The mail source (:mod:`mailintake.sources.graph`) and outgoing mail (``sendMail``) talk to Graph through
:class:`GraphClient`. It speaks HTTP with urllib3, which the layer already ships as botocore's own HTTP
library: a well-kept client with connection pooling, streamed responses and TLS verification, so Graph
needs no second HTTP stack (requests or httpx would add a dependency for nothing this needs). The Graph
SDK for Python (msgraph-sdk) is not used: it is asynchronous, pulls in kiota and a large generated model
(far over the handler's import budget), and offers nothing for the few calls made here.

Tokens come from a :class:`BearerTokens`, the small interface the OAuth module provides (client
credentials against the Microsoft identity platform, cached per container until shortly before expiry).
A 401 makes the client drop the token it used and try once more with a fresh one.

Throttling (429, and 503 or 504 with ``Retry-After``) is waited out as Graph asks, but only while the
caller's ``seconds_left`` allows: a wait longer than the run has left raises :class:`GraphThrottled`, an
interruption (the run ends, what was stored is queued, the next run goes on). A server that cannot be
reached, drops the connection or answers 5xx raises :class:`GraphUnavailable`, also an interruption: both
are ``ConnectionError`` subclasses, so they fall under the mail sources' ``INTERRUPTIONS``.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import quote

import urllib3
from urllib3.exceptions import HTTPError

GRAPH_BASE_URL = "https://graph.microsoft.com/v1.0"
# Ids that survive a move (a mail's id otherwise changes with its folder), so that a mail's S3 key stays
# the same whatever happens to it on the server.
IMMUTABLE_IDS = 'IdType="ImmutableId"'
# Waits for a throttled request, beyond which the run gives up even with time left: Graph asking again
# and again means the mailbox is busy elsewhere, and the next run will find it calmer.
MAX_THROTTLED = 8
# Seconds to connect and between bytes of an answer (a mail's $value streams: this is not the whole download).
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 30
# A wait Graph asks for without saying how long (a 503 without Retry-After), doubling from here.
FIRST_BACKOFF_SECONDS = 1.0


class BearerTokens(Protocol):
    """Access tokens for one account and scope (the OAuth module's token provider is one)."""

    def token(self) -> str:
        """A token valid now (cached until shortly before it expires)."""

    def invalidate(self, token: str) -> None:
        """Forget ``token``: the server refused it, the next ``token()`` must be a new one."""


class StaticToken:
    """A token given as is (a secret holding an access token): what the tests and short trials use."""

    def __init__(self, token: str) -> None:
        self._token = token

    def token(self) -> str:
        return self._token

    def invalidate(self, token: str) -> None:
        """Nothing to renew: the next request fails with the same refusal, which is reported."""


class GraphError(Exception):
    """Graph refused a request; ``status`` and ``code`` as Graph gave them."""

    def __init__(self, status: int, code: str, message: str, request: str) -> None:
        super().__init__(f"{request}: HTTP {status} {code}: {message}"[:1000])
        self.status = status
        self.code = code


class GraphAuthError(GraphError):
    """401 or 403: the token is refused, or the app lacks a permission or the mailbox is outside its scope."""


class GraphNotFound(GraphError):
    """404: no such user, folder or message."""


class GraphSyncReset(GraphError):
    """410: a delta link that Graph no longer knows (expired sync state); the folder must be read anew."""


class GraphUnavailable(ConnectionError):
    """Graph cannot be reached, dropped the connection or failed (5xx): the server went away."""


class GraphThrottled(GraphUnavailable):
    """Graph asked to wait longer than the run has left."""


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date (RFC 9110 10.2.3); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def _error_of(status: int, body: bytes, request: str) -> GraphError | GraphUnavailable:
    """The exception for an error answer; Graph's body is ``{"error": {"code": ..., "message": ...}}``."""
    code, message = "", body[:300].decode("utf-8", "replace")
    try:
        error = json.loads(body).get("error") or {}
        code, message = str(error.get("code", "")), str(error.get("message", ""))
    except (ValueError, AttributeError):
        pass
    if status >= 500:
        return GraphUnavailable(f"{request}: HTTP {status} {code}: {message}"[:1000])
    kind = {401: GraphAuthError, 403: GraphAuthError, 404: GraphNotFound, 410: GraphSyncReset}.get(status, GraphError)
    return kind(status, code, message, request)


def user_path(user: str) -> str:
    """``/users/{id or UPN}``, the id quoted as a path segment."""
    return "/users/" + quote(user, safe="@")


class GraphClient:
    """Requests to one Graph endpoint with one account's tokens, within a run's time."""

    def __init__(self, base_url: str, tokens: BearerTokens, seconds_left: Callable[[], float],
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.seconds_left = seconds_left
        # A dropped connection is retried once for idempotent methods (urllib3's default list, without POST
        # and PATCH); status codes are this class's to handle, redirects are not expected from Graph.
        retries = urllib3.Retry(total=2, connect=2, read=1, status=0, other=0, redirect=0, raise_on_status=False)
        self.pool = urllib3.PoolManager(ssl_context=ssl_context or ssl.create_default_context(), retries=retries,
                                        timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT))

    def url(self, path: str) -> str:
        """An absolute URL: links Graph gave (nextLink, deltaLink) as they are, paths under the base URL."""
        return path if path.startswith(("https://", "http://")) else self.base_url + path

    def request(self, method: str, path: str, *, body: bytes | None = None, content_type: str | None = None,
                headers: dict[str, str] | None = None, stream: bool = False) -> urllib3.BaseHTTPResponse:
        """The successful answer (2xx); raises GraphError, GraphUnavailable or GraphThrottled.

        With ``stream`` the body is left unread, to be read with ``read_parts`` (and the connection then
        returned to the pool).
        """
        url = self.url(path)
        where = f"{method} {url.split('?')[0]}"
        fresh_token = False
        throttled = 0
        while True:
            token = self.tokens.token()
            sent = {"Authorization": f"Bearer {token}", "Prefer": IMMUTABLE_IDS, **(headers or {})}
            if content_type:
                sent["Content-Type"] = content_type
            try:
                response = self.pool.request(method, url, body=body, headers=sent, preload_content=not stream)
            except HTTPError as exc:
                raise GraphUnavailable(f"{where}: {type(exc).__name__}: {exc}") from exc
            status = response.status
            if 200 <= status < 300:
                return response
            data = self._read_error(response)
            if status in (429, 503, 504):
                throttled += 1
                self._wait(response.headers.get("Retry-After"), throttled, where, status)
                continue
            if status == 401 and not fresh_token:
                self.tokens.invalidate(token)  # expired or revoked under us: one more try with a new one
                fresh_token = True
                continue
            raise _error_of(status, data, where)

    @staticmethod
    def _read_error(response: urllib3.BaseHTTPResponse) -> bytes:
        try:
            return bytes(response.data[: 64 * 1024])
        except HTTPError:
            return b""
        finally:
            response.release_conn()

    def _wait(self, retry_after: str | None, attempt: int, where: str, status: int) -> None:
        wait = retry_after_seconds(retry_after)
        if wait is None:
            wait = FIRST_BACKOFF_SECONDS * 2 ** (attempt - 1)
        left = self.seconds_left()
        if attempt > MAX_THROTTLED or wait > left:
            raise GraphThrottled(f"{where}: HTTP {status}, asked to wait {wait:.0f} s with {max(left, 0):.0f} s"
                                 f" left (attempt {attempt})")
        time.sleep(wait)

    def json(self, method: str, path: str, payload: Any = None, headers: dict[str, str] | None = None) -> Any:
        """A JSON request and its JSON answer (None for an empty one, as 202 and 204 are)."""
        body = None if payload is None else json.dumps(payload).encode()
        response = self.request(method, path, body=body, content_type="application/json" if body else None,
                                headers=headers)
        data = response.data
        try:
            return json.loads(data) if data else None
        except ValueError as exc:
            raise GraphUnavailable(f"{method} {path.split('?')[0]}: answer is not JSON") from exc

    def read_parts(self, path: str, part_bytes: int) -> Iterator[bytes]:
        """A GET's body in parts of ``part_bytes`` (the last shorter), never whole in memory."""
        response = self.request("GET", path, stream=True)
        buffer = bytearray()
        try:
            for data in response.stream(part_bytes):
                buffer += data
                while len(buffer) >= part_bytes:
                    yield bytes(buffer[:part_bytes])
                    del buffer[:part_bytes]
            if buffer:
                yield bytes(buffer)
        except HTTPError as exc:
            raise GraphUnavailable(f"GET {path.split('?')[0]}: {type(exc).__name__}: {exc}") from exc
        finally:
            response.release_conn()

    def read(self, path: str) -> bytes:
        """A GET's whole body."""
        response = self.request("GET", path, stream=True)
        try:
            return bytes(response.read())
        except HTTPError as exc:
            raise GraphUnavailable(f"GET {path.split('?')[0]}: {type(exc).__name__}: {exc}") from exc
        finally:
            response.release_conn()
