"""Microsoft 365 and Google mailboxes over IMAP and POP3 with XOAUTH2, end to end on real parts.

The tokens come from msal and google-auth, talking to the local authorization server
(mailintake.localstack.oauth) as they would to login.microsoftonline.com and oauth2.googleapis.com; the
real Dovecot checks every token through that server's introspection (its oauth2 passdb); the mail goes
through the real fetch function (run_cycle) into the ledger.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import threading
import time
import uuid
import webbrowser
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any

import pytest

from mailintake.aws_clients import client
from mailintake.localrun import run_cycle
from mailintake.localstack import dovecot, oauth
from mailintake.localstack.accounts import local_oauth_mailbox
from mailintake.store import AlertRecord, MailboxRecord

from .conftest import ROOT, make_mail
from .intake_support import REPLY_FROM, configure, fresh_config, ses_sent, verify_ses_sender

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_config")]
__all__ = ["fresh_config"]


@pytest.fixture()
def server(stack: dict[str, str]) -> Iterator[oauth.AuthorizationServer]:
    tls = dovecot.info(ROOT).ca_bundle
    with oauth.AuthorizationServer(tls, tls.parent / "key.pem") as running:
        yield running


Made = tuple[MailboxRecord, str]


@pytest.fixture()
def microsoft(settings: Any, server: oauth.AuthorizationServer) -> Callable[..., Made]:
    """A mailbox of an app registration with a client secret and FullAccess on it (app-only)."""

    def make(protocol: str = "imap", grant: bool = True) -> Made:
        name = f"ms-{protocol}-{uuid.uuid4().hex[:8]}"
        tenant, client_id, secret = f"tenant-{uuid.uuid4().hex[:6]}", str(uuid.uuid4()), secrets.token_urlsafe(16)
        server.register_microsoft_app(tenant, client_id, secret, {name} if grant else set())
        return local_oauth_mailbox(ROOT, settings, name, server.base_url, {"client_secret": secret},
                                   protocol=protocol, auth="microsoft", tenant=tenant, client_id=client_id)

    return make


def deliver(made: Made, *subjects: str) -> None:
    record, password = made
    for subject in subjects:
        dovecot.deliver(ROOT, record.username, password, make_mail(subject))


def fetches(settings: Any) -> dict[str, dict[str, Any]]:
    return {f["mailbox"]: f for f in run_cycle(settings).fetches}


def admin_alerts(settings: Any) -> str:
    admin = f"admin-{uuid.uuid4().hex[:8]}@tracker.example"
    verify_ses_sender(settings)
    configure({"reply.from": REPLY_FROM, "admin.address": admin})
    return admin


def test_microsoft_app_only_mailboxes_are_read_over_imap_and_pop3_with_tokens_from_msal(
        settings: Any, server: oauth.AuthorizationServer, microsoft: Callable[..., Made]) -> None:
    imap, pop3 = microsoft("imap"), microsoft("pop3")
    deliver(imap, "Printer on fire", "Second floor too")
    deliver(pop3, "VPN down")
    report = fetches(settings)
    assert (report[imap[0].name]["status"], report[imap[0].name]["fetched"]) == ("done", 2)
    assert (report[pop3[0].name]["status"], report[pop3[0].name]["fetched"]) == ("done", 1)
    assert server.token_requests == 2  # one per mailbox
    assert "method=XOAUTH2" in dovecot.log_tail(ROOT, 400)

    # The next run of the same container uses the cached token: no new request to the identity platform.
    deliver(imap, "Third")
    assert fetches(settings)[imap[0].name]["fetched"] == 1
    assert server.token_requests == 2


def test_a_token_that_expired_on_the_server_early_is_replaced_once_and_the_run_goes_on(
        settings: Any, server: oauth.AuthorizationServer, microsoft: Callable[..., Made]) -> None:
    imap, pop3 = microsoft("imap"), microsoft("pop3")
    fetches(settings)
    server.expire_all()  # the containers still hold tokens they believe good for an hour
    deliver(imap, "After expiry")
    deliver(pop3, "After expiry too")
    report = fetches(settings)
    assert {n: (f["status"], f["fetched"]) for n, f in report.items()} == {
        imap[0].name: ("done", 1), pop3[0].name: ("done", 1)}
    assert server.token_requests == 4


def test_revoked_consent_ends_the_run_as_config_error_with_what_to_fix_told_to_the_admin_once(
        settings: Any, server: oauth.AuthorizationServer, microsoft: Callable[..., Made]) -> None:
    admin = admin_alerts(settings)
    imap = microsoft("imap")
    deliver(imap, "Before revocation")
    assert fetches(settings)[imap[0].name]["fetched"] == 1
    server.revoke_consent(str(imap[0].client_id))
    deliver(imap, "After revocation")
    report = fetches(settings)[imap[0].name]
    assert report["status"] == "config-error" and "Grant admin consent" in report["error"]
    alert = AlertRecord.get(*AlertRecord.key(imap[0].name))
    assert alert.problem == "oauth-consent"
    assert "AADSTS65001" in alert.detail and "Grant admin consent" in alert.detail
    assert fetches(settings)[imap[0].name]["status"] == "config-error"
    subjects = [m["Subject"] for m in ses_sent(admin)]
    assert subjects == [f"mailintake: mailbox {imap[0].name} has a problem (oauth-consent)"]
    assert "Grant admin consent" in str(ses_sent(admin)[0].get_payload())


def test_a_wrong_client_secret_and_a_mailbox_the_app_may_not_open_say_what_to_fix(
        settings: Any, server: oauth.AuthorizationServer, microsoft: Callable[..., Made]) -> None:
    wrong = microsoft("imap")
    client("secretsmanager", settings.region).put_secret_value(
        SecretId=wrong[0].secret_name, SecretString=json.dumps({"client_secret": "not-it"}))
    ungranted = microsoft("pop3", grant=False)
    report = fetches(settings)
    assert report[wrong[0].name]["status"] == report[ungranted[0].name]["status"] == "config-error"
    secret_alert = AlertRecord.get(*AlertRecord.key(wrong[0].name))
    assert secret_alert.problem == "oauth-secret" and "AADSTS7000215" in secret_alert.detail
    assert "not-it" not in secret_alert.detail
    permission = AlertRecord.get(*AlertRecord.key(ungranted[0].name))
    assert permission.problem == "oauth-permission"
    assert "Add-MailboxPermission" in permission.detail and "POP.AccessAsApp" in permission.detail


def test_delegated_sign_in_refresh_token_is_rotated_and_written_back(
        settings: Any, server: oauth.AuthorizationServer) -> None:
    name = f"ms-delegated-{uuid.uuid4().hex[:8]}"
    tenant, client_id = "tenant-delegated", str(uuid.uuid4())
    server.register_microsoft_app(tenant, client_id, public=True)
    first = server.issue_refresh_token(client_id, name, oauth.OUTLOOK_DEFAULT)
    made = local_oauth_mailbox(ROOT, settings, name, server.base_url, {"refresh_token": first}, auth="microsoft",
                               flow="delegated", tenant=tenant, client_id=client_id)
    deliver(made, "Delegated")
    assert fetches(settings)[name]["fetched"] == 1
    kept = json.loads(client("secretsmanager", settings.region).get_secret_value(
        SecretId=made[0].secret_name)["SecretString"])
    assert kept["refresh_token"] != first and kept["refresh_token"] in server.refresh


def test_google_service_account_and_refresh_token_mailboxes_are_read_with_tokens_from_google_auth(
        settings: Any, server: oauth.AuthorizationServer) -> None:
    delegated = f"g-sa-{uuid.uuid4().hex[:8]}"
    key = server.register_service_account(f"{delegated}@project.iam.gserviceaccount.com", str(uuid.uuid4()),
                                          {oauth.GOOGLE_MAIL})
    service = local_oauth_mailbox(ROOT, settings, delegated, f"{server.base_url}/token", {"service_account": key},
                                  auth="google", flow="service-account")
    user = f"g-user-{uuid.uuid4().hex[:8]}"
    server.register_google_client("google-client", "google-secret")
    refresh = server.issue_refresh_token("google-client", user, oauth.GOOGLE_MAIL)
    signed_in = local_oauth_mailbox(ROOT, settings, user, f"{server.base_url}/token",
                                    {"client_secret": "google-secret", "refresh_token": refresh},
                                    protocol="pop3", auth="google", flow="refresh-token", client_id="google-client")
    deliver(service, "Workspace mail")
    deliver(signed_in, "Gmail mail")
    report = fetches(settings)
    assert (report[delegated]["status"], report[delegated]["fetched"]) == ("done", 1)
    assert (report[user]["status"], report[user]["fetched"]) == ("done", 1)

    server.revoke_consent("google-client")
    assert fetches(settings)[user]["status"] == "config-error"
    alert = AlertRecord.get(*AlertRecord.key(user))
    assert alert.problem == "oauth-consent" and "Token has been expired or revoked" in alert.detail


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    from mailintake import cli

    capsys.readouterr()
    code = cli.main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def cli_user(protocol: str = "imap") -> tuple[str, str, list[str]]:
    """A Dovecot user, its password, and `mailbox add`'s connection options for it."""
    name = f"cli-{protocol}-{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(12)
    dovecot.ensure_user(ROOT, name, password)
    info = dovecot.info(ROOT)
    port = info.imaps_port if protocol == "imap" else info.pop3s_port
    return name, password, ["--protocol", protocol, "--host", info.host, "--port", str(port), "--user", name,
                            "--ca-bundle", str(info.ca_bundle)]


