"""Bounded work over the real local stack (Dovecot, moto): hostile and pathological shapes become items that
keep their identity and content and say what was simplified; a mail over its time budget is recorded once,
kept and replayable, while the rest of its batch lands. Outcomes only: timings are measured in bench/."""

from __future__ import annotations

import dataclasses
import io
import json
import time
import zipfile
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import pytest

from mailintake import bodies, bounds, cli, directory, parsing, store
from mailintake.aws_clients import client
from mailintake.batches import BatchFailed
from mailintake.localrun import _queue_arn, invoke, load_function, run_cycle, sqs_event
from mailintake.markers import make_marker

from .conftest import make_mail
from .fault_support import (
    assert_one_outcome_each,
    drain,
    enqueue,
    process,
    queue_bodies,
    record,
    recorded,
    stage,
)

pytestmark = pytest.mark.integration

HEAD = "From: Mallory <mallory@example.org>\r\nTo: support@tracker.example\r\nSubject: {subject}\r\n" \
       "Message-ID: <{subject_id}@example.org>\r\nMIME-Version: 1.0\r\n"


def head(subject: str) -> bytes:
    return HEAD.format(subject=subject, subject_id=subject.lower().replace(" ", "-")).encode()


def deep_multipart(subject: str, levels: int) -> bytes:
    nest = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(levels))
    return head(subject) + nest + b"Content-Type: text/plain\r\n\r\nthe text at the bottom\r\n"


def deep_rfc822(subject: str, levels: int) -> bytes:
    nest = b"".join(b"Content-Type: message/rfc822\r\n\r\nFrom: level%d@example.org\r\nSubject: level %d\r\n" % (i, i)
                    for i in range(levels))
    return head(subject) + nest + b"\r\nthe innermost text\r\n"


