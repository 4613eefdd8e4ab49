"""Fixtures over the real local stack: Dovecot on loopback and moto's server, started if not running."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def stack() -> Iterator[dict[str, str]]:
    from mailintake.localstack import dovecot, motoserver, resources

    motoserver.start(ROOT)
    env = resources.provision(ROOT, dovecot.start(ROOT))
    saved = dict(os.environ)
    os.environ.update(env)
    os.environ["POWERTOOLS_TRACE_DISABLED"] = "true"
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
    from mailintake.runtime import bound_settings

    bound_settings()  # this process's store, bound to the stack just provisioned
    yield env
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture()
def settings(stack: dict[str, str]) -> Any:
    """Settings of a clean stack: table, bucket, queues and schedules emptied before each test."""
    from mailintake.localrun import fresh_containers
    from mailintake.localstack import resources
    from mailintake.runtime import bound_settings

    resources.reset(ROOT)
    # The table was emptied behind the handler containers' caches: each test starts new containers.
    fresh_containers()
    return bound_settings()


@pytest.fixture()
def mailbox(settings: Any) -> Callable[..., Any]:
    """Make a mailbox on the local Dovecot with a unique name (so no test sees another's mail)."""
    from mailintake.localstack.accounts import local_mailbox

    def make(protocol: str = "imap", security: str = "ssl", **kwargs: Any) -> Any:
        name = f"{protocol}-{security}-{uuid.uuid4().hex[:8]}"
        return local_mailbox(ROOT, settings, name, protocol, security, **kwargs)

    return make


def password_of(record: Any) -> str:
    from aws_lambda_powertools.utilities import parameters

    return str(parameters.get_secret(record.secret_name, force_fetch=True))


def imap_of(record: Any) -> Any:
    """A plain loopback IMAP session as the mailbox's user (to look at what the fetch left behind)."""
    from imap_tools import MailBoxUnencrypted

    from mailintake.localstack import dovecot

    info = dovecot.info(ROOT)
    box = MailBoxUnencrypted(info.host, info.imap_port)
    box.login(record.username, password_of(record))
    return box


@pytest.fixture()
def deliver() -> Callable[[Any, bytes], None]:
    from mailintake.localstack import dovecot

    def send(record: Any, raw: bytes, folder: str = "INBOX") -> None:
        dovecot.deliver(ROOT, record.username, password_of(record), raw, folder)

    return send


def make_mail(subject: str, body: str = "Hello.\n", sender: str = "Ada Lovelace <ada@example.org>",
              message_id: str | None = None, attachments: list[tuple[str, str, bytes]] | None = None,
              headers: dict[str, str] | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "support@tracker.example"
    msg["Subject"] = subject
    msg["Date"] = "Tue, 24 Nov 2026 09:12:00 +0000"
    msg["Message-ID"] = f"<{message_id or uuid.uuid4().hex}@example.org>"
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    for filename, ctype, data in attachments or []:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return bytes(msg)


@pytest.fixture(scope="session")
def graph_server() -> Iterator[Any]:
    """The local Microsoft Graph, on an ephemeral loopback port, for the whole session."""
    from mailintake.localstack.graph import LocalGraph

    with LocalGraph() as graph:
        yield graph


@pytest.fixture(scope="session")
def identity_platform(stack: dict[str, str]) -> Iterator[Any]:
    """The local OAuth 2.0 authorization server (Microsoft identity platform), HTTPS with the stack's
    certificate; its introspection on an ephemeral port (Dovecot's is the OAuth tests' own)."""
    from mailintake.localstack import dovecot
    from mailintake.localstack.oauth import AuthorizationServer

    info = dovecot.info(ROOT)
    with AuthorizationServer(info.ca_bundle, info.ca_bundle.with_name("key.pem"), introspection_port=0) as auth:
        yield auth


@pytest.fixture()
def local_graph(graph_server: Any) -> Iterator[Any]:
    """The local Graph with no faults pending and its page size as Graph's, after each test too."""
    from mailintake.localstack.graph import MAX_PAGE

    graph_server.state.faults.clear()
    graph_server.state.max_page = MAX_PAGE
    yield graph_server
    if graph_server.httpd is None:
        graph_server.start()
    graph_server.state.faults.clear()
    graph_server.state.max_page = MAX_PAGE


@pytest.fixture()
def graph_mailbox(settings: Any, local_graph: Any, identity_platform: Any) -> Callable[..., Any]:
    """Make a Graph mailbox on the local Graph server with a unique name, signing in as its own app
    (client credentials) at the local identity platform, as Microsoft 365 mailboxes do."""
    from mailintake.localstack import dovecot
    from mailintake.localstack.graph import accept_tokens_of, local_graph_mailbox

    local_graph.state.token_check = accept_tokens_of(identity_platform)
    ca_bundle = dovecot.info(ROOT).ca_bundle.read_text()

    def make(after: str | None = None, **kwargs: Any) -> Any:
        return local_graph_mailbox(local_graph, settings, f"graph-{uuid.uuid4().hex[:8]}", after,
                                   auth=identity_platform, ca_bundle=ca_bundle, **kwargs)

    return make
