"""A local OAuth 2.0 authorization server: the Microsoft identity platform's and Google's token endpoints.

Tests and local runs cannot reach login.microsoftonline.com or oauth2.googleapis.com, so this server speaks
the documented subset the real client libraries (msal, google-auth) use, over HTTPS on loopback with the
local stack's certificate (msal accepts https authorities only):

- Microsoft (``/{tenant}/...``): OpenID discovery (``/v2.0/.well-known/openid-configuration``, which msal
  reads before its first token), the token endpoint ``/oauth2/v2.0/token`` with the ``client_credentials``
  grant (client secret, or a certificate's signed client assertion), ``refresh_token`` (the refresh token
  rotates) and the device-code grant with ``/oauth2/v2.0/devicecode``; errors in its documented shape
  (``error``, ``error_description`` starting with the AADSTS code, ``error_codes``).
- Google (``/token``, and the consent page ``/o/oauth2/v2/auth`` redirecting to the client's loopback
  address): ``authorization_code`` with PKCE, ``refresh_token`` and the service account's ``jwt-bearer``
  grant (domain-wide delegation: ``sub`` names the user impersonated); errors ``invalid_grant``,
  ``invalid_client``, ``unauthorized_client`` as Google answers them.
- RFC 7662 introspection for Dovecot's ``oauth2`` passdb (the token in a POST form, or as a bearer), on
  plain HTTP at ``dovecot.OAUTH_INTROSPECTION_PORT`` (loopback; Dovecot's configuration names it): a token
  is active for a user while it is unexpired, unrevoked, and (app-only tokens) the app holds that mailbox.

What an admin does in the providers' consoles is a method here: register an app, grant it a mailbox
(``Add-MailboxPermission``), revoke consent, expire every token early (a server-side expiry the client
cannot know of). Every token and secret is random per server; nothing is written to disk.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailintake.localstack import dovecot

HOST = "127.0.0.1"
OUTLOOK_DEFAULT = "https://outlook.office365.com/.default"
GRAPH_DEFAULT = "https://graph.microsoft.com/.default"
GOOGLE_MAIL = "https://mail.google.com/"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass
class MicrosoftApp:
    tenant: str
    client_id: str
    secret: str | None = None
    secret_expired: bool = False
    certificate_thumbprint: str | None = None  # SHA-1 of the DER certificate, as x5t
    certificate_key: Any = None  # its public key
    consented: bool = True  # admin consent granted (API permissions)
    mailboxes: set[str] = field(default_factory=set)  # Add-MailboxPermission FullAccess
    public: bool = False  # a public client (device code, refresh tokens)


@dataclass
class Issued:
    token: str
    client_id: str
    user: str | None  # the signed-in or impersonated user; None for app-only
    scope: str
    expires_at: float
    revoked: bool = False


@dataclass
class RefreshGrant:
    client_id: str
    user: str
    scope: str
    revoked: bool = False


@dataclass
class ServiceAccount:
    client_email: str
    client_id: str
    public_key: Any
    delegated_scopes: set[str] = field(default_factory=set)  # domain-wide delegation in the Admin console


def _error_body(error: str, code: int, description: str) -> dict[str, Any]:
    """The Microsoft identity platform's error answer."""
    return {"error": error, "error_description": f"AADSTS{code}: {description}\r\nTrace ID: {secrets.token_hex(8)}",
            "error_codes": [code], "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "trace_id": secrets.token_hex(8), "correlation_id": secrets.token_hex(8)}


def _google_error(error: str, description: str) -> dict[str, Any]:
    """Google's token endpoint's error answer."""
    return {"error": error, "error_description": description}


def _basic_client(request: BaseHTTPRequestHandler) -> dict[str, str]:
    """Client credentials sent as HTTP Basic (client_secret_basic, RFC 6749 2.3.1), as form fields."""
    header = str(request.headers.get("Authorization") or "")
    if not header.startswith("Basic "):
        return {}
    client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
    return {"client_id": urllib.parse.unquote_plus(client_id), "client_secret": urllib.parse.unquote_plus(secret)}


class _Answered(Exception):
    """The route wrote its own answer (a redirect)."""


class OAuthError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("error"))
        self.status = status
        self.body = body