def s3_object(settings: Any, key: str) -> bytes:
    return bytes(client("s3", settings.region).get_object(Bucket=settings.bucket, Key=key)["Body"].read())


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = cli.main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_deep_structure_keeps_its_identity_and_its_content_and_a_garbage_from_makes_no_user(
    settings: Any, mailbox: Callable[..., Any], deliver: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 11, part 7. Before: "rejected: empty subject" with no sender at ~1,000 levels, a nested .eml
    # 250 levels deep stored as 0 bytes, a body 60 multipart levels deep dropped, and a user named
    # "unterminated" made from a From that holds no address.
    box = mailbox("imap", "ssl")
    deliver(box, deep_multipart("Nested a thousand levels", 1000))
    deliver(box, deep_rfc822("Forward of a forward", 250))
    deliver(box, deep_multipart("Body sixty levels down", 60))
    deliver(box, b'From: "unterminated\r\nTo: support@tracker.example\r\nSubject: Garbage sender\r\n'
                 b"Message-ID: <garbage-sender@example.org>\r\n\r\nWho am I?\r\n")

    report = run_cycle(settings)

    assert (report.processed, report.failed) == (4, 0)
    ledger = {r.subject: r for r in store.list_ledger()}
    assert {subject: r.status for subject, r in ledger.items()} == {
        "Nested a thousand levels": "item", "Forward of a forward": "item", "Body sixty levels down": "item",
        "Garbage sender": "item"}
    items = {i.title: i for i in store.list_items()}
    for title, kept in (("Nested a thousand levels", b"the text at the bottom"),
                        ("Forward of a forward", b"the innermost text"),
                        ("Body sixty levels down", b"the text at the bottom")):
        item = items[title]
        assert item.author == "mallory@example.org" and ledger[title].sender == "mallory@example.org"
        [attachment] = item.attachments
        assert int(attachment.size) > 0 and kept in s3_object(settings, attachment.key)
        assert any("MIME nesting deeper than" in line for line in item.simplified or ())
        assert any(note.startswith("simplified: MIME nesting") for note in ledger[title].notes or ())
    assert b"Subject: level 249" in s3_object(settings, items["Forward of a forward"].attachments[0].key)

    garbage = items["Garbage sender"]
    # A mail without a valid From is nobody's: filed as the guest, with no reporter to thread replies for.
    assert garbage.author == "guest" and not garbage.reporter and ledger["Garbage sender"].sender == ""
    assert "unterminated" not in {u.email for u in directory.list_users()}

    code, shown = run_cli(capsys, "item", "show", str(int(items["Body sixty levels down"].number)))
    assert code == 0 and any("MIME nesting deeper than" in line for line in shown["simplified"])


def test_text_longer_than_a_record_holds_becomes_an_item_with_the_whole_text_kept_beside_it(settings: Any) -> None:
    # Before: any mail with more than ~400 KB of text failed the item transaction (DynamoDB's item size
    # limit), five times, into the dead-letter queue.
    body = "The printer on the second floor jams on every duplex job.\n" * 18_000
    raw = make_mail("A megabyte of text", body)
    job = stage(settings, raw, inline=False)

    assert process(settings, [record(job, raw=raw)]) == set()

    assert_one_outcome_each({job.key: "item"})
    [item] = store.list_items()
    assert len(item.description.encode()) <= bodies.PREVIEW_BYTES
    assert item.attachments == [] and item.body_key is not None
    assert bodies.load(client("s3", settings.region), settings.bucket, item.body_key)["description"] == (
        body.strip("\n"))
    assert any("the whole texts are kept beside it" in line for line in item.simplified or ())


def test_a_reply_with_text_and_html_longer_than_a_record_holds_is_fitted(settings: Any) -> None:
    original = make_mail("Printer jams", message_id="printer-jams")
    assert process(settings, [record(stage(settings, original), raw=original)]) == set()
    [item] = store.list_items()
    msg = EmailMessage()
    msg["From"] = "Ada Lovelace <ada@example.org>"
    msg["To"] = "support@tracker.example"
    msg["Subject"] = f"Re: Printer jams {make_marker(int(item.number), settings.marker_format)}"
    msg["Message-ID"] = "<long-reply@example.org>"
    words = "duplex " * 13_000  # ~90 KB of text, in the reply and in the full text
    msg.set_content(words)
    msg.add_alternative("<p>" + '<span style="color:red">duplex</span> ' * 6_500 + "</p>", subtype="html")
    raw = bytes(msg)
    job = stage(settings, raw, inline=False)

    assert process(settings, [record(job, raw=raw)]) == set()

    assert recorded(job.key).status == "comment"
    [comment] = store.list_comments(int(item.number))
    assert comment.html is None and comment.attachments == [] and comment.body_key is not None
    whole = bodies.load(client("s3", settings.region), settings.bucket, comment.body_key)
    assert whole["html"].count("duplex") == 6_500
    assert any("the whole texts are kept beside it" in line for line in comment.simplified or ())
    assert "duplex duplex" in comment.text and "duplex duplex" in comment.full_text


def test_many_attachments_are_stored_one_by_one_up_to_the_bound_and_the_rest_in_one_archive(settings: Any) -> None:
    count = bounds.MAX_ATTACHMENTS + 12
    files = [(f"scan-{n:03d}.pdf", "application/pdf", f"page {n}".encode()) for n in range(count)]
    raw = make_mail("Many scans", attachments=files)
    job = stage(settings, raw, inline=False)

    assert process(settings, [record(job, raw=raw)]) == set()

    [item] = store.list_items()
    stored = item.attachments
    assert [a.filename for a in stored[:-1]] == [name for name, _, _ in files[:bounds.MAX_ATTACHMENTS]]
    assert s3_object(settings, stored[3].key) == b"page 3"
    archive = zipfile.ZipFile(io.BytesIO(s3_object(settings, stored[-1].key)))
    assert stored[-1].filename == "more-attachments.zip"
    assert {name: archive.read(name) for name in archive.namelist()} == {
        name: data for name, _, data in files[bounds.MAX_ATTACHMENTS:]}
    assert any("the other 12 in more-attachments.zip" in line for line in item.simplified or ())


@pytest.fixture()
def slow_subject(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, float], None]:
    """Make parsing of mails with a given subject slow: an injected pause where the parse checks its
    deadline next (after reading its charset evidence)."""

    def slow(subject: str, seconds: float) -> None:
        original = parsing._charset_hints

        def pausing(msg: Any, deadline: Any) -> Any:
            if str(msg.get("subject", "")) == subject:
                time.sleep(seconds)
            return original(msg, deadline)

        monkeypatch.setattr(parsing, "_charset_hints", pausing)

    return slow