def test_mailbox_add_with_a_client_secret_then_mailbox_test_gives_a_verdict_without_fetching(
        settings: Any, server: oauth.AuthorizationServer, capsys: pytest.CaptureFixture[str]) -> None:
    name, password, connection = cli_user("pop3")
    server.register_microsoft_app("contoso", "cli-app", "cli-secret", {name})
    expires = (date.today() + timedelta(days=10)).isoformat()
    code, saved = run_cli(capsys, "mailbox", "add", name, *connection, "--auth", "microsoft", "--tenant", "contoso",
                          "--client-id", "cli-app", "--client-secret", "cli-secret", "--authority", server.base_url,
                          "--secret-expires", expires)
    assert code == 0 and (saved["auth"], saved["oauth_flow"], saved["secret_expires"]) == ("microsoft", "app", expires)
    assert "cli-secret" not in json.dumps(saved)
    dovecot.deliver(ROOT, name, password, make_mail("Stays where it is"))

    code, verdict = run_cli(capsys, "mailbox", "test", name)
    assert code == 0 and verdict["ok"]
    assert [s["step"] for s in verdict["steps"]] == ["token", "login", "folder", "after"]
    assert "1 mail in it" in verdict["steps"][2]["detail"] and "RSET" in verdict["steps"][3]["detail"]
    assert "expires in 10 days" in verdict["warnings"][0]
    assert fetches(settings)[name]["fetched"] == 1  # the test took nothing away

    server.revoke_consent("cli-app")
    code, verdict = run_cli(capsys, "mailbox", "test", name)
    assert code == 1 and not verdict["ok"]
    assert verdict["steps"][-1]["step"] == "token" and "Grant admin consent" in verdict["steps"][-1]["detail"]


