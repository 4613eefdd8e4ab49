"""`mailintake mailbox add`'s sign-in options (password, Microsoft 365, Google) and `mailbox test`.

The OAuth secret the options make is the JSON mailintake.tokens reads: a client secret, a certificate's
private key and thumbprint, a refresh token (given, or from a device-code sign-in here), or a service
account's key. It goes to Secrets Manager only; nothing of it is printed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from mailintake.cli_output import emit
from mailintake.tokens import GRAPH_SCOPE, MICROSOFT_AUTHORITY, OUTLOOK_SCOPE


class SignInError(RuntimeError):
    """The options do not make a sign-in, or the sign-in failed."""


def add_auth_options(add: argparse.ArgumentParser) -> None:
    group = add.add_argument_group("sign-in (OAuth 2.0; default: a password)")
    group.add_argument("--auth", choices=("password", "microsoft", "google"), default="password")
    group.add_argument("--tenant", help="microsoft: the Directory (tenant) ID")
    group.add_argument("--client-id", help="microsoft: the Application (client) ID; google: the OAuth client ID")
    secret = group.add_mutually_exclusive_group()
    secret.add_argument("--client-secret", help="the client secret's value (prefer --client-secret-env)")
    secret.add_argument("--client-secret-env", help="name of an environment variable holding the client secret")
    secret.add_argument("--certificate", help="microsoft: PEM file with the app's certificate and private key")
    secret.add_argument("--service-account", help="google: the service account's JSON key file")
    group.add_argument("--secret-expires", metavar="YYYY-MM-DD",
                       help="when the client secret expires: the admin is warned 14 days ahead")
    group.add_argument("--delegated", action="store_true",
                       help="microsoft: sign in as the mailbox's user (device code) instead of app-only access")
    group.add_argument("--refresh-token", help="a refresh token from a sign-in (prefer --refresh-token-env)")
    group.add_argument("--refresh-token-env", help="name of an environment variable holding a refresh token")
    group.add_argument("--subject", help="google service account: the user to impersonate (default --user)")
    group.add_argument("--authority", help="the identity provider's endpoint when not the public one (microsoft:"
                       " the authority host, e.g. a national cloud's; google: the token URL)")
    group.add_argument("--authorize-url", help="google: the sign-in page's URL when not Google's own")


def _flow(args: argparse.Namespace) -> str | None:
    if args.auth == "microsoft":
        return "delegated" if args.delegated or args.refresh_token or args.refresh_token_env else "app"
    if args.auth == "google":
        return "service-account" if args.service_account else "refresh-token"
    return None


def spec_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The MailboxSpec fields of the sign-in options."""
    if args.auth == "password":
        return {}
    return {"auth": args.auth, "oauth_flow": _flow(args), "tenant": args.tenant, "client_id": args.client_id,
            "oauth_endpoint": args.authority, "secret_expires": args.secret_expires}


def _env(name: str | None) -> str | None:
    return os.environ.get(name) if name else None


