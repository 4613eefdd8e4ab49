"""Secrets stay secret: a full poll at DEBUG log level, and a refused login, leave the mailbox passwords in
no log line, no ledger or table record, no queue message, no handler result and no error."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters

from mailintake import localrun, store
from mailintake.aws_clients import client
from mailintake.localrun import run_cycle

from .conftest import make_mail, password_of

pytestmark = pytest.mark.integration


def table_dump(settings: Any) -> str:
    dynamodb = client("dynamodb", settings.region)
    items = [item for page in dynamodb.get_paginator("scan").paginate(TableName=settings.table)
             for item in page["Items"]]
    return json.dumps(items, default=str)


@dataclass
class Logs:
    records: list[logging.LogRecord]
    stream: io.StringIO  # what Powertools' handler writes: the JSON lines Lambda sends to CloudWatch

    def text(self) -> str:
        return self.stream.getvalue() + "\n".join(f"{r.getMessage()} {r.__dict__}" for r in self.records)


class _Keep(logging.Handler):
    """Keeps every record, and its line as Powertools' own handler formats it (the JSON Lambda ships)."""

    def __init__(self, logs: Logs, formatter: logging.Formatter | None) -> None:
        super().__init__(logging.DEBUG)
        self.logs = logs
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        self.logs.records.append(record)
        self.logs.stream.write(self.format(record) + "\n")


@pytest.fixture()
def debug_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Logs]:
    """The handlers' logs at DEBUG, as POWERTOOLS_LOG_LEVEL=DEBUG gives them in Lambda, all captured."""
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    localrun.load_function("fetch")  # the handlers set up Powertools' service logger when imported
    localrun.load_function("process")
    service = logging.getLogger("mailintake")  # every child logger of the package logs through it
    streams = [h for h in service.handlers if isinstance(h, logging.StreamHandler)]
    logs = Logs([], io.StringIO())
    keep = _Keep(logs, streams[0].formatter if streams else None)
    saved = [(h, h.stream) for h in streams]
    previous = service.level
    service.setLevel(logging.DEBUG)
    service.addHandler(keep)
    for handler in streams:
        # Assigned, not setStream(): the handler may still hold an earlier test's closed capture file.
        handler.stream = sys.stderr
    try:
        yield logs
    finally:
        service.removeHandler(keep)
        service.setLevel(previous)
        for handler, stream in saved:
            handler.stream = stream


@pytest.fixture()
def recorded_events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every event the local runner hands a handler, and every result it gets back, as JSON text."""
    seen: list[str] = []
    real = localrun.invoke

    def invoke(name: str, event: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        seen.append(json.dumps(event, default=str))
        result = real(name, event, *args, **kwargs)
        seen.append(json.dumps(result, default=str))
        return result

    monkeypatch.setattr(localrun, "invoke", invoke)
    return seen


def test_mailbox_password_appears_in_no_log_ledger_event_or_record_of_a_full_poll(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None], debug_logs: Logs,
    recorded_events: list[str], capfd: pytest.CaptureFixture[str],
) -> None:
    boxes = [mailbox("imap", "none"), mailbox("pop3", "starttls")]
    passwords = [password_of(box) for box in boxes]
    for box in boxes:
        deliver(box, make_mail(f"Secret-free {box.protocol}"))
        deliver(box, make_mail("", "An empty subject is rejected, with a reply.\n"))

    report = run_cycle(settings)

    assert [f["fetched"] for f in report.fetches] == [2, 2]
    assert sorted(r.status for r in store.list_ledger()) == ["item", "item", "rejected", "rejected"]
    assert logging.getLogger("mailintake.fetching").isEnabledFor(logging.DEBUG)
    assert '"message processed"' in debug_logs.stream.getvalue()  # the capture does see the handlers' logs
    out, err = capfd.readouterr()
    everything = {
        "logs": debug_logs.text(),
        "stdout/stderr": out + err,
        "events and results": "\n".join(recorded_events),
        "table": table_dump(settings),
        "report": json.dumps(report.fetches, default=str),
    }
    for password in passwords:
        assert len(password) >= 12
        for where, text in everything.items():
            assert password not in text, f"the password leaked into {where}"


def test_refused_login_names_neither_the_wrong_password_nor_the_right_one(
    settings: Any, mailbox: Callable[..., Any], debug_logs: Logs, capfd: pytest.CaptureFixture[str],
) -> None:
    box = mailbox("imap", "ssl")
    secrets = client("secretsmanager", settings.region)
    right = secrets.get_secret_value(SecretId=box.secret_name)["SecretString"]
    wrong = "Wr0ng-But-Distinctive-Passw0rd"
    secrets.put_secret_value(SecretId=box.secret_name, SecretString=wrong)
    parameters.clear_caches()  # type: ignore[no-untyped-call]  # the fetch function reads secrets through Powertools' cache

    report = localrun.invoke("fetch", {"mailbox": box.name})

    # Refused: reported as a configuration problem (logged, and kept as an alert record in the table).
    assert report["status"] == "config-error"
    assert "config" in debug_logs.text().lower() or "login" in debug_logs.text().lower()
    out, err = capfd.readouterr()
    texts = {"report": json.dumps(report), "stdout/stderr": out + err, "table": table_dump(settings),
             "logs": debug_logs.text()}
    for secret in (wrong, right):
        assert [where for where, text in texts.items() if secret in text] == []
    assert store.list_ledger() == []


def test_subject_marker_cannot_reach_an_item_the_sender_may_not_see(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None]
) -> None:
    from mailintake import directory

    directory.put_workspace("restricted", default_role="none")
    directory.put_user("ada@example.org", "Ada", {"restricted": "reporter"})
    box = mailbox("imap", "ssl", workspace="restricted")
    deliver(box, make_mail("Salary review", "Confidential.\n", sender="Ada <ada@example.org>"))
    run_cycle(settings)
    (item,) = store.list_items()

    deliver(box, make_mail(f"Re: [HD#{int(item.number)}] Salary review", "Let me in.\n",
                           sender="Mallory <mallory@example.net>"))
    run_cycle(settings)

    assert store.list_comments(int(item.number)) == []
    refused = [r for r in store.list_ledger() if r.sender == "mallory@example.net"]
    assert [(r.status, r.step) for r in refused] == [("rejected", "permission")]
