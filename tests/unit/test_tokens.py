"""Access tokens: cached per container until shortly before expiry, replaced once when refused, rotated
refresh tokens written back, every failure told as what to fix; the mailbox options that describe them."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from mailintake.config_check import classify, secret_expiry_notice
from mailintake.mailboxes import MailboxConfigError, MailboxSpec
from mailintake.store import MailboxRecord
from mailintake.tokens import (
    EXPIRY_MARGIN_SECONDS,
    GRAPH_SCOPE,
    OUTLOOK_SCOPE,
    OAuthConfig,
    TokenError,
    TokenProvider,
    _google_error,
    _microsoft_error,
    xoauth2,
)


class Secrets:
    def __init__(self, value: dict[str, Any]) -> None:
        self.values = {"mailintake/mailbox/support": json.dumps(value)}
        self.writes: list[tuple[str, str]] = []

    def read(self, name: str) -> str:
        return self.values[name]

    def write(self, name: str, value: str) -> None:
        self.writes.append((name, value))
        self.values[name] = value


class Clock:
    now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def record(**fields: Any) -> MailboxRecord:
    values: dict[str, Any] = {"name": "support", "protocol": "imap", "host": "outlook.office365.com", "port": 993,
                              "security": "ssl", "username": "support@contoso.example",
                              "secret_name": "mailintake/mailbox/support", "after": "seen", "auth": "microsoft",
                              "tenant": "contoso", "client_id": "app-1"}
    values.update(fields)
    return MailboxRecord(*MailboxRecord.key(values["name"]), **values)


def provider(secret: dict[str, Any], answers: list[dict[str, Any]] | None = None,
             write_back: dict[str, Any] | None = None) -> tuple[TokenProvider, list[str], Clock, Secrets]:
    calls: list[str] = []
    clock, secrets = Clock(), Secrets(secret)

    def acquire(config: OAuthConfig, held: dict[str, Any], scope: str) -> tuple[dict[str, Any], dict[str, Any]]:
        calls.append(scope)
        answer = (answers or [{}])[min(len(calls), len(answers or [{}])) - 1]
        return {"access_token": f"token-{len(calls)}", "expires_in": 3600, **answer}, write_back or {}

    return TokenProvider(secrets, clock, {"microsoft": acquire, "google": acquire}), calls, clock, secrets


def test_a_token_is_reused_until_shortly_before_it_expires() -> None:
    tokens, calls, clock, _ = provider({"client_secret": "s"})
    mailbox = record()
    assert tokens.token(mailbox) == tokens.token(mailbox) == "token-1"
    clock.now += 3600 - EXPIRY_MARGIN_SECONDS - 1
    assert tokens.token(mailbox) == "token-1"
    clock.now += 2
    assert tokens.token(mailbox) == "token-2"
    assert calls == [OUTLOOK_SCOPE, OUTLOOK_SCOPE]


def test_a_refused_token_is_dropped_and_the_next_one_acquired() -> None:
    tokens, _, _, _ = provider({"client_secret": "s"})
    mailbox = record()
    assert tokens.token(mailbox) == "token-1"
    tokens.rejected(mailbox)
    assert tokens.token(mailbox) == "token-2"


def test_tokens_are_kept_per_mailbox_and_scope() -> None:
    tokens, calls, _, _ = provider({"client_secret": "s"})
    tokens.token(record())
    tokens.token(record(), GRAPH_SCOPE)
    tokens.token(record(name="sales"))
    tokens.token(record(protocol="graph"))
    assert calls == [OUTLOOK_SCOPE, GRAPH_SCOPE, OUTLOOK_SCOPE]


def test_a_rotated_refresh_token_is_written_back_to_the_secret() -> None:
    tokens, _, _, secrets = provider({"refresh_token": "old"}, write_back={"refresh_token": "new"})
    tokens.token(record(oauth_flow="delegated"))
    assert secrets.writes == [("mailintake/mailbox/support", json.dumps({"refresh_token": "new"}))]


def test_a_password_mailbox_or_an_unreadable_secret_is_a_token_error() -> None:
    tokens, _, _, secrets = provider({})
    with pytest.raises(TokenError, match="password"):
        tokens.token(record(auth=None))
    secrets.values["mailintake/mailbox/support"] = "a password, not JSON"
    with pytest.raises(TokenError) as raised:
        tokens.token(record())
    assert raised.value.code == "secret" and "a password" not in str(raised.value)


@pytest.mark.parametrize(("code", "kind", "fix"), [
    ("AADSTS7000222", "secret", "has expired"),
    ("AADSTS7000215", "secret", "Certificates & secrets"),
    ("AADSTS65001", "consent", "Grant admin consent"),
    ("AADSTS700016", "client", "client id"),
    ("AADSTS90002", "tenant", "Directory (tenant) ID"),
    ("AADSTS50173", "consent", "--delegated"),
])
def test_microsoft_errors_say_what_to_fix_in_the_portal(code: str, kind: str, fix: str) -> None:
    config = OAuthConfig.of(record())
    error = _microsoft_error({"error": "invalid_client", "error_description": f"{code}: something\r\nTrace ID: x"},
                             config)
    assert error.code == kind and fix in str(error) and code in str(error)
    problem = classify(error, record())
    assert problem is not None and problem.code == f"oauth-{kind}"


@pytest.mark.parametrize(("error", "kind", "fix"), [
    ("unauthorized_client", "permission", "domain-wide delegation"),
    ("invalid_grant", "consent", "--refresh-token"),
    ("invalid_client", "client", "Service accounts"),
])
def test_google_errors_say_what_to_fix_in_the_console(error: str, kind: str, fix: str) -> None:
    config = OAuthConfig.of(record(auth="google"))
    exc = Exception(f"{error}: described", {"error": error, "error_description": "described"})
    told = _google_error(exc, config)
    assert told.code == kind and fix in str(told)


def test_the_xoauth2_initial_response_is_the_documented_one() -> None:
    assert xoauth2("a@b.example", "tok") == b"user=a@b.example\x01auth=Bearer tok\x01\x01"


def test_a_secret_expiry_is_told_from_fourteen_days_ahead() -> None:
    mailbox = record(secret_expires="2026-12-15")
    assert secret_expiry_notice(mailbox, date(2026, 11, 30)) is None
    notice = secret_expiry_notice(mailbox, date(2026, 12, 1))
    assert notice and "in 14 days" in notice and "Certificates & secrets" in notice
    assert "expired on" in (secret_expiry_notice(mailbox, date(2026, 12, 16)) or "")
    assert secret_expiry_notice(record(), date(2026, 12, 1)) is None


def spec(**fields: Any) -> MailboxSpec:
    return MailboxSpec(name="support", protocol="imap", host="outlook.office365.com", username="s@c.example",
                       **fields)


def test_a_password_mailbox_is_stored_as_before_oauth() -> None:
    plain = spec(auth="password")
    plain.validate()
    assert (plain.auth, plain.oauth_flow, plain.tenant) == (None, None, None)


def test_oauth_mailboxes_need_their_provider_details() -> None:
    microsoft = spec(auth="microsoft", tenant="contoso", client_id="app")
    microsoft.validate()
    assert microsoft.oauth_flow == "app"
    google = spec(auth="google")
    google.validate()
    assert google.oauth_flow == "service-account"
    for fields in ({"auth": "microsoft", "client_id": "app"}, {"auth": "yahoo"},
                   {"auth": "google", "oauth_flow": "delegated"},
                   {"auth": "microsoft", "tenant": "t", "client_id": "c", "secret_expires": "next year"}):
        with pytest.raises(MailboxConfigError):
            spec(**fields).validate()


def test_no_token_shows_in_a_repr() -> None:
    tokens, _, _, _ = provider({"client_secret": "s"})
    tokens.token(record())
    assert "token-1" not in repr(tokens) and "token-1" not in repr(tokens._cache)


def test_the_handlers_modules_load_no_oauth_library_until_a_token_is_due() -> None:
    import subprocess
    import sys

    probe = ("import sys, mailintake.fetching, mailintake.processing, mailintake.runtime, mailintake.outgoing;"
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'msal', 'google', 'requests', 'jwt'}))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
