"""Bodies of any size up to the mail size limit become items and comments, over the real local stack.

A DynamoDB item holds at most 400 KB. Texts and HTML that would not fit go to S3 whole; the item or comment
keeps a bounded preview and the object's key, and the CLI shows the whole text. A mail whose processing
fails still names its sender and subject in the ledger.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import pytest

from mailintake import cli, store
from mailintake.bodies import PREVIEW_BYTES
from mailintake.bounds import MAX_SANITIZED_CHARS

from .conftest import make_mail
from .fault_support import assert_one_outcome_each, drain, enqueue, process, record, stage, throttled

pytestmark = pytest.mark.integration

MB = 1_000_000
END = "THE-END-OF-THE-BODY"


def text_body(size: int) -> str:
    line = "The printer on floor 3 jams on every duplex job, again and again: line %07d\n"
    lines = [line % n for n in range(size // len(line % 0))]
    return "".join(lines) + END + "\n"


def html_body(size: int) -> str:
    line = "<p>The printer on floor 3 <b>jams</b> on every duplex job, again: paragraph %07d</p>\n"
    lines = [line % n for n in range(size // len(line % 0))]
    return "<html><body>" + "".join(lines) + f"<p>{END}</p></body></html>"


def large_mail(subject: str, kind: str, size: int, headers: dict[str, str] | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Ada Lovelace <ada@example.org>"
    msg["To"] = "support@tracker.example"
    msg["Subject"] = subject
    msg["Date"] = "Tue, 24 Nov 2026 09:12:00 +0000"
    msg["Message-ID"] = f"<{kind}-{size}-{subject.replace(' ', '-')}@example.org>"
    for name, value in (headers or {}).items():
        msg[name] = value
    if kind == "html":
        msg.set_content(html_body(size), subtype="html", cte="8bit")
    else:
        msg.set_content(text_body(size), cte="8bit")
    return bytes(msg)


def shown(number: int) -> dict[str, Any]:
    """What ``mailintake item show N --json`` prints, in this process."""
    data = cli.item_data(number)
    assert data is not None
    # Through JSON as the CLI prints it, so that what is compared is what a reader gets.
    parsed: dict[str, Any] = json.loads(json.dumps(data, default=str))
    return parsed


@pytest.mark.parametrize("size", [1 * MB, 5 * MB, 25 * MB], ids=["1MB", "5MB", "25MB"])
@pytest.mark.parametrize("kind", ["text", "html", "comment"])
def test_a_large_body_becomes_an_item_or_comment_with_a_preview_and_the_whole_text_in_s3(
    settings: Any, kind: str, size: int
) -> None:
    assert size < settings.max_message_bytes
    jobs = []
    if kind == "comment":
        original = make_mail("Printer jams", message_id=f"orig-{size}")
        jobs.append(stage(settings, original))
        raw = large_mail("Re: Printer jams", "text", size, headers={"In-Reply-To": f"<orig-{size}@example.org>"})
    else:
        raw = large_mail("Printer jams", kind, size)
    jobs.append(stage(settings, raw, inline=False))
    group = "one-conversation"  # the original first, then its reply, as the fetch queues them
    for job in jobs:
        enqueue(settings, job, group=group)

    report = drain(settings)

    assert not report.failures, "a large body failed (and would go to the dead-letter queue)"
    assert_one_outcome_each({jobs[0].key: "item", **({jobs[1].key: "comment"} if kind == "comment" else {})})
    (item,) = store.list_items()
    data = shown(int(item.number))
    if kind == "comment":
        (comment,) = store.list_comments(int(item.number))
        for preview in (comment.text, comment.full_text):
            assert len(preview.encode()) <= PREVIEW_BYTES and preview.startswith("The printer on floor 3")
        assert comment.body_key and comment.html is None
        (whole,) = data["comments"]
        assert whole["full_text"].rstrip().endswith(END) and len(whole["full_text"]) > size * 0.95
        assert whole["text"].rstrip().endswith(END)
    else:
        assert len(item.description.encode()) <= PREVIEW_BYTES and "floor 3" in item.description[:200]
        assert item.body_key and item.html is None
        assert data["description"].rstrip().endswith(END)
        assert len(data["description"]) > size * (0.8 if kind == "html" else 0.95)
        if kind == "html" and size <= MAX_SANITIZED_CHARS:
            assert data["html"].rstrip().endswith("</p>") and END in data["html"][-200:]
        elif kind == "html":
            # Too long to sanitise within the memory budget (mailintake.bounds): shown as text, the HTML
            # stays in the raw mail, and the item says so.
            assert data["html"] is None
            assert any("too long to show" in note for note in item.simplified or ())


def test_small_bodies_stay_in_the_item_without_an_s3_object(settings: Any) -> None:
    # Just under the item limit with its title and the rest: the budget counts the whole item.
    raw = make_mail("Printer jams", "x" * 300_000)
    job = stage(settings, raw, inline=False)
    assert process(settings, [record(job, raw=raw)]) == set()
    (item,) = store.list_items()
    assert item.body_key is None and len(item.description) == 300_000


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "in-s3"])
def test_a_failed_mail_names_its_sender_and_subject_in_the_ledger(settings: Any, inline: bool) -> None:
    raw = make_mail("Printer jams", "y" * (100 if inline else 20_000), sender="Ada <ada@example.org>",
                    message_id="failing")
    job = stage(settings, raw, inline=inline)
    with throttled(store.shared_connection().client, "dynamodb", "TransactWriteItems", times=100):
        assert process(settings, [record(job, raw=raw)]) == {record(job)["MessageId"]}
    failed = store.get_ledger(job.key)
    assert failed is not None and failed.status == "failed"
    assert (failed.sender, failed.subject, failed.message_id) == ("ada@example.org", "Printer jams",
                                                                  "failing@example.org")


def test_many_paragraphs_of_html_beside_text_fit_as_well(settings: Any, mailbox: Callable[..., Any]) -> None:
    # Text and HTML that each fit, but not together: 250 KB of each.
    msg = EmailMessage()
    msg["From"] = "Ada <ada@example.org>"
    msg["Subject"] = "Both parts"
    msg["Message-ID"] = "<both@example.org>"
    msg.set_content(text_body(250_000))
    msg.add_alternative(html_body(250_000), subtype="html")
    raw = bytes(msg)
    job = stage(settings, raw, inline=False)
    assert process(settings, [record(job, raw=raw)]) == set()
    (item,) = store.list_items()
    assert item.body_key is not None
