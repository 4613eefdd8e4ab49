"""Mailboxes on the local Dovecot: a mail user with a fresh password, registered as a mailbox record."""

from __future__ import annotations

import secrets
from pathlib import Path

from mailintake.localstack import dovecot
from mailintake.mailboxes import MailboxSpec, add_mailbox
from mailintake.settings import Settings
from mailintake.store import MailboxRecord


def local_mailbox(root: Path, settings: Settings, name: str, protocol: str = "imap", security: str = "ssl",
                  after: str | None = None, move_to: str | None = None, workspace: str = "default",
                  system: bool = False, trust_local_ca: bool = True) -> MailboxRecord:
    info = dovecot.start(root)
    password = secrets.token_urlsafe(12)
    dovecot.ensure_user(root, name, password)
    ports = {
        ("imap", "ssl"): info.imaps_port, ("imap", "starttls"): info.imap_port, ("imap", "none"): info.imap_port,
        ("pop3", "ssl"): info.pop3s_port, ("pop3", "starttls"): info.pop3_port, ("pop3", "none"): info.pop3_port,
    }
    spec = MailboxSpec(
        name=name, protocol=protocol, host=info.host, username=name, port=ports[(protocol, security)],
        security=security, after=after, move_to=move_to, workspace=workspace, system=system,
        ca_bundle=Path(info.ca_bundle).read_text() if trust_local_ca else None,
    )
    return add_mailbox(spec, settings, password)


def local_oauth_mailbox(root: Path, settings: Settings, name: str, authority: str, oauth_secret: dict[str, object],
                        protocol: str = "imap", security: str = "ssl", auth: str = "microsoft",
                        flow: str | None = None, tenant: str | None = None, client_id: str | None = None,
                        secret_expires: str | None = None) -> tuple[MailboxRecord, str]:
    """A mail user on the local Dovecot, registered as a mailbox that logs in with OAuth 2.0 tokens from
    ``authority`` (the local authorization server, mailintake.localstack.oauth); the record, and the
    user's password (for delivering test mail; the mailbox itself never uses it)."""
    info = dovecot.start(root)
    password = secrets.token_urlsafe(12)
    dovecot.ensure_user(root, name, password)
    port = {("imap", "ssl"): info.imaps_port, ("imap", "starttls"): info.imap_port,
            ("pop3", "ssl"): info.pop3s_port, ("pop3", "starttls"): info.pop3_port}[(protocol, security)]
    spec = MailboxSpec(
        name=name, protocol=protocol, host=info.host, username=name, port=port, security=security,
        ca_bundle=Path(info.ca_bundle).read_text(), auth=auth, oauth_flow=flow, tenant=tenant, client_id=client_id,
        oauth_endpoint=authority, secret_expires=secret_expires,
    )
    return add_mailbox(spec, settings, oauth_secret=dict(oauth_secret)), password
