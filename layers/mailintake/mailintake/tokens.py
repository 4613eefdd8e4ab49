"""OAuth 2.0 access tokens for mailboxes that do not log in with a password (Microsoft 365, Google).

A :class:`TokenProvider` (one per container, owned by :class:`mailintake.runtime.Runtime`) hands out a
bearer token for a mailbox and a scope, from its cache until shortly before the token expires; a source
whose token the server refused calls :meth:`TokenProvider.rejected` and asks again, once. Every failure
to get a token is a :class:`TokenError` whose message says what to fix in the provider's console: the
fetch run ends as ``config-error`` on it and the admin is told once (``config_check``).

The grants, done by the providers' own libraries (msal, google-auth; imported only when a token is
needed, so the handlers' cold start does not pay for them):

- ``microsoft`` + ``app``: client credentials (client secret, or certificate) for the tenant, with
  msal's ``ConfidentialClientApplication``; scope ``https://outlook.office365.com/.default`` for IMAP,
  POP3 and SMTP, ``https://graph.microsoft.com/.default`` for Graph.
- ``microsoft`` + ``delegated``: a refresh token from a device-code sign-in (``mailintake mailbox add
  --delegated``), redeemed with msal; the refresh token the server rotates in is written back.
- ``google`` + ``service-account``: a service account's key with domain-wide delegation, impersonating
  the mailbox's user (``subject``), with google-auth.
- ``google`` + ``refresh-token``: an OAuth client and a refresh token, with google-auth.

What the secret (in Secrets Manager, under the mailbox's ``secret_name``) holds, as JSON: ``client_secret``,
or ``certificate`` (PEM private key and certificate) and ``thumbprint``; ``refresh_token``; or
``service_account`` (the key file's JSON). A secret is never logged nor put into a record or an event:
messages name the secret, never its value.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from hashlib import sha256
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mailintake.settings import Settings
    from mailintake.store import MailboxRecord
    from mailintake.tls import TlsContexts

AUTHS = ("password", "microsoft", "google")
FLOWS = {"microsoft": ("app", "delegated"), "google": ("service-account", "refresh-token")}
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
OUTLOOK_SCOPE = "https://outlook.office365.com/.default"  # IMAP, POP3 and SMTP of Exchange Online
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
GOOGLE_MAIL_SCOPE = "https://mail.google.com/"
# A token this close to its expiry is not handed out: a long run must not be cut off mid-mailbox.
EXPIRY_MARGIN_SECONDS = 300
HTTP_TIMEOUT_SECONDS = 20

# Microsoft identity platform error codes (AADSTS...) and what an admin does about each; the codes are
# documented at https://learn.microsoft.com/entra/identity-platform/reference-error-codes.
_PORTAL = "In the Azure portal (Microsoft Entra admin center), App registrations > the app ({client})"
_MICROSOFT_FIXES: dict[str, tuple[str, str]] = {
    "AADSTS7000215": ("secret", _PORTAL + " > Certificates & secrets: the client secret is wrong; create a new"
                      " one and store it with `mailintake mailbox add NAME ... --client-secret`."),
    "AADSTS7000222": ("secret", _PORTAL + " > Certificates & secrets: the client secret has expired; create a"
                      " new one and store it with `mailintake mailbox add NAME ... --client-secret`."),
    "AADSTS700027": ("secret", _PORTAL + " > Certificates & secrets: the certificate is not the one uploaded"
                     " there (or has expired); upload it and run `mailintake mailbox add ... --certificate`."),
    "AADSTS700016": ("client", "No application with client id {client} in tenant {tenant}: check the client id"
                     " (App registrations > Overview > Application (client) ID) and the tenant."),
    "AADSTS90002": ("tenant", "Tenant {tenant} does not exist: give the Directory (tenant) ID from App"
                    " registrations > Overview."),
    "AADSTS90023": ("tenant", "Tenant {tenant} does not exist: give the Directory (tenant) ID from App"
                    " registrations > Overview."),
    "AADSTS65001": ("consent", _PORTAL + " > API permissions: admin consent was not granted (or was revoked);"
                    " press 'Grant admin consent'."),
    "AADSTS7000112": ("client", "The application {client} is disabled in tenant {tenant}: enable it in"
                      " Enterprise applications > Properties."),
    "AADSTS70011": ("permission", _PORTAL + " > API permissions: the scope asked for is not one the app may"
                    " have; add Office 365 Exchange Online IMAP.AccessAsApp / POP.AccessAsApp (or"
                    " Microsoft Graph Mail.ReadWrite) and grant admin consent."),
    "AADSTS700082": ("consent", "The signed-in user's refresh token has expired: sign in again with"
                     " `mailintake mailbox add NAME ... --delegated`."),
    "AADSTS50173": ("consent", "The signed-in user's grant was revoked (password changed or sessions revoked):"
                    " sign in again with `mailintake mailbox add NAME ... --delegated`."),
    "AADSTS50076": ("consent", "The tenant now requires multi-factor authentication for this sign-in: sign in"
                    " again with `mailintake mailbox add NAME ... --delegated`."),
}


class TokenError(Exception):
    """No token could be had for a mailbox; ``str()`` says what to fix, ``code`` names the kind of fault:
    secret | client | tenant | consent | permission | config | unreachable | refused."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Token:
    value: str = field(repr=False)  # a bearer token: never in a log line, not even by repr()
    expires_at: float = 0.0  # epoch seconds