class AuthorizationServer:
    """The server's state and grants; :meth:`start` serves it, :meth:`stop` ends it."""

    def __init__(self, cert: Path, key: Path, token_seconds: int = 3600,
                 introspection_port: int = dovecot.OAUTH_INTROSPECTION_PORT) -> None:
        self.cert, self.key = cert, key
        self.token_seconds = token_seconds
        self.introspection_port = introspection_port
        self.apps: dict[str, MicrosoftApp] = {}
        self.google_clients: dict[str, str] = {}  # client id -> secret
        self.service_accounts: dict[str, ServiceAccount] = {}  # client_email -> account
        self.access: dict[str, Issued] = {}
        self.refresh: dict[str, RefreshGrant] = {}
        self.devices: dict[str, dict[str, Any]] = {}  # device code -> {client_id, user_code, user, scope}
        self.codes: dict[str, dict[str, Any]] = {}  # Google authorization code -> its grant
        self.token_requests = 0
        self.introspections = 0
        self.lock = threading.Lock()
        self._servers: list[ThreadingHTTPServer] = []
        self.port = 0

    # --- what an admin does in the consoles ---------------------------------------------------------------

    def register_microsoft_app(self, tenant: str, client_id: str, secret: str | None = None,
                               mailboxes: set[str] | None = None, public: bool = False) -> MicrosoftApp:
        app = MicrosoftApp(tenant, client_id, secret, mailboxes=set(mailboxes or ()), public=public)
        self.apps[client_id] = app
        return app

    def add_certificate(self, client_id: str, certificate_pem: bytes) -> None:
        cert = x509.load_pem_x509_certificate(certificate_pem)
        app = self.apps[client_id]
        app.certificate_thumbprint = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
        app.certificate_key = cert.public_key()

    def register_google_client(self, client_id: str, secret: str) -> None:
        self.google_clients[client_id] = secret

    def issue_refresh_token(self, client_id: str, user: str, scope: str) -> str:
        """What a user's sign-in leaves behind (consent given)."""
        token = "rt-" + secrets.token_urlsafe(24)
        self.refresh[token] = RefreshGrant(client_id, user, scope)
        return token

    def register_service_account(self, client_email: str, client_id: str, scopes: set[str]) -> dict[str, Any]:
        """A service account with a new key and domain-wide delegation of ``scopes``; the key file's JSON."""
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.service_accounts[client_email] = ServiceAccount(client_email, client_id, private.public_key(), set(scopes))
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        return {"type": "service_account", "project_id": "local", "private_key_id": secrets.token_hex(20),
                "private_key": pem, "client_email": client_email, "client_id": client_id,
                "token_uri": f"{self.base_url}/token"}

    def revoke_consent(self, client_id: str) -> None:
        """Consent withdrawn (Microsoft: admin consent revoked; Google: access removed): its tokens die too."""
        with self.lock:
            if client_id in self.apps:
                self.apps[client_id].consented = False
            for grant in self.refresh.values():
                if grant.client_id == client_id:
                    grant.revoked = True
            for issued in self.access.values():
                if issued.client_id == client_id:
                    issued.revoked = True

    def expire_all(self) -> None:
        """Every access token issued so far expires now, before the lifetime the clients were told."""
        with self.lock:
            for issued in self.access.values():
                issued.expires_at = 0.0

    def approve_device(self, user_code: str, user: str) -> None:
        """The user entered the code at the verification page and signed in."""
        with self.lock:
            for device in self.devices.values():
                if device["user_code"] == user_code:
                    device["user"] = user

    # --- serving ------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"https://{HOST}:{self.port}"

    def start(self) -> AuthorizationServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._answer(self, "GET")

            def do_POST(self) -> None:
                server._answer(self, "POST")

        tls = ThreadingHTTPServer((HOST, 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        tls.socket = context.wrap_socket(tls.socket, server_side=True)
        self.port = tls.server_address[1]
        plain = ThreadingHTTPServer((HOST, self.introspection_port), Handler)
        self._servers = [tls, plain]
        for httpd in self._servers:
            threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        for httpd in self._servers:
            httpd.shutdown()
            httpd.server_close()
        self._servers = []

    def __enter__(self) -> AuthorizationServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _answer(self, request: BaseHTTPRequestHandler, method: str) -> None:
        url = urllib.parse.urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        form = dict(urllib.parse.parse_qsl(request.rfile.read(length).decode())) if method == "POST" else {}
        query = dict(urllib.parse.parse_qsl(url.query))
        parts = [p for p in url.path.split("/") if p]
        try:
            status, body = self._route(method, parts, form, query, request)
        except OAuthError as exc:
            status, body = exc.status, exc.body
        except _Answered:
            return
        data = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json; charset=utf-8")
        request.send_header("Content-Length", str(len(data)))
        request.send_header("Cache-Control", "no-store")
        request.end_headers()
        request.wfile.write(data)

    def _route(self, method: str, parts: list[str], form: dict[str, str], query: dict[str, str],
               request: BaseHTTPRequestHandler) -> tuple[int, dict[str, Any]]:
        if parts == ["introspect"]:
            # RFC 7662 sends the token in a POST form; Dovecot's "auth" mode as a bearer (see dovecot.py).
            bearer = str(request.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
            return 200, self.introspect(form.get("token") or bearer, query.get("user"))
        if parts == ["token"] and method == "POST":
            return 200, self._google_token({**_basic_client(request), **form})
        if parts == ["o", "oauth2", "v2", "auth"] and method == "GET":
            return self._google_consent(query, request)
        if len(parts) >= 2 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            return self._discovery(parts[0])
        if len(parts) == 4 and parts[1:3] == ["oauth2", "v2.0"] and method == "POST":
            self._known_tenant(parts[0])
            if parts[3] == "token":
                return 200, self._microsoft_token(parts[0], form, request)
            if parts[3] == "devicecode":
                return 200, self._device_code(form)
        return 404, {"error": "not_found"}

    # --- Microsoft ----------------------------------------------------------------------------------------

    def _known_tenant(self, tenant: str) -> None:
        if tenant not in {a.tenant for a in self.apps.values()} and tenant not in ("common", "organizations"):
            raise OAuthError(400, _error_body("invalid_request", 90002, f"Tenant '{tenant}' not found. Check to"
                                              " make sure you have the correct tenant ID and are signing into the"
                                              " correct cloud."))

    def _discovery(self, tenant: str) -> tuple[int, dict[str, Any]]:
        self._known_tenant(tenant)
        base = f"{self.base_url}/{tenant}"
        return 200, {"issuer": f"{base}/v2.0", "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                     "token_endpoint": f"{base}/oauth2/v2.0/token",
                     "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                     "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
                     "response_types_supported": ["code", "id_token", "token"], "tenant_region_scope": "EU"}

    def _app(self, tenant: str, client_id: str) -> MicrosoftApp:
        app = self.apps.get(client_id)
        if app is None or app.tenant != tenant:
            raise OAuthError(400, _error_body("unauthorized_client", 700016, f"Application with identifier"
                                              f" '{client_id}' was not found in the directory '{tenant}'."))
        return app

    def _authenticate_client(self, app: MicrosoftApp, form: dict[str, str], token_url: str) -> None:
        assertion = form.get("client_assertion")
        if assertion:
            header = jwt.get_unverified_header(assertion)
            x5t = base64.urlsafe_b64decode(str(header.get("x5t", "")) + "==").hex() if header.get("x5t") else ""
            try:
                if not app.certificate_key or x5t != app.certificate_thumbprint:
                    raise jwt.InvalidTokenError("unknown certificate")
                jwt.decode(assertion, app.certificate_key, algorithms=["RS256", "PS256"], audience=token_url)
            except jwt.InvalidTokenError as exc:
                raise OAuthError(401, _error_body("invalid_client", 700027, f"Client assertion failed signature"
                                                  f" validation ({exc}).")) from exc
            return
        if form.get("client_secret") != app.secret or not app.secret:
            raise OAuthError(401, _error_body("invalid_client", 7000215, "Invalid client secret provided. Ensure"
                                              " the secret being sent in the request is the client secret value,"
                                              f" not the client secret ID, for a secret added to app"
                                              f" '{app.client_id}'."))
        if app.secret_expired:
            raise OAuthError(401, _error_body("invalid_client", 7000222, "The provided client secret keys for app"
                                              f" '{app.client_id}' are expired."))

    def _microsoft_token(self, tenant: str, form: dict[str, str], request: BaseHTTPRequestHandler) -> dict[str, Any]:
        with self.lock:
            self.token_requests += 1
        grant = form.get("grant_type")
        app = self._app(tenant, form.get("client_id", ""))
        token_url = f"{self.base_url}/{tenant}/oauth2/v2.0/token"
        scope = " ".join(s for s in form.get("scope", "").split() if s not in ("offline_access", "openid", "profile"))
        if grant == "client_credentials":
            self._authenticate_client(app, form, token_url)
            if not app.consented:
                raise OAuthError(400, _error_body("invalid_grant", 65001, f"The user or administrator has not"
                                                  f" consented to use the application with ID '{app.client_id}'."))
            if scope not in (OUTLOOK_DEFAULT, GRAPH_DEFAULT):
                raise OAuthError(400, _error_body("invalid_scope", 70011, f"The provided value for scope {scope}"
                                                  " is not valid. Client credential flows must have a scope value"
                                                  " with /.default suffixed to the resource identifier."))
            return self._bearer(app.client_id, None, scope)
        if grant == "refresh_token":
            held = self.refresh.get(form.get("refresh_token", ""))
            if held is None or held.revoked or held.client_id != app.client_id:
                raise OAuthError(400, _error_body("invalid_grant", 50173, "The provided grant has expired due to it"
                                                  " being revoked, a fresh auth token is needed."))
            return self._rotate(form.get("refresh_token", ""), held, scope)
        if grant == DEVICE_CODE:
            device = self.devices.get(form.get("device_code", ""))
            if device is None:
                raise OAuthError(400, _error_body("expired_token", 70020, "The provided device code has expired."))
            if device.get("user") is None:
                raise OAuthError(400, _error_body("authorization_pending", 70016, "Pending end-user authorization."))
            del self.devices[form["device_code"]]
            refresh = self.issue_refresh_token(app.client_id, device["user"], scope)
            return self._rotate(refresh, self.refresh[refresh], scope)
        raise OAuthError(400, _error_body("unsupported_grant_type", 70003, f"The app requested an unsupported"
                                          f" grant type '{grant}'."))

    def _rotate(self, old: str, held: RefreshGrant, scope: str) -> dict[str, Any]:
        """A new access token and a new refresh token (Microsoft rotates them); the old one stays valid, as
        Microsoft's do until they expire."""
        answer = self._bearer(held.client_id, held.user, scope or held.scope)
        answer["refresh_token"] = self.issue_refresh_token(held.client_id, held.user, held.scope)
        answer["scope"] = f"{scope or held.scope} offline_access"
        return answer

    def _device_code(self, form: dict[str, str]) -> dict[str, Any]:
        code = secrets.token_urlsafe(24)
        user_code = secrets.token_hex(4).upper()
        self.devices[code] = {"client_id": form.get("client_id"), "user_code": user_code, "user": None}
        uri = f"{self.base_url}/devicelogin"
        return {"device_code": code, "user_code": user_code, "verification_uri": uri, "expires_in": 900,
                "interval": 1, "message": f"To sign in, use a web browser to open the page {uri} and enter the"
                                         f" code {user_code} to authenticate."}

    def _bearer(self, client_id: str, user: str | None, scope: str) -> dict[str, Any]:
        token = "at-" + secrets.token_urlsafe(32)
        with self.lock:
            self.access[token] = Issued(token, client_id, user, scope, time.time() + self.token_seconds)
        return {"token_type": "Bearer", "expires_in": self.token_seconds, "ext_expires_in": self.token_seconds,
                "access_token": token, "scope": scope}

    # --- Google -------------------------------------------------------------------------------------------

    def _google_token(self, form: dict[str, str]) -> dict[str, Any]:
        with self.lock:
            self.token_requests += 1
        grant = form.get("grant_type")
        if grant == "refresh_token":
            client_id = form.get("client_id", "")
            if self.google_clients.get(client_id) != form.get("client_secret") or client_id not in self.google_clients:
                raise OAuthError(401, _google_error("invalid_client", "The OAuth client was not found."))
            held = self.refresh.get(form.get("refresh_token", ""))
            if held is None or held.revoked or held.client_id != client_id:
                raise OAuthError(400, _google_error("invalid_grant", "Token has been expired or revoked."))
            answer = self._bearer(client_id, held.user, held.scope)
            answer["scope"] = held.scope
            answer.pop("ext_expires_in")
            return answer
        if grant == JWT_BEARER:
            return self._google_service_account(form.get("assertion", ""))
        if grant == "authorization_code":
            return self._google_code(form)
        raise OAuthError(400, {"error": "unsupported_grant_type", "error_description": f"Invalid grant_type: {grant}"})

    def _google_service_account(self, assertion: str) -> dict[str, Any]:
        try:
            issuer = jwt.decode(assertion, options={"verify_signature": False}).get("iss", "")
            account = self.service_accounts.get(issuer)
            if account is None:
                raise OAuthError(401, _google_error("invalid_client", "The OAuth client was not found."))
            # google-auth names Google's token URL as the audience whatever URL it posts to, as Google asks.
            claims = jwt.decode(assertion, account.public_key, algorithms=["RS256"],
                                audience=[f"{self.base_url}/token", "https://oauth2.googleapis.com/token"])
        except jwt.InvalidTokenError as exc:
            raise OAuthError(400, _google_error("invalid_grant", f"Invalid JWT Signature ({exc}).")) from exc
        scopes = set(str(claims.get("scope", "")).split())
        if not scopes or not scopes <= account.delegated_scopes:
            raise OAuthError(401, {"error": "unauthorized_client", "error_description": "Client is unauthorized to"
                                   " retrieve access tokens using this method, or client not authorized for any of"
                                   " the scopes requested."})
        answer = self._bearer(account.client_id, claims.get("sub") or account.client_email, " ".join(sorted(scopes)))
        answer.pop("ext_expires_in")
        return answer

    def _google_consent(self, query: dict[str, str], request: BaseHTTPRequestHandler) -> tuple[int, dict[str, Any]]:
        """The consent page: the user named by ``login_hint`` signs in and allows access at once; the
        browser goes back to the client's loopback redirect with the code (RFC 8252)."""
        redirect = query.get("redirect_uri", "")
        if query.get("client_id") not in self.google_clients or not redirect.startswith("http://127.0.0.1:"):
            return 400, {"error": "invalid_request", "error_description": "Invalid client or redirect_uri"}
        code = "code-" + secrets.token_urlsafe(16)
        self.codes[code] = {"client_id": query["client_id"], "user": query.get("login_hint", ""),
                            "scope": query.get("scope", ""), "redirect_uri": redirect,
                            "challenge": query.get("code_challenge")}
        back = {"code": code, "state": query.get("state", ""), "scope": query.get("scope", "")}
        target = f"{redirect}?{urllib.parse.urlencode(back)}"
        request.send_response(302)
        request.send_header("Location", target)
        request.send_header("Content-Length", "0")
        request.end_headers()
        raise _Answered

    def _google_code(self, form: dict[str, str]) -> dict[str, Any]:
        held = self.codes.pop(form.get("code", ""), None)
        client_id = form.get("client_id", "")
        if self.google_clients.get(client_id) != form.get("client_secret"):
            raise OAuthError(401, _google_error("invalid_client", "The OAuth client was not found."))
        verifier = form.get("code_verifier", "")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if (held is None or held["client_id"] != client_id or held["redirect_uri"] != form.get("redirect_uri")
                or (held["challenge"] and held["challenge"] != digest)):
            raise OAuthError(400, _google_error("invalid_grant", "Malformed auth code."))
        refresh = self.issue_refresh_token(client_id, held["user"], held["scope"])
        answer = self._bearer(client_id, held["user"], held["scope"])
        answer.pop("ext_expires_in")
        answer["refresh_token"] = refresh
        return answer

    # --- introspection (RFC 7662) -------------------------------------------------------------------------

    def introspect(self, token: str, user: str | None) -> dict[str, Any]:
        """Whether ``token`` lets ``user`` in: active, and ``username`` the user it acts for."""
        with self.lock:
            self.introspections += 1
            issued = self.access.get(token)
        if issued is None or issued.revoked or issued.expires_at <= time.time():
            return {"active": False}
        if issued.user is None:
            # App-only: the app acts for a mailbox it was given (Add-MailboxPermission), with the scope.
            # Dovecot 2.3 introspects the token alone (the login name is not in the request): an app here
            # holds one mailbox, which the answer names and Dovecot compares with the login name.
            app = self.apps.get(issued.client_id)
            held = sorted(app.mailboxes) if app and app.consented and issued.scope == OUTLOOK_DEFAULT else []
            if user is not None:
                held = [user] if user in held else []
            if len(held) != 1:
                return {"active": False}
            acting_for = held[0]
        else:
            acting_for = issued.user
        return {"active": True, "username": acting_for, "client_id": issued.client_id, "scope": issued.scope,
                "token_type": "Bearer", "exp": int(issued.expires_at)}


def self_signed(common_name: str = "mailintake-test-app") -> tuple[bytes, bytes]:
    """A certificate and its private key (PEM), as an admin makes for an app registration's credential."""
    import datetime

    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=365)).sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))
