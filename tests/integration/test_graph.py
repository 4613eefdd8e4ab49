"""Microsoft Graph mailboxes: the whole path, from the local Graph server through the real fetch and process
handlers into items, over moto's server. The same nothing-lost, nothing-doubled and crash tests as IMAP."""

from __future__ import annotations

import email
import json
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailintake import store
from mailintake.aws_clients import client
from mailintake.localrun import invoke, run_cycle

from .conftest import ROOT, make_mail
from .fault_support import take_over_after_a_killed_fetch
from .intake_support import configure

pytestmark = pytest.mark.integration

KILLER = Path(__file__).with_name("fetch_killer.py")
MAILS = 15  # two batches: a kill lands in the second, after the first was wholly handed over


def outcomes() -> Counter[str]:
    return Counter(r.status for r in store.list_ledger())


def titles() -> list[str]:
    return sorted(str(i.title) for i in store.list_items())


def on_server(graph: Any, box: Any, folder: str = "inbox") -> list[Any]:
    return list(graph.messages(str(box.username), folder))


def subjects_on_server(graph: Any, box: Any, folder: str = "inbox") -> set[str]:
    return {str(email.message_from_bytes(m.raw)["Subject"]) for m in on_server(graph, box, folder)}


def stored_subjects(settings: Any, box: Any) -> set[str]:
    s3 = client("s3", settings.region)
    listing = s3.list_objects_v2(Bucket=settings.bucket, Prefix=f"raw/{box.name}/").get("Contents", [])
    return {str(email.message_from_bytes(s3.get_object(Bucket=settings.bucket, Key=o["Key"])["Body"].read())
                ["Subject"]) for o in listing}


def deliver_all(graph: Any, box: Any, subjects: list[str]) -> None:
    for subject in subjects:
        graph.deliver(str(box.username), make_mail(subject))


def test_graph_mailbox_reads_every_page_into_items_and_a_second_poll_changes_nothing(
    settings: Any, local_graph: Any, graph_mailbox: Callable[..., Any]
) -> None:
    local_graph.state.max_page = 4  # Graph may page smaller than asked: 25 mails take seven pages
    box = graph_mailbox(after="seen")
    subjects = [f"Paged {n:02d}" for n in range(25)]
    deliver_all(local_graph, box, subjects)

    first = run_cycle(settings).fetches
    second = run_cycle(settings).fetches

    assert [(f["status"], f["fetched"]) for f in first] == [("done", 25)]
    assert [(f["status"], f["fetched"]) for f in second] == [("done", 0)]  # marked read: not read again
    assert titles() == subjects
    assert outcomes() == Counter({"item": 25})
    assert all(m.is_read for m in on_server(local_graph, box))
    assert len(local_graph.requests("GET", f"/users/{box.username}/mailFolders/")) >= 7
    assert {i.mailbox for i in store.list_items()} == {box.name}


def test_graph_new_mail_after_the_first_round_comes_from_the_delta_link(
    settings: Any, local_graph: Any, graph_mailbox: Callable[..., Any]
) -> None:
    box = graph_mailbox(after="seen")
    deliver_all(local_graph, box, ["Before"])
    run_cycle(settings)
    link = store.load_cursor(box.name).delta_link
    assert link and "deltatoken" in link
    deliver_all(local_graph, box, ["After"])

    assert [f["fetched"] for f in run_cycle(settings).fetches] == [1]
    assert titles() == ["After", "Before"]
    assert outcomes() == Counter({"item": 2})


def test_graph_move_puts_mail_into_the_named_folder_and_delete_removes_it(
    settings: Any, local_graph: Any, graph_mailbox: Callable[..., Any]
) -> None:
    moving = graph_mailbox(after="move", move_to="Processed")
    deleting = graph_mailbox(after="delete")
    deliver_all(local_graph, moving, ["Move me"])
    deliver_all(local_graph, deleting, ["Delete me"])

    run_cycle(settings)
    assert [f["fetched"] for f in run_cycle(settings).fetches] == [0, 0]

    assert on_server(local_graph, moving) == []
    assert subjects_on_server(local_graph, moving, "Processed") == {"Move me"}
    assert on_server(local_graph, deleting) == []
    assert titles() == ["Delete me", "Move me"]
    assert outcomes() == Counter({"item": 2})