def test_mailbox_add_delegated_signs_the_user_in_with_a_device_code(
        settings: Any, server: oauth.AuthorizationServer, capsys: pytest.CaptureFixture[str]) -> None:
    name, _, connection = cli_user("imap")
    server.register_microsoft_app("contoso", "public-app", public=True)

    def sign_in() -> None:  # the user opens the page, enters the code and signs in
        deadline = time.monotonic() + 20
        while not server.devices and time.monotonic() < deadline:
            time.sleep(0.05)
        for device in list(server.devices.values()):
            server.approve_device(device["user_code"], name)

    user = threading.Thread(target=sign_in)
    user.start()
    code, saved = run_cli(capsys, "mailbox", "add", name, *connection, "--auth", "microsoft", "--delegated",
                          "--tenant", "contoso", "--client-id", "public-app", "--authority", server.base_url)
    user.join()
    assert code == 0 and saved["oauth_flow"] == "delegated"
    kept = json.loads(client("secretsmanager", settings.region).get_secret_value(
        SecretId=saved["secret_name"])["SecretString"])
    assert kept["refresh_token"] in server.refresh
    code, verdict = run_cli(capsys, "mailbox", "test", name)
    assert code == 0 and verdict["ok"], verdict


def test_mailbox_add_refuses_an_oauth_mailbox_without_its_details(
        settings: Any, capsys: pytest.CaptureFixture[str]) -> None:
    name, _, connection = cli_user("imap")
    from mailintake import cli

    code = cli.main(["mailbox", "add", name, *connection, "--auth", "microsoft", "--client-id", "x",
                     "--client-secret", "y"])
    assert code == 2
    assert "--tenant" in capsys.readouterr().err