def _certificate(path: str) -> dict[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    pem = Path(path).read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    key = serialization.load_pem_private_key(pem, password=None)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    # msal names the certificate by its SHA-1 thumbprint, as the Azure portal shows it.
    thumbprint = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return {"certificate": key_pem, "thumbprint": thumbprint}


def oauth_secret(args: argparse.Namespace, ca_bundle: str | None) -> dict[str, Any] | None:
    """What goes into the mailbox's secret for the sign-in the options describe; None for a password."""
    if args.auth == "password":
        return None
    client_secret = args.client_secret or _env(args.client_secret_env)
    refresh_token = args.refresh_token or _env(args.refresh_token_env)
    if args.auth == "google":
        if args.service_account:
            secret: dict[str, Any] = {"service_account": json.loads(Path(args.service_account).read_text())}
            if args.subject:
                secret["subject"] = args.subject
            return secret
        if not (args.client_id and client_secret):
            raise SignInError("google needs --service-account FILE, or the OAuth client's --client-id and"
                              " --client-secret (and --refresh-token, else the user signs in now)")
        return {"client_secret": client_secret,
                "refresh_token": refresh_token or google_sign_in(args, client_secret, ca_bundle)}
    if _flow(args) == "delegated":
        token = refresh_token or device_code_sign_in(args, ca_bundle)
        return {"refresh_token": token}
    if args.certificate:
        return _certificate(args.certificate)
    if not client_secret:
        raise SignInError("microsoft app-only access needs --client-secret (or --client-secret-env) or --certificate")
    return {"client_secret": client_secret}


def device_code_sign_in(args: argparse.Namespace, ca_bundle: str | None) -> str:
    """Sign the mailbox's user in with a device code (msal); the refresh token the sign-in yields."""
    import msal

    from mailintake.tokens import http_session

    if not (args.tenant and args.client_id):
        raise SignInError("--delegated needs --tenant and --client-id (an app registration that allows public"
                          " client flows: Authentication > Allow public client flows)")
    host = (args.authority or MICROSOFT_AUTHORITY).rstrip("/")
    app = msal.PublicClientApplication(args.client_id, authority=f"{host}/{args.tenant}",
                                       http_client=http_session(ca_bundle),
                                       instance_discovery=host == MICROSOFT_AUTHORITY)
    scope = GRAPH_SCOPE if args.protocol == "graph" else OUTLOOK_SCOPE
    flow = app.initiate_device_flow(scopes=[scope])
    if "user_code" not in flow:
        raise SignInError(f"the device-code sign-in could not start: {flow.get('error_description') or flow}")
    print(flow["message"], file=sys.stderr, flush=True)
    result = app.acquire_token_by_device_flow(flow)
    if "refresh_token" not in result:
        raise SignInError(f"the sign-in failed: {result.get('error_description') or result.get('error')}")
    return str(result["refresh_token"])


GOOGLE_AUTH_URL = "https://accounts.google.com/o/oauth2/v2/auth"


def google_sign_in(args: argparse.Namespace, client_secret: str, ca_bundle: str | None) -> str:
    """Sign the mailbox's user in with the OAuth client: the installed-app flow (google-auth-oauthlib), a
    page to open, consent, the redirect to a loopback port here; the refresh token it yields."""
    import contextlib
    import webbrowser

    from google_auth_oauthlib.flow import InstalledAppFlow

    from mailintake.tokens import GOOGLE_MAIL_SCOPE, GOOGLE_TOKEN_URL, http_session

    token_url = args.authority or GOOGLE_TOKEN_URL
    client = {"installed": {"client_id": args.client_id, "client_secret": client_secret,
                            "auth_uri": args.authorize_url or GOOGLE_AUTH_URL, "token_uri": token_url,
                            "redirect_uris": ["http://127.0.0.1"]}}
    flow = InstalledAppFlow.from_client_config(client, scopes=[GOOGLE_MAIL_SCOPE])
    session = http_session(ca_bundle)
    flow.oauth2session.verify = session.verify
    flow.oauth2session.trust_env = session.trust_env
    try:
        webbrowser.get()
        browser = True
    except webbrowser.Error:  # a server without a browser: the admin opens the page elsewhere
        browser = False
    prompt = f"Open this page, sign in as {args.user} and allow access to mail:\n{{url}}"
    # Its prompt goes to stdout, which --json keeps for the result.
    with contextlib.redirect_stdout(sys.stderr):
        credentials = flow.run_local_server(host="127.0.0.1", port=0, open_browser=browser,
                                            authorization_prompt_message=prompt, timeout_seconds=600,
                                            login_hint=args.user, access_type="offline", prompt="consent")
    if not credentials.refresh_token:
        raise SignInError("Google gave no refresh token: remove mailintake's access in the account's"
                          " security settings (Third-party access) and sign in again")
    return str(credentials.refresh_token)


def cmd_mailbox_test(args: argparse.Namespace) -> int:
    from mailintake.mailbox_check import check
    from mailintake.runtime import bound_settings
    from mailintake.tokens import TokenProvider

    settings = bound_settings()
    verdict = check(args.name, TokenProvider.for_settings(settings))
    emit(args, verdict.as_dict(), verdict.lines())
    return 0 if verdict.ok else 1


def register_test(mailbox: Any, common: argparse.ArgumentParser) -> None:
    test = mailbox.add_parser("test", parents=[common], help="check a mailbox's sign-in, folder and permissions"
                              " without fetching; exits non-zero when it cannot be read")
    test.add_argument("name")
    test.set_defaults(func=cmd_mailbox_test)