class SecretStore(Protocol):
    """Where a mailbox's OAuth secret lives (Secrets Manager): read it, and write back a rotated one."""

    def read(self, name: str) -> str: ...

    def write(self, name: str, value: str) -> None: ...


class SecretsManagerStore:
    def __init__(self, region: str) -> None:
        self.region = region

    def _client(self) -> Any:
        from mailintake.aws_clients import client

        return client("secretsmanager", self.region)

    def read(self, name: str) -> str:
        return str(self._client().get_secret_value(SecretId=name)["SecretString"])

    def write(self, name: str, value: str) -> None:
        self._client().put_secret_value(SecretId=name, SecretString=value)


@dataclass(frozen=True)
class OAuthConfig:
    """A mailbox's OAuth fields, as its record holds them (all optional on a password mailbox)."""

    mailbox: str
    auth: str
    flow: str
    username: str
    tenant: str
    client_id: str
    secret_name: str
    endpoint: str  # authority host (microsoft) or token URL (google); "" for the production default
    ca_bundle: str | None

    @classmethod
    def of(cls, mailbox: MailboxRecord) -> OAuthConfig:
        auth = str(getattr(mailbox, "auth", None) or "password")
        return cls(
            mailbox=str(mailbox.name), auth=auth,
            flow=str(getattr(mailbox, "oauth_flow", None) or FLOWS.get(auth, ("",))[0]),
            username=str(mailbox.username), tenant=str(getattr(mailbox, "tenant", None) or ""),
            client_id=str(getattr(mailbox, "client_id", None) or ""), secret_name=str(mailbox.secret_name),
            endpoint=str(getattr(mailbox, "oauth_endpoint", None) or ""), ca_bundle=mailbox.ca_bundle,
        )

    def default_scope(self, protocol: str) -> str:
        if self.auth == "google":
            return GOOGLE_MAIL_SCOPE
        return GRAPH_SCOPE if protocol == "graph" else OUTLOOK_SCOPE


def _verify(ca_bundle: str | None) -> bool | str:
    """What requests verifies the token endpoint with: the system CAs, or also the mailbox's own (a file,
    written once per content: requests takes a path)."""
    if not ca_bundle:
        return True
    path = os.path.join(tempfile.gettempdir(), f"mailintake-ca-{sha256(ca_bundle.encode()).hexdigest()[:16]}.pem")
    if not os.path.exists(path):
        from requests.utils import DEFAULT_CA_BUNDLE_PATH  # requests' own CA list, extended by the mailbox's

        with open(DEFAULT_CA_BUNDLE_PATH, encoding="utf-8") as system:
            trusted = system.read()
        with open(path + ".tmp", "w", encoding="utf-8") as out:
            out.write(trusted + "\n" + ca_bundle)
        os.replace(path + ".tmp", path)
    return path


def http_session(ca_bundle: str | None) -> Any:
    """An HTTP session for the token endpoint, trusting also the mailbox's own CAs where it has some."""
    import requests

    session = requests.Session()
    if ca_bundle:
        session.verify = _verify(ca_bundle)
        # requests lets REQUESTS_CA_BUNDLE from the environment override a session's own verify (requests
        # issue 3829): the CAs this mailbox was given must win.
        session.trust_env = False
    return session