def test_graph_folder_by_display_path_and_a_missing_folder_is_a_configuration_error(
    settings: Any, local_graph: Any, graph_mailbox: Callable[..., Any]
) -> None:
    box = graph_mailbox(after="seen", folder="Support/Printers", folders=("Support",))
    user = str(box.username)
    local_graph.add_folder(user, "Printers", local_graph.folder_id(user, "Support"))
    local_graph.deliver(user, make_mail("In a subfolder"), "Printers")
    local_graph.deliver(user, make_mail("In the inbox"))

    assert [f["fetched"] for f in run_cycle(settings).fetches] == [1]
    assert titles() == ["In a subfolder"]

    missing = graph_mailbox(folder="Nowhere")
    report = invoke("fetch", {"mailbox": missing.name})
    assert report["status"] == "config-error"
    alert = store.AlertRecord.get(*store.AlertRecord.key(missing.name))
    assert alert.problem == "folder"


def test_graph_throttling_is_waited_out_as_retry_after_asks(
    settings: Any, local_graph: Any, graph_mailbox: Callable[..., Any]
) -> None:
    box = graph_mailbox(after="delete")
    deliver_all(local_graph, box, [f"Throttled {n}" for n in range(3)])
    local_graph.fail(2, 429, "1", path="/$value")
    local_graph.fail(1, 503, "1", path="/messages/delta")

    started = time.monotonic()
    report = run_cycle(settings).fetches[0]

    assert (report["status"], report["fetched"]) == ("done", 3)
    assert time.monotonic() - started >= 3  # three waits of a second, as asked
    assert titles() == [f"Throttled {n}" for n in range(3)]
    assert on_server(local_graph, box) == []


def test_graph_throttling_longer_than_the_run_has_left_interrupts_it_and_the_next_run_finishes(
    settings: Any, local_graph: Any, graph_mailbox: Callable[..., Any]
) -> None:
    box = graph_mailbox(after="delete")
    subjects = [f"Busy {n:02d}" for n in range(MAILS)]
    deliver_all(local_graph, box, subjects)
    local_graph.fail(1, 429, "3600", path="/$value")  # an hour: far beyond the five-minute function

    skipped = local_graph.requests("GET", "/$value")
    first = run_cycle(settings).fetches[0]
    assert len(local_graph.requests("GET", "/$value")) == len(skipped)  # the throttled one, not waited for
    assert (first["status"], first["fetched"]) == ("interrupted", 0)
    assert "429" in first["error"]

    assert run_cycle(settings).fetches[0]["status"] == "done"
    assert titles() == subjects
    assert outcomes() == Counter({"item": MAILS})
    assert on_server(local_graph, box) == []


def test_graph_dropped_connection_on_a_read_is_retried(
    settings: Any, local_graph: Any, graph_mailbox: Callable[..., Any]
) -> None:
    box = graph_mailbox(after="delete")
    deliver_all(local_graph, box, ["Dropped once"])
    local_graph.drop(1, path="/$value")

    report = run_cycle(settings).fetches[0]

    assert (report["status"], report["fetched"]) == ("done", 1)
    assert titles() == ["Dropped once"]