def test_a_mail_over_its_time_budget_is_recorded_once_kept_and_replayable_while_its_batch_lands(
    settings: Any, monkeypatch: pytest.MonkeyPatch, slow_subject: Callable[[str, float], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    quick = [stage(settings, make_mail(f"Quick {n}")) for n in range(2)]
    slow_raw = make_mail("Slow to parse", "x" * 20_000, sender="Eve Example <eve@example.org>")
    slow = stage(settings, slow_raw, inline=False)
    for job in (slow, *quick):
        enqueue(settings, job, group="one-conversation")  # one group: the slow one first, the others behind it
    handler = load_function("process", 0)  # the instance invoke() uses
    monkeypatch.setattr(handler.runtime, "settings",
                        dataclasses.replace(handler.runtime.settings, processing_budget_seconds=1.5))
    slow_subject("Slow to parse", 2.5)

    report = drain(settings)

    # Not retried: no record of the batch was returned to the queue, nothing went to the dead-letter queue.
    assert not report.failures
    assert queue_bodies(settings, settings.queue_url) == [] and queue_bodies(settings, settings.dlq_url) == []
    assert_one_outcome_each({slow.key: "failed", quick[0].key: "item", quick[1].key: "item"})
    failed = recorded(slow.key)
    assert (failed.outcome, failed.step, int(failed.attempts)) == ("failed: processing budget exceeded", "budget", 1)
    assert (failed.sender, failed.subject) == ("eve@example.org", "Slow to parse")  # from its header block
    assert "processing budget exceeded (1.5 s)" in (failed.error or "")
    code, listed = run_cli(capsys, "messages", "list", "--outcome", "failed")
    assert code == 0 and [r["key"] for r in listed] == [slow.key]

    # Replayed with a larger budget: the mail was kept, and now becomes its item.
    code, results = run_cli(capsys, "messages", "reprocess", slow.key, "--budget", "30")

    assert code == 0 and [(r["action"], r["status"]) for r in results] == [("reprocessed", "item")]
    assert_one_outcome_each({slow.key: "item", quick[0].key: "item", quick[1].key: "item"})


def test_a_mail_whose_budget_the_invocation_cut_short_is_retried_not_recorded_over_budget(
    settings: Any, slow_subject: Callable[[str, float], None]
) -> None:
    raw = make_mail("Late in the batch")
    job = stage(settings, raw)
    slow_subject("Late in the batch", 1.5)
    message = record(job, raw=raw)
    # An invocation with 16 s left keeps DEADLINE_RESERVE_SECONDS (15) for itself: this mail gets 1 s of
    # its 60 s budget, runs out, and goes back to the queue for an invocation that can give it all 60.
    with pytest.raises(BatchFailed):  # the handler's way of saying every record failed: all go back
        invoke("process", sqs_event([message], _queue_arn(settings), settings.region),
               timeout_seconds=int(bounds.DEADLINE_RESERVE_SECONDS) + 1)

    retried = recorded(job.key)
    assert retried.status == "failed" and "budget exceeded" in (retried.error or "")
    assert store.list_items() == []

    assert process(settings, [record(job, 2, raw=raw)]) == set()
    assert_one_outcome_each({job.key: "item"})