def _microsoft_error(result: Mapping[str, Any], config: OAuthConfig) -> TokenError:
    description = str(result.get("error_description") or result.get("error") or "no token in the answer")
    first_line = description.splitlines()[0] if description else ""
    for code, (kind, fix) in _MICROSOFT_FIXES.items():
        if code in description:
            return TokenError(kind, f"Microsoft refused a token for mailbox {config.mailbox} ({code}): "
                              + fix.format(client=config.client_id, tenant=config.tenant))
    error = str(result.get("error") or "")
    if error == "invalid_client":
        return TokenError("secret", f"Microsoft refused the client credentials of mailbox {config.mailbox}"
                          f" ({first_line}): " + _PORTAL.format(client=config.client_id)
                          + " > Certificates & secrets: check the secret or certificate.")
    if error == "invalid_grant":
        return TokenError("consent", f"Microsoft refused the grant of mailbox {config.mailbox} ({first_line}):"
                          " sign in again with `mailintake mailbox add NAME ... --delegated`.")
    return TokenError("refused", f"Microsoft gave no token for mailbox {config.mailbox}: {error} {first_line}")


def _google_error(exc: Exception, config: OAuthConfig) -> TokenError:
    body = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], Mapping) else {}
    error = str(body.get("error") or "")
    description = str(body.get("error_description") or exc.args[0] if exc.args else exc)
    who = f"Google refused a token for mailbox {config.mailbox} ({error or 'error'}: {description})"
    if error == "unauthorized_client":
        return TokenError("permission", who + ": in the Google Admin console, Security > Access and data control"
                          " > API controls > Manage domain-wide delegation, give the service account's client ID"
                          f" the scope {GOOGLE_MAIL_SCOPE}.")
    if error == "invalid_client":
        return TokenError("client", who + ": the OAuth client or service-account key was deleted or is wrong;"
                          " create a new key in Google Cloud console > IAM & Admin > Service accounts (or"
                          " Credentials) and run `mailintake mailbox add` with it.")
    if error == "invalid_grant":
        return TokenError("consent", who + ": the consent was revoked, the refresh token expired (Testing"
                          " apps' expire after 7 days), or the user does not exist; sign in again with"
                          " `mailintake mailbox add NAME ... --refresh-token`, or check --subject.")
    return TokenError("refused", who)