def test_graph_crash_between_storing_and_settling_loses_and_doubles_nothing(
    settings: Any, local_graph: Any, graph_mailbox: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailintake.sources import GraphSource

    box = graph_mailbox(after="delete")
    deliver_all(local_graph, box, [f"Crash test {n}" for n in range(3)])

    def crash(self: Any, items: Any) -> None:
        raise RuntimeError("injected crash after S3 write and enqueue, before settling on the server")

    monkeypatch.setattr(GraphSource, "settle", crash)
    with pytest.raises(RuntimeError, match="injected crash"):
        run_cycle(settings)
    assert len(on_server(local_graph, box)) == 3  # nothing removed that was not settled
    monkeypatch.undo()

    run_cycle(settings)
    run_cycle(settings)

    assert titles() == [f"Crash test {n}" for n in range(3)]
    assert outcomes() == Counter({"item": 3})
    assert on_server(local_graph, box) == []


def test_graph_mark_read_with_a_run_stopping_midway_through_the_round_reads_each_mail_once(
    settings: Any, local_graph: Any, graph_mailbox: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stretches of a round: the cursor moves over wholly settled ones; marking read (a change the next
    round reports) never makes a mail read twice."""
    from mailintake import fetching
    from mailintake.sources import graph

    monkeypatch.setattr(graph, "STRETCH", 7)
    local_graph.state.max_page = 3
    box = graph_mailbox(after="seen")
    subjects = [f"Stretch {n:02d}" for n in range(MAILS)]
    deliver_all(local_graph, box, subjects)
    calls = 0
    original = fetching.S3RawMailStore.put

    def stop_at_the_thirteenth(self: Any, *args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 13:
            raise ConnectionResetError("injected: the server went away")
        return original(self, *args)

    # The first stretch (three pages, nine mails) and one more are settled in the first batch of ten; the
    # failed write keeps the rest of its batch from the queue (the mails after it may be stored already:
    # writes run beside the downloads), so they are read again.
    monkeypatch.setattr(fetching.S3RawMailStore, "put", stop_at_the_thirteenth)
    first = run_cycle(settings).fetches[0]
    assert (first["status"], first["fetched"]) == ("interrupted", 10)
    monkeypatch.setattr(fetching.S3RawMailStore, "put", original)

    reads_before = len(local_graph.requests("GET", "/$value"))
    second = run_cycle(settings).fetches[0]
    third = run_cycle(settings).fetches[0]

    assert (second["status"], third["status"], third["fetched"]) == ("done", "done", 0)
    # Only what was not settled is read again: the round goes on after the first stretch, without the
    # one mail of the second stretch that was settled; marking read (reported in the next round) and
    # the next round read nothing again.
    assert len(local_graph.requests("GET", "/$value")) - reads_before == MAILS - 10
    assert titles() == subjects
    assert outcomes() == Counter({"item": MAILS})
    assert all(m.is_read for m in on_server(local_graph, box))


@pytest.mark.parametrize(("step", "nth"), [
    ("downloaded", 12), ("stored", 2), ("enqueued", 2), ("marked", 1), ("finished", 1),
])
def test_graph_fetch_killed_at_any_step_loses_nothing_and_doubles_nothing(
    settings: Any, local_graph: Any, graph_mailbox: Callable[..., Any], step: str, nth: int
) -> None:
    box = graph_mailbox(after="delete")
    subjects = [f"Kill at {step} {n:02d}" for n in range(MAILS)]
    deliver_all(local_graph, box, subjects)

    killed = subprocess.run([sys.executable, str(KILLER), box.name, step, str(nth)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]

    # Nothing removed from the server that was not stored first.
    assert set(subjects) <= subjects_on_server(local_graph, box) | stored_subjects(settings, box)
    take_over_after_a_killed_fetch(settings, box.name)

    assert titles() == subjects
    assert outcomes() == Counter({"item": MAILS})
    assert on_server(local_graph, box) == []
    assert stored_subjects(settings, box) == set(subjects)


def test_graph_server_going_away_mid_fetch_interrupts_the_run_and_later_runs_finish_without_doubling(
    settings: Any, local_graph: Any, graph_mailbox: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailintake import fetching

    box = graph_mailbox(after="delete")
    subjects = [f"Server gone {n:02d}" for n in range(MAILS)]
    deliver_all(local_graph, box, subjects)
    original = fetching.S3RawMailStore.put
    calls = 0

    def store_then_stop(self: Any, *args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 12:
            local_graph.stop()
        return original(self, *args)

    monkeypatch.setattr(fetching.S3RawMailStore, "put", store_then_stop)
    try:
        first = run_cycle(settings).fetches[0]
        # The mails read before the drop are queued too, though not settled: how many depends on how far
        # the downloads ran ahead of the writes (they run side by side).
        assert first["status"] == "interrupted" and 12 <= first["fetched"] <= MAILS
        assert "NewConnectionError" in first["error"]
        monkeypatch.undo()
        # Still away at the next run: a configuration problem (unreachable), reported by the check.
        assert run_cycle(settings).fetches[0]["status"] == "config-error"
        assert store.AlertRecord.get(*store.AlertRecord.key(box.name)).problem == "unreachable"
    finally:
        local_graph.start()

    back = run_cycle(settings).fetches[0]

    assert back["status"] == "done"
    assert titles() == subjects
    assert outcomes() == Counter({"item": MAILS})
    assert on_server(local_graph, box) == []
    assert stored_subjects(settings, box) == set(subjects)


def test_graph_token_expired_on_the_server_is_replaced_once_and_the_run_goes_on(
    settings: Any, local_graph: Any, graph_mailbox: Callable[..., Any], identity_platform: Any
) -> None:
    box = graph_mailbox(after="delete")
    deliver_all(local_graph, box, ["Before the expiry"])
    run_cycle(settings)  # the container caches the app's token for Graph
    asked = identity_platform.token_requests
    identity_platform.expire_all()  # before the lifetime the client was told: Graph answers 401
    deliver_all(local_graph, box, ["After the expiry"])

    report = run_cycle(settings).fetches[0]

    assert (report["status"], report["fetched"]) == ("done", 1)
    assert identity_platform.token_requests == asked + 1  # one new token, then the run went on
    assert titles() == ["After the expiry", "Before the expiry"]


def test_graph_mailbox_outside_the_apps_access_policy_is_a_login_problem_reported_once(
    settings: Any, local_graph: Any, graph_mailbox: Callable[..., Any], identity_platform: Any
) -> None:
    box = graph_mailbox()
    deliver_all(local_graph, box, ["Not for this app"])
    identity_platform.apps[str(box.client_id)].mailboxes = {"someone-else@contoso.example"}

    report = invoke("fetch", {"mailbox": box.name})

    assert report["status"] == "config-error"
    alert = store.AlertRecord.get(*store.AlertRecord.key(box.name))
    assert alert.problem == "login"
    assert "ErrorAccessDenied" in alert.detail and "application access policy" in alert.detail
    assert store.list_ledger() == []
    assert len(on_server(local_graph, box)) == 1


def test_graph_revoked_consent_ends_the_run_as_a_configuration_error_that_says_what_to_fix(
    settings: Any, local_graph: Any, graph_mailbox: Callable[..., Any], identity_platform: Any
) -> None:
    box = graph_mailbox()
    deliver_all(local_graph, box, ["After the consent went"])
    identity_platform.revoke_consent(str(box.client_id))

    report = invoke("fetch", {"mailbox": box.name})

    assert report["status"] == "config-error"
    alert = store.AlertRecord.get(*store.AlertRecord.key(box.name))
    assert alert.problem.startswith("oauth-")
    assert "admin consent" in alert.detail
    assert len(on_server(local_graph, box)) == 1


def test_graph_large_mail_is_streamed_to_s3_byte_for_byte(
    settings: Any, local_graph: Any, graph_mailbox: Callable[..., Any]
) -> None:
    from mailintake.fetching import STREAM_ABOVE_BYTES

    box = graph_mailbox(after="delete")
    payload = bytes(range(256)) * (STREAM_ABOVE_BYTES // 256 * 7 // 8)  # base64 takes it over the threshold
    raw = make_mail("Large", attachments=[("big.bin", "application/octet-stream", payload)])
    assert len(raw) > STREAM_ABOVE_BYTES
    local_graph.deliver(str(box.username), raw)

    run_cycle(settings)

    (ledger,) = store.list_ledger()
    body = client("s3", settings.region).get_object(Bucket=settings.bucket, Key=ledger.key)["Body"].read()
    assert body == raw
    (item,) = store.list_items()
    assert [int(a.size) for a in item.attachments] == [len(payload)]


def test_graph_reply_goes_out_through_send_mail_as_mime_keeping_the_thread_headers(
    settings: Any, local_graph: Any, graph_mailbox: Callable[..., Any]
) -> None:
    box = graph_mailbox(after="delete")
    helpdesk = graph_mailbox()  # the account replies go out as, with its own app registration
    configure({"reply.from": str(helpdesk.username), "reply.transport": "graph",
               "reply.graphMailbox": helpdesk.name, "intake.knownSendersOnly": "true"})
    before = len(local_graph.sent)
    local_graph.deliver(str(box.username), make_mail("Let me in", message_id="stranger-1"))

    run_cycle(settings)

    assert outcomes() == Counter({"rejected": 1})
    (sent,) = local_graph.sent[before:]
    assert sent["user"] == helpdesk.username
    reply = email.message_from_bytes(sent["mime"])
    assert (reply["From"], reply["To"]) == (helpdesk.username, "ada@example.org")
    assert reply["In-Reply-To"] == "<stranger-1@example.org>"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["Subject"] == "Re: Let me in"
    (ledger,) = store.list_ledger()
    assert ledger.reply == "sent via graph to ada@example.org"


def test_mailbox_add_protocol_graph_then_mailbox_test_gives_a_verdict_without_fetching(
    settings: Any, local_graph: Any, identity_platform: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from mailintake import cli
    from mailintake.localstack import dovecot
    from mailintake.localstack.graph import accept_tokens_of

    def run_cli(*argv: str) -> tuple[int, Any]:
        capsys.readouterr()
        code = cli.main([*argv, "--json"])
        out = capsys.readouterr().out
        return code, json.loads(out) if out.strip() else None

    local_graph.state.token_check = accept_tokens_of(identity_platform)
    name = f"graph-cli-{uuid.uuid4().hex[:8]}"
    user = f"{name}@contoso.example"
    local_graph.add_mailbox(user, ("Processed",))
    identity_platform.register_microsoft_app("contoso", f"app-{name}", "graph-secret", {user})
    local_graph.deliver(user, make_mail("Stays where it is"))
    code, saved = run_cli("mailbox", "add", name, "--protocol", "graph", "--graph-url", local_graph.base_url,
                          "--user", user, "--after", "move", "--move-to", "Processed", "--auth", "microsoft",
                          "--tenant", "contoso", "--client-id", f"app-{name}", "--client-secret", "graph-secret",
                          "--authority", identity_platform.base_url,
                          "--ca-bundle", str(dovecot.info(ROOT).ca_bundle))
    assert code == 0, saved
    assert (saved["protocol"], saved["host"], saved["username"]) == ("graph", local_graph.base_url, user)

    code, verdict = run_cli("mailbox", "test", name)
    assert code == 0 and verdict["ok"], verdict
    assert [s["step"] for s in verdict["steps"]] == ["token", "login", "folder", "after"]
    assert "1 mail in it" in verdict["steps"][2]["detail"] and "'Processed' found" in verdict["steps"][3]["detail"]
    assert len(on_server(local_graph, store.MailboxRecord.get(*store.MailboxRecord.key(name)))) == 1

    # Added with --start new (the default): the mail already there is left alone, later mail is read.
    assert [f["fetched"] for f in run_cycle(settings).fetches] == [0]
    local_graph.deliver(user, make_mail("Arrived after the mailbox was added"))
    assert [f["fetched"] for f in run_cycle(settings).fetches] == [1]
    assert titles() == ["Arrived after the mailbox was added"]
    code, _ = run_cli("mailbox", "add", f"{name}-unread", "--protocol", "graph", "--graph-url",
                            local_graph.base_url, "--user", user, "--start", "unread", "--auth", "microsoft",
                            "--tenant", "contoso", "--client-id", f"app-{name}", "--client-secret", "graph-secret",
                            "--authority", identity_platform.base_url,
                            "--ca-bundle", str(dovecot.info(ROOT).ca_bundle))
    assert code == 2

    identity_platform.apps[f"app-{name}"].mailboxes = {"someone-else@contoso.example"}
    identity_platform.expire_all()
    code, verdict = run_cli("mailbox", "test", name)
    assert code == 1 and not verdict["ok"]
    assert verdict["steps"][-1]["step"] == "connect" and "application access policy" in verdict["steps"][-1]["detail"]
