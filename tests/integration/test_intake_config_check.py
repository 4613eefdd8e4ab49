"""The configuration check at the start of each mailbox run: logged every time, mailed once, and once cleared."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters

from mailintake.aws_clients import client
from mailintake.localrun import run_cycle
from mailintake.localstack import dovecot
from mailintake.store import MailboxRecord

from .conftest import ROOT
from .intake_support import REPLY_FROM, configure, fresh_config, ses_sent, verify_ses_sender

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_config")]
__all__ = ["fresh_config"]


def test_configuration_problems_are_reported_once_and_when_they_clear(
    settings: Any, mailbox: Callable[..., Any]
) -> None:
    admin = f"admin-{uuid.uuid4().hex[:8]}@tracker.example"
    verify_ses_sender(settings)
    configure({"reply.from": REPLY_FROM, "admin.address": admin})
    login = mailbox("imap", "ssl")
    secrets = client("secretsmanager", settings.region)
    secrets.put_secret_value(SecretId=login.secret_name, SecretString="wrong")
    folder = mailbox("imap", "ssl")
    folder.update(actions=[MailboxRecord.folder.set("Nowhere")])
    unreachable = mailbox("imap", "ssl")
    unreachable.update(actions=[MailboxRecord.port.set(1)])
    secret = mailbox("pop3", "ssl")
    secret.update(actions=[MailboxRecord.secret_name.set("mailintake/mailbox/none-such")])
    workspace = mailbox("imap", "ssl", workspace="nonexistent")

    def statuses() -> dict[str, str]:
        return {f["mailbox"]: f["status"] for f in run_cycle(settings).fetches}

    expected = {login.name: "login", folder.name: "folder", unreachable.name: "unreachable",
                secret.name: "secret", workspace.name: "workspace"}
    assert statuses() == dict.fromkeys(expected, "config-error")
    subjects = sorted(m["Subject"] for m in ses_sent(admin))
    assert subjects == sorted(f"mailintake: mailbox {n} has a problem ({p})" for n, p in expected.items())

    # The same problems again: no new mail.
    assert set(statuses().values()) == {"config-error"}
    assert len(ses_sent(admin)) == len(expected)


    from .conftest import (
        password_of,  # noqa: F401 (the right password is gone: set a fresh one)
    )

    dovecot.ensure_user(ROOT, login.username, "fixed-password")
    secrets.put_secret_value(SecretId=login.secret_name, SecretString="fixed-password")

    parameters.get_secret(login.secret_name, force_fetch=True)  # the fetch caches secrets for 5 minutes
    assert statuses()[login.name] == "done"
    cleared = [m["Subject"] for m in ses_sent(admin) if "works again" in m["Subject"]]
    assert cleared == [f"mailintake: mailbox {login.name} works again"]