def _microsoft(config: OAuthConfig, secret: dict[str, Any], scope: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A token from the Microsoft identity platform; (the token response, the secret to write back or {})."""
    import msal
    import requests

    if not config.tenant or not config.client_id:
        raise TokenError("config", f"mailbox {config.mailbox} has no tenant or client id")
    host = (config.endpoint or MICROSOFT_AUTHORITY).rstrip("/")
    session = http_session(config.ca_bundle)
    common: dict[str, Any] = {
        "authority": f"{host}/{config.tenant}", "http_client": session, "timeout": HTTP_TIMEOUT_SECONDS,
        # Instance discovery asks login.microsoftonline.com whether the host is Microsoft's; a sovereign
        # cloud or a test server given as endpoint is the admin's choice, not to be second-guessed.
        "instance_discovery": host == MICROSOFT_AUTHORITY,
    }
    try:
        if config.flow == "delegated":
            app: Any = msal.PublicClientApplication(config.client_id, **common)
            if not secret.get("refresh_token"):
                raise TokenError("consent", f"mailbox {config.mailbox} has no refresh token: sign in with"
                                 " `mailintake mailbox add NAME ... --delegated`")
            result = app.acquire_token_by_refresh_token(secret["refresh_token"], scopes=[scope])
        else:
            credential: Any = secret.get("client_secret")
            if secret.get("certificate"):
                credential = {"private_key": secret["certificate"], "thumbprint": secret.get("thumbprint", "")}
            if not credential:
                raise TokenError("secret", f"the secret of mailbox {config.mailbox} holds no client secret or"
                                 " certificate: run `mailintake mailbox add NAME ... --client-secret`")
            app = msal.ConfidentialClientApplication(config.client_id, client_credential=credential, **common)
            result = app.acquire_token_for_client(scopes=[scope])
    except ValueError as exc:  # msal's tenant discovery: an unknown tenant or an unreachable authority
        raise TokenError("tenant", f"the authority {host}/{config.tenant} of mailbox {config.mailbox} did not"
                         f" answer as a Microsoft tenant ({exc}): check --tenant (the Directory (tenant) ID)") from exc
    except requests.RequestException as exc:
        raise TokenError("unreachable", f"{host} cannot be reached for mailbox {config.mailbox}: {exc}") from exc
    if "access_token" not in result:
        raise _microsoft_error(result, config)
    rotated = result.get("refresh_token")
    write_back = {**secret, "refresh_token": rotated} if rotated and rotated != secret.get("refresh_token") else {}
    return result, write_back


def _google(config: OAuthConfig, secret: dict[str, Any], scope: str) -> tuple[dict[str, Any], dict[str, Any]]:
    import google.auth.exceptions
    import requests
    from google.auth.transport.requests import Request

    token_url = config.endpoint or GOOGLE_TOKEN_URL
    credentials: Any
    if config.flow == "service-account":
        from google.oauth2 import service_account

        info = secret.get("service_account")
        if not isinstance(info, dict):
            raise TokenError("secret", f"the secret of mailbox {config.mailbox} holds no service-account key:"
                             " run `mailintake mailbox add NAME ... --service-account FILE`")
        info = {**info, "token_uri": token_url}
        credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=[scope], subject=str(secret.get("subject") or config.username))
    else:
        from google.oauth2.credentials import Credentials

        if not secret.get("refresh_token"):
            raise TokenError("consent", f"mailbox {config.mailbox} has no refresh token: run `mailintake"
                             " mailbox add NAME ... --refresh-token`")
        credentials = Credentials(None, refresh_token=secret["refresh_token"], token_uri=token_url,
                                  client_id=config.client_id, client_secret=secret.get("client_secret"),
                                  scopes=[scope])  # type: ignore[no-untyped-call]
    session = http_session(config.ca_bundle)
    try:
        credentials.refresh(Request(session))
    except google.auth.exceptions.RefreshError as exc:
        raise _google_error(exc, config) from exc
    except (google.auth.exceptions.TransportError, requests.RequestException) as exc:
        raise TokenError("unreachable", f"{token_url} cannot be reached for mailbox {config.mailbox}: {exc}") from exc
    expiry = credentials.expiry  # naive UTC
    lifetime = expiry.replace(tzinfo=UTC).timestamp() - time.time() if expiry else 3600
    result = {"access_token": credentials.token, "expires_in": int(lifetime)}
    rotated = getattr(credentials, "refresh_token", None)
    write_back = {**secret, "refresh_token": rotated} if rotated and rotated != secret.get("refresh_token") else {}
    return result, write_back


Acquire = Callable[[OAuthConfig, dict[str, Any], str], tuple[dict[str, Any], dict[str, Any]]]
_ACQUIRERS: dict[str, Acquire] = {"microsoft": _microsoft, "google": _google}


@dataclass
class TokenProvider:
    """Bearer tokens for mailboxes, cached per container until ``EXPIRY_MARGIN_SECONDS`` before expiry."""

    secrets: SecretStore
    clock: Callable[[], float] = time.time
    acquirers: Mapping[str, Acquire] = field(default_factory=lambda: dict(_ACQUIRERS))
    _cache: dict[tuple[str, str], Token] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def for_settings(cls, settings: Settings) -> TokenProvider:
        return cls(SecretsManagerStore(settings.region))

    def token(self, mailbox: MailboxRecord, scope: str | None = None) -> str:
        """A bearer token for ``mailbox`` and ``scope`` (the mailbox's protocol's default scope when None);
        TokenError when none can be had."""
        config = OAuthConfig.of(mailbox)
        if config.auth not in _ACQUIRERS:
            raise TokenError("config", f"mailbox {config.mailbox} logs in with a password, not a token")
        scope = scope or config.default_scope(str(mailbox.protocol))
        key = (config.mailbox, scope)
        with self._lock:
            cached = self._cache.get(key)
            if cached and cached.expires_at - EXPIRY_MARGIN_SECONDS > self.clock():
                return cached.value
            token = self._acquire(config, scope)
            self._cache[key] = token
            return token.value

    def rejected(self, mailbox: MailboxRecord, scope: str | None = None) -> None:
        """The server refused the token last handed out: the next :meth:`token` acquires a new one."""
        config = OAuthConfig.of(mailbox)
        scope = scope or config.default_scope(str(mailbox.protocol))
        with self._lock:
            self._cache.pop((config.mailbox, scope), None)

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()

    def _acquire(self, config: OAuthConfig, scope: str) -> Token:
        try:
            secret = json.loads(self.secrets.read(config.secret_name))
        except (ValueError, TypeError) as exc:
            raise TokenError("secret", f"secret {config.secret_name!r} of mailbox {config.mailbox} is not the"
                             " JSON `mailintake mailbox add` writes: add the mailbox again") from exc
        if not isinstance(secret, dict):
            raise TokenError("secret", f"secret {config.secret_name!r} of mailbox {config.mailbox} is not a JSON"
                             " object: add the mailbox again")
        now = self.clock()
        result, write_back = self.acquirers[config.auth](config, secret, scope)
        if write_back:
            # The identity platform rotated the refresh token: the old one may stop working, so keep the new.
            self.secrets.write(config.secret_name, json.dumps(write_back))
        return Token(str(result["access_token"]), now + float(result.get("expires_in") or 3600))


def xoauth2(user: str, token: str) -> bytes:
    """The SASL XOAUTH2 initial response (Google's and Microsoft's documented format), unencoded."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


@dataclass
class MailboxLogin:
    """What a mail source logs in with: the mailbox's password, or bearer tokens for it.

    Sources call :meth:`token` for a login and :meth:`rejected` when the server refused the token they
    were given, then :meth:`token` once more: a token revoked or expired on the server's side is replaced
    once, and a second refusal is the configuration's (:func:`refused`).
    """

    mailbox: MailboxRecord
    tokens: TokenProvider
    read_password: Callable[[MailboxRecord], str]
    tls: TlsContexts | None = None  # the container's TLS contexts (Runtime.tls); None: a new one per connection

    @property
    def oauth(self) -> bool:
        return OAuthConfig.of(self.mailbox).auth != "password"

    @property
    def provider(self) -> str:
        return OAuthConfig.of(self.mailbox).auth

    def password(self) -> str:
        return self.read_password(self.mailbox)

    def token(self, scope: str | None = None) -> str:
        return self.tokens.token(self.mailbox, scope)

    def rejected(self, scope: str | None = None) -> None:
        self.tokens.rejected(self.mailbox, scope)


class GraphTokens:
    """A mailbox's login as Graph's :class:`~mailintake.graph_api.BearerTokens`: OAuth tokens for Graph's
    scope (``mailintake.tokens``, cached per container), or, for a mailbox without OAuth, an access token
    kept as its password (short-lived: for trials and tests only)."""

    def __init__(self, login: MailboxLogin) -> None:
        self.login = login

    def token(self) -> str:
        return self.login.token(GRAPH_SCOPE) if self.login.oauth else self.login.password()

    def invalidate(self, token: str) -> None:
        if self.login.oauth:
            self.login.rejected(GRAPH_SCOPE)


def refused(mailbox: MailboxRecord, service: str, reply: object) -> TokenError:
    """The server refused a fresh token: the app lacks a permission on the mailbox. What to grant, by provider."""
    config = OAuthConfig.of(mailbox)
    said = str(reply)[:300]
    if config.auth == "google":
        fix = ("in the Google Admin console, check that the user exists and IMAP is on (Apps > Google Workspace >"
               " Gmail > End user access), and that domain-wide delegation grants the scope"
               f" {GOOGLE_MAIL_SCOPE}; for a refresh token, that the user consented to that scope.")
    elif config.flow == "delegated":
        fix = ("the signed-in user has no access to this mailbox, or IMAP/POP is off for it (Exchange admin center"
               " > Recipients > Mailboxes > the mailbox > Email apps).")
    else:
        fix = (f"in Exchange Online PowerShell, register the app's service principal (New-ServicePrincipal -AppId"
               f" {config.client_id} -ObjectId <enterprise app object id>) and give it the mailbox"
               f" (Add-MailboxPermission -Identity {config.username} -User <service principal id> -AccessRights"
               " FullAccess); in the Azure portal, App registrations > API permissions, grant IMAP.AccessAsApp /"
               " POP.AccessAsApp (Office 365 Exchange Online) with admin consent; and check IMAP/POP is on for"
               " the mailbox (Exchange admin center > Recipients > Mailboxes > Email apps).")
    return TokenError("permission", f"{service} refused a fresh token for {config.username} ({said}): {fix}")


__all__ = [
    "AUTHS", "FLOWS", "GOOGLE_MAIL_SCOPE", "GOOGLE_TOKEN_URL", "GRAPH_SCOPE", "MICROSOFT_AUTHORITY", "OUTLOOK_SCOPE",
    "MailboxLogin", "OAuthConfig", "SecretStore", "SecretsManagerStore", "Token", "TokenError", "TokenProvider",
    "refused", "xoauth2",
]