class XOAuth2Sink:
    """An SMTP server (aiosmtpd) that accepts AUTH XOAUTH2 only with a token the authorization server
    introspects as active for the user named; collects what it is given."""

    def __init__(self, server: oauth.AuthorizationServer) -> None:
        self.server = server
        self.messages: list[tuple[str, bytes]] = []
        self.refused = 0

    async def auth_XOAUTH2(self, smtp: Any, args: list[str]) -> Any:
        from aiosmtpd.smtp import AuthResult

        fields = dict(part.split("=", 1) for part in base64.b64decode(args[1]).decode().split("\x01") if "=" in part)
        answer = self.server.introspect(fields.get("auth", "").removeprefix("Bearer "), fields.get("user"))
        if answer.get("active") and answer.get("username") == fields.get("user"):
            return AuthResult(success=True, handled=False, auth_data=fields["user"])
        self.refused += 1
        return AuthResult(success=False, handled=False)

    async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
        self.messages.append((str(session.auth_data), envelope.content))
        return "250 OK"


def test_replies_go_out_by_smtp_auth_xoauth2_as_the_oauth_mailbox_with_a_refused_token_replaced(
        settings: Any, server: oauth.AuthorizationServer, microsoft: Callable[..., Made]) -> None:
    from aiosmtpd.controller import Controller

    sink = XOAuth2Sink(server)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(sink, hostname="127.0.0.1", port=port, auth_require_tls=False, auth_required=True)
    controller.start()
    try:
        imap = microsoft("imap")
        configure({"reply.from": REPLY_FROM, "reply.transport": "smtp", "reply.smtpHost": "127.0.0.1",
                   "reply.smtpPort": str(port), "reply.smtpSecurity": "none", "reply.acknowledgeItems": "true",
                   "reply.smtpMailbox": imap[0].name})
        deliver(imap, "Please acknowledge")
        assert fetches(settings)[imap[0].name]["fetched"] == 1
        server.expire_all()  # the process container's cached token dies before its time
        deliver(imap, "Acknowledge again")
        assert fetches(settings)[imap[0].name]["fetched"] == 1
    finally:
        controller.stop()
    assert [user for user, _ in sink.messages] == [imap[0].username, imap[0].username]
    assert sink.refused == 1


