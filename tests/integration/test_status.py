"""`mailintake status` on the real local stack: a mailbox with a wrong password, one with a poisoned mail
and a healthy one each show up as what they are, and the exit code says whether anything needs attention."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from mailintake import status
from mailintake.aws_clients import client
from mailintake.localrun import invoke
from mailintake.processing import Processor
from mailintake.store import utcnow

from .conftest import ROOT, make_mail
from .fault_support import drain

pytestmark = pytest.mark.integration


def run_status() -> tuple[int, dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "mailintake.cli", "status", "--json"], cwd=ROOT,
                          capture_output=True, text=True)
    return done.returncode, json.loads(done.stdout)


def fetch(name: str) -> dict[str, Any]:
    report: dict[str, Any] = invoke("fetch", {"mailbox": name})
    return report


def test_a_healthy_stack_is_all_well_with_exit_code_0(settings: Any, mailbox: Callable[..., Any],
                                                       deliver: Callable[..., None]) -> None:
    healthy = mailbox("imap")
    deliver(healthy, make_mail("Read in the first run"))
    assert fetch(healthy.name)["status"] == "done"
    drain(settings)
    deliver(healthy, make_mail("Waiting on the server"))
    code, shown = run_status()
    assert code == 0, shown
    (box,) = shown["mailboxes"]
    assert box["name"] == healthy.name and box["problems"] == []
    assert box["last_run"]["status"] == "done" and box["last_run"]["fetched"] == 1
    assert box["waiting"] == 1 and box["failed_24h"] == 0
    assert box["schedule"] == "rate(5 minutes), ENABLED"
    assert shown["dead_letter_queue"] == {"waiting": 0, "in_flight": 0} and shown["needs_attention"] is False


def test_wrong_password_poisoned_mail_and_healthy_mailbox_each_show_as_what_they_are(
        settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    healthy, broken, poisoned = mailbox("imap"), mailbox("pop3"), mailbox("imap")
    client("secretsmanager", settings.region).put_secret_value(SecretId=broken.secret_name,
                                                               SecretString="not-the-password")
    deliver(healthy, make_mail("Fine"))
    deliver(poisoned, make_mail("Poisoned", headers={"X-Test-Poison": "yes"}))
    judge = Processor.judge

    def poisoned_judge(self: Processor, job: Any, *args: Any, **kwargs: Any) -> Any:
        if b"X-Test-Poison" in (job.inline_bytes() or b""):
            raise RuntimeError("poisoned mail: the parser blew up")
        return judge(self, job, *args, **kwargs)

    monkeypatch.setattr(Processor, "judge", poisoned_judge)
    reports = [fetch(name) for name in (healthy.name, poisoned.name)]
    assert [r["status"] for r in reports] == ["done", "done"]
    # The wrong password: a configuration error every run; the third in a row is counted for the alarm.
    failing = [fetch(broken.name) for _ in range(3)]
    assert [r["status"] for r in failing] == ["config-error"] * 3
    assert [r["mailboxes_failing"] for r in failing] == [0, 0, 1]
    assert failing[-1]["mailboxes_overdue"] == 0  # new mailboxes get their first intervals
    drain(settings)  # the poisoned mail fails five times, into the dead-letter queue

    code, shown = run_status()
    assert code == 1
    boxes = {b["name"]: b for b in shown["mailboxes"]}
    assert boxes[healthy.name]["problems"] == [] and boxes[healthy.name]["waiting"] == 0
    wrong = boxes[broken.name]
    assert wrong["last_run"]["status"] == "config-error" and wrong["last_success"] is None
    assert "authentication" in wrong["last_run"]["error"].lower() or "login" in wrong["last_run"]["error"].lower()
    assert any("the last 3 runs ended config-error" in p for p in wrong["problems"])
    assert wrong["waiting"] is None and any("cannot read the server" in p for p in wrong["problems"])
    sick = boxes[poisoned.name]
    assert sick["last_run"]["status"] == "done" and sick["failed_24h"] == 1 and sick["waiting"] == 0
    assert sick["problems"] == ["1 mail(s) failed in the last 24 h: mailintake messages list --outcome failed"]
    assert shown["dead_letter_queue"]["waiting"] == 1
    assert shown["problems"] == ["1 mail(s) in the dead-letter queue: mailintake dlq redrive once fixed"]

    # Three intervals on, with no run since: every enabled mailbox is overdue.
    later = status.collect(settings, ask_server=False, now=utcnow() + timedelta(minutes=16))
    assert all(any("no successful run" in p for p in m.problems) for m in later.mailboxes)
