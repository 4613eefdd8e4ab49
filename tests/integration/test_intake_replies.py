"""Replies over SMTP (an aiosmtpd server on loopback): limits, loop guards, acknowledgements."""

from __future__ import annotations

import socket
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from mailintake import store
from mailintake.localrun import run_cycle

from .conftest import make_mail
from .intake_support import REPLY_FROM, configure, fresh_config

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_config")]
__all__ = ["fresh_config"]


class Collector:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture()
def smtp_server() -> Iterator[tuple[Collector, int]]:
    collector = Collector()
    with socket.socket() as probe:  # a free loopback port (the Controller's own readiness check needs one)
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield collector, port
    finally:
        controller.stop()


def test_smtp_replies_are_limited_and_never_go_to_machines_or_ourselves(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None], smtp_server: tuple[Collector, int]
) -> None:
    collector, port = smtp_server
    tag = uuid.uuid4().hex[:8]
    person = f"pat-{tag}@example.org"
    configure({"reply.from": REPLY_FROM, "reply.transport": "smtp", "reply.smtpHost": "127.0.0.1",
               "reply.smtpPort": str(port), "reply.smtpSecurity": "none", "reply.maxPerSenderPerHour": "2",
               "reply.acknowledgeItems": "true"})
    box = mailbox("imap", "ssl")
    for subject in ("", "Re:", "AW: Fwd:"):
        deliver(box, make_mail(subject, sender=f"Pat <{person}>"))
    deliver(box, make_mail("", sender=f"Robot <robot-{tag}@example.org>", headers={"Auto-Submitted": "auto-replied"}))
    deliver(box, make_mail("", sender=f"Us <{REPLY_FROM}>"))
    deliver(box, make_mail("Real request", sender=f"Pat <ok-{tag}@example.org>", message_id=f"real-{tag}"))
    run_cycle(settings)

    ledger: dict[str, list[Any]] = defaultdict(list)
    for record in store.list_ledger():
        ledger[record.sender].append(store.LedgerRecord.get(record.pk, record.sk))
    pat = sorted(r.reply or "" for r in ledger[person])
    assert pat == [f"no reply: {person} already got 2 replies this hour",
                   f"sent via smtp to {person}", f"sent via smtp to {person}"]
    (robot,) = ledger[f"robot-{tag}@example.org"]
    assert robot.outcome == "rejected: empty subject"
    assert robot.reply == "no reply: the message is Auto-Submitted"
    (own,) = ledger[REPLY_FROM]  # our own mail come back: discarded before any step could answer it
    assert (own.step, own.reply) == ("loop", None)
    assert own.outcome == f"discarded: own mail: from {REPLY_FROM}, an address this system sends from"

    to_pat = [m for m in collector.messages if m["To"] == person]
    assert len(to_pat) == 2
    assert all(m["Auto-Submitted"] == "auto-replied" and m["From"] == REPLY_FROM for m in to_pat)
    (ack,) = [m for m in collector.messages if m["To"] == f"ok-{tag}@example.org"]
    assert ack["Subject"] == "[HD#1] Real request"
    assert ack["In-Reply-To"] == f"<real-{tag}@example.org>"
    assert {m["To"] for m in collector.messages} == {person, f"ok-{tag}@example.org"}
