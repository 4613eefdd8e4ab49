"""Intake-rule pieces that need no stack: settings validation, patterns, filter lists, scripts, replies."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from mailintake import scripts
from mailintake.outgoing import Outgoing, compose
from mailintake.system_settings import PermittedAddresses, SettingError, parse_lines, validate
from mailintake_scripts import routing, size_guard


def test_permitted_addresses_take_globs_or_one_regex() -> None:
    globs = PermittedAddresses.parse("*@example.org, *@*.partner.example\nboss@other.example")
    assert globs is not None
    assert globs.permits("Ada@Example.org") and globs.permits("x@eu.partner.example")
    assert globs.permits("boss@other.example") and not globs.permits("eve@evil.example")
    regex = PermittedAddresses.parse(r"regex:.*@(example\.org|partner\.example)")
    assert regex is not None and regex.permits("a@partner.example") and not regex.permits("a@example.org.evil")
    assert PermittedAddresses.parse("  ") is None
    with pytest.raises(SettingError):
        PermittedAddresses.parse("regex:(")


def test_filter_lines_skip_comments_and_keep_their_line_numbers() -> None:
    lines = parse_lines("filter.rejectSubject", "# comment\n\n^out of office\nloop")
    assert [(x.line, x.pattern.pattern) for x in lines] == [(3, "^out of office"), (4, "loop")]
    assert lines[0].pattern.search("OUT OF OFFICE: back Monday")
    with pytest.raises(SettingError, match="line 2"):
        parse_lines("filter.rejectBody", "ok\n[broken")


@pytest.mark.parametrize(("key", "value"), [
    ("intake.knownSendersOnly", "yes"), ("reply.maxPerSenderPerHour", "-1"), ("reply.transport", "pigeon"),
    ("scripts.guard", "no function"), ("reply.from", "nobody"), ("no.such.key", "1"),
])
def test_bad_values_are_refused(key: str, value: str) -> None:
    with pytest.raises(SettingError):
        validate(key, value)


def test_only_some_settings_may_be_overridden_per_mailbox() -> None:
    assert validate("intake.knownSendersOnly", "TRUE", mailbox="support") == "true"
    with pytest.raises(SettingError):
        validate("intake.permittedAddresses", "*@x.org", mailbox="support")


def _view(**kw: Any) -> scripts.MessageView:
    values: dict[str, Any] = dict(mailbox="m", system_mailbox=False, workspace="default", sender="a@example.org",
                                  sender_name="A", to=("support@tracker.example",), cc=(), subject="Hello",
                                  text="", html=None, headers={}, attachments=(), size=100, params={})
    values.update(kw)
    return scripts.MessageView(**values)


def test_size_guard_example() -> None:
    assert size_guard.guard(_view()) is None
    exe = scripts.AttachmentInfo("Invoice.PDF.exe", "application/octet-stream", 10)
    assert "executable" in str(size_guard.guard(_view(attachments=(exe,))))
    assert size_guard.guard(_view(size=2000, params={"script.maxMessageBytes": "1000"})) is not None


def test_routing_example() -> None:
    plan = scripts.Plan(workspace="default")
    routes = "# rules\nto:^billing@ -> billing type=question\nsubject:outage -> ops priority=high"
    routing.route(_view(subject="Outage now", params={"script.routes": routes}), plan)
    assert (plan.workspace, plan.priority) == ("ops", "high")
    plan = scripts.Plan(workspace="default")
    routing.route(_view(subject="ASAP please", to=("billing@tracker.example",), params={"script.routes": routes}),
                  plan)
    assert (plan.workspace, plan.item_type, plan.priority) == ("billing", "question", "high")


def _slow(*args: Any) -> None:
    time.sleep(5)


def test_scripts_time_out_in_the_main_thread_and_in_others() -> None:
    started = time.monotonic()
    with pytest.raises(scripts.ScriptFailure, match="time budget"):
        scripts.call(f"{__name__}:_slow", 0.2)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            scripts.call(f"{__name__}:_slow", 0.2)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert isinstance(errors[0], scripts.ScriptFailure)
    assert time.monotonic() - started < 3


def test_script_errors_and_verdicts() -> None:
    with pytest.raises(scripts.ScriptFailure, match="cannot import"):
        scripts.call("no_such_module_here:f", 1)
    assert scripts.guard_verdict(None) is None and scripts.guard_verdict(True) is None
    assert scripts.guard_verdict("too big") == "too big"
    assert scripts.guard_verdict(scripts.Reject("no")) == "no"
    assert scripts.guard_verdict(False) == "rejected by the guard script"


def test_replies_say_they_are_automatic_and_thread() -> None:
    msg = compose(Outgoing("a@example.org", "Re: Hello", "Body", in_reply_to="x@y", references=("w@y",)),
                  "intake@tracker.example")
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["In-Reply-To"] == "<x@y>"
    assert msg["References"] == "<w@y> <x@y>"


def test_replies_keep_long_message_ids_plain_so_answers_thread() -> None:
    outlook_id = "AS8PR07MB79762F1C0A3B4D5E6F708192A3B4C5D6@AS8PR07MB7976.eurprd07.prod.outlook.example"
    msg = compose(Outgoing("a@example.org", "Re: Hello", "Body", in_reply_to=outlook_id,
                           references=(outlook_id,)), "intake@tracker.example")
    raw = msg.as_bytes()
    assert f"In-Reply-To: <{outlook_id}>".encode() in raw
    assert b"=?" not in raw.split(b"\n\n", 1)[0]


def _item(author: str, workspace: str = "default", readers: set[str] | None = None) -> Any:
    from mailintake.store import ItemRecord

    return ItemRecord("ITEM#0000000001", "ITEM", number=1, title="t", author=author, workspace=workspace,
                      readers=readers)


def _user(roles: dict[str, str]) -> Any:
    from mailintake.store import UserRecord

    return UserRecord("USER#u@example.org", "USER", email="u@example.org", roles=roles)


def test_a_reporter_sees_only_items_it_is_party_to_and_reader_editor_manager_see_all() -> None:
    from mailintake.directory import may_see
    from mailintake.system_settings import Config

    config = Config()
    item = _item("ada@example.org", readers={"kim@example.org"})
    # Party to the item: author and readers, whatever their role.
    assert may_see(None, "Ada@Example.org", item, config) and may_see(_user({"*": "none"}), "kim@example.org",
                                                                      item, config)
    # Everyone else by role: the default role (reporter) is what any stranger has, and sees only its own.
    assert not may_see(None, "mallory@example.org", item, config)
    assert not may_see(_user({"default": "reporter"}), "mallory@example.org", item, config)
    for role in ("reader", "editor", "manager"):
        assert may_see(_user({"*": role}), "staff@example.org", item, config)
    assert not may_see(_user({"other": "editor"}), "staff@example.org", item, config)


def test_being_the_guest_makes_nobody_party_to_the_guests_items() -> None:
    from mailintake.directory import may_see
    from mailintake.system_settings import Config

    assert not may_see(None, "guest", _item("guest"), Config())
    assert may_see(_user({"*": "reader"}), "guest", _item("guest"), Config())
