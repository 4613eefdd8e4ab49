"""Helpers of the intake-rule integration tests: settings, the mail the system sent, test scripts."""

from __future__ import annotations

import email
import json
import time
import urllib.request
from collections.abc import Iterator
from email.message import Message
from typing import Any

import pytest

REPLY_FROM = "intake@tracker.example"


@pytest.fixture(autouse=False)
def fresh_config() -> Iterator[None]:
    """The per-container config cache must not carry one test's settings into the next."""
    from mailintake import system_settings

    system_settings.invalidate()
    yield
    system_settings.invalidate()


def configure(values: dict[str, str | None], mailbox: str | None = None) -> None:
    from mailintake import system_settings

    system_settings.write_values(values, mailbox)


def verify_ses_sender(settings: Any) -> None:
    from mailintake.aws_clients import client

    client("ses", settings.region).verify_email_identity(EmailAddress=REPLY_FROM)


def _ses_raw() -> list[dict[str, Any]]:
    from mailintake.localstack import motoserver

    with urllib.request.urlopen(f"{motoserver.endpoint_url()}/moto-api/data.json", timeout=30) as response:
        data = json.load(response)
    return list(data.get("ses", {}).get("RawMessage", []))


def ses_sent(to: str) -> list[Message]:
    """Mail moto's SES accepted for ``to`` (moto's model data lists every RawMessage sent)."""
    return [email.message_from_string(m["raw_data"]) for m in _ses_raw() if to in m.get("destinations", [])]


def ses_sent_all() -> list[tuple[list[str], Message]]:
    """Every mail moto's SES accepted so far, with its destinations (kept across stack resets)."""
    return [(list(m.get("destinations", [])), email.message_from_string(m["raw_data"])) for m in _ses_raw()]


def ledger_by_subject() -> dict[str, Any]:
    from mailintake import store

    return {r.subject: store.LedgerRecord.get(r.pk, r.sk) for r in store.list_ledger()}


def explode(message: Any, *rest: Any) -> None:
    """A script that raises."""
    raise RuntimeError(f"cannot judge {message.subject!r}")


def spin(message: Any, *rest: Any) -> None:
    """A script that runs past any budget."""
    while True:
        time.sleep(0.05)


def body_of(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(message.get_content_charset() or "utf-8")