def test_mailbox_add_with_a_certificate_signs_in_with_a_signed_client_assertion(
        settings: Any, server: oauth.AuthorizationServer, capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    name, password, connection = cli_user("imap")
    server.register_microsoft_app("fabrikam", "cert-app", mailboxes={name})
    certificate, key = oauth.self_signed()
    server.add_certificate("cert-app", certificate)
    pem = tmp_path / "app.pem"
    pem.write_bytes(certificate + key)
    code, _ = run_cli(capsys, "mailbox", "add", name, *connection, "--auth", "microsoft", "--tenant", "fabrikam",
                      "--client-id", "cert-app", "--certificate", str(pem), "--authority", server.base_url)
    assert code == 0
    dovecot.deliver(ROOT, name, password, make_mail("Signed in with a certificate"))
    report = fetches(settings)[name]
    assert (report["status"], report["fetched"]) == ("done", 1)


def test_a_client_secret_about_to_expire_is_told_to_the_admin_once_and_the_mailbox_still_read(
        settings: Any, server: oauth.AuthorizationServer) -> None:
    admin = admin_alerts(settings)
    name = f"ms-expiring-{uuid.uuid4().hex[:8]}"
    server.register_microsoft_app("contoso", "expiring-app", "s", {name})
    expires = (date.today() + timedelta(days=3)).isoformat()
    made = local_oauth_mailbox(ROOT, settings, name, server.base_url, {"client_secret": "s"}, tenant="contoso",
                               client_id="expiring-app", secret_expires=expires)
    deliver(made, "Still read")
    assert fetches(settings)[name]["status"] == "done"
    assert fetches(settings)[name]["status"] == "done"
    told = ses_sent(admin)
    assert [m["Subject"] for m in told] == [f"mailintake: the client secret of mailbox {name} expires soon"]
    assert f"expires in 3 days, on {expires}" in str(told[0].get_payload())


def test_mailbox_test_checks_a_password_mailbox_and_its_folder_to_move_to(
        settings: Any, mailbox: Callable[..., Any], capsys: pytest.CaptureFixture[str]) -> None:
    box = mailbox("imap", "ssl", after="move", move_to="Archive/Done")
    code, verdict = run_cli(capsys, "mailbox", "test", box.name)
    assert code == 1
    assert [(s["step"], s["ok"]) for s in verdict["steps"]] == [
        ("secret", True), ("login", True), ("folder", True), ("after", False)]
    assert "'Archive/Done', does not exist" in verdict["steps"][-1]["detail"]
    code, verdict = run_cli(capsys, "mailbox", "test", "no-such-mailbox")
    assert code == 1
    assert verdict["steps"] == [{"step": "mailbox", "ok": False, "detail": "no mailbox named no-such-mailbox"}]


class Browser(webbrowser.BaseBrowser):
    """The admin's browser: opens the consent page, which (the user signed in) redirects back to the CLI."""

    def __init__(self, ca_bundle: str) -> None:
        super().__init__("mailintake-test")
        self.ca_bundle = ca_bundle
        self.opened: list[str] = []

    def open(self, url: str, new: int = 0, autoraise: bool = True) -> bool:
        import requests

        self.opened.append(url)
        session = requests.Session()
        session.trust_env = False
        threading.Thread(target=session.get, args=(url,), kwargs={"verify": self.ca_bundle, "timeout": 10},
                         daemon=True).start()
        return True


def test_mailbox_add_google_signs_the_user_in_with_the_installed_app_flow(
        settings: Any, server: oauth.AuthorizationServer, capsys: pytest.CaptureFixture[str]) -> None:
    name, password, connection = cli_user("imap")
    server.register_google_client("desktop-client", "desktop-secret")
    browser = Browser(str(dovecot.info(ROOT).ca_bundle))
    webbrowser.register("mailintake-test", None, browser, preferred=True)
    try:
        code, saved = run_cli(capsys, "mailbox", "add", name, *connection, "--auth", "google", "--client-id",
                              "desktop-client", "--client-secret", "desktop-secret", "--authority",
                              f"{server.base_url}/token", "--authorize-url", f"{server.base_url}/o/oauth2/v2/auth")
    finally:
        webbrowser._tryorder.remove("mailintake-test")  # type: ignore[attr-defined]
    assert code == 0 and saved["oauth_flow"] == "refresh-token"
    assert "code_challenge=" in browser.opened[0] and f"login_hint={name}" in browser.opened[0]
    dovecot.deliver(ROOT, name, password, make_mail("Signed in with Google"))
    report = fetches(settings)[name]
    assert (report["status"], report["fetched"]) == ("done", 1)
