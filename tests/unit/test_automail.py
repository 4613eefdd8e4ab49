"""automail.classify: bounces and auto-replies are recognised, ordinary mail never is."""

from __future__ import annotations

import io
import textwrap

import pytest

from mailintake.automail import classify
from mailintake.parsing import ParsedMessage, parse_message


def parse(headers: str, body: str = "Hello\n") -> ParsedMessage:
    raw = textwrap.dedent(headers).lstrip() + "\n" + textwrap.dedent(body)
    return parse_message(io.BytesIO(raw.replace("\n", "\r\n").encode()))


def kind(msg: ParsedMessage) -> str | None:
    verdict = classify(msg)
    return verdict.kind if verdict else None


def test_rfc3464_delivery_status_notification_is_a_bounce() -> None:
    m = parse("""
        From: Mail Delivery System <MAILER-DAEMON@mx.example.org>
        Subject: Undelivered Mail Returned to Sender
        Content-Type: multipart/report; report-type=delivery-status; boundary=b

        --b
        Content-Type: text/plain

        I'm sorry to have to inform you...
        --b
        Content-Type: message/delivery-status

        Reporting-MTA: dns; mx.example.org

        Final-Recipient: rfc822; gone@example.net
        Action: failed
        Status: 5.1.1
        --b--
    """, "")
    verdict = classify(m)
    assert verdict is not None and verdict.kind == "bounce"
    assert "RFC 3464" in verdict.reason


def test_arf_feedback_report_is_a_bounce() -> None:
    m = parse("""
        From: abuse@isp.example
        Subject: FW: spam
        Content-Type: multipart/report; report-type=feedback-report; boundary=b

        --b
        Content-Type: message/feedback-report

        Feedback-Type: abuse
        --b--
    """, "")
    assert kind(m) == "bounce"


def test_read_receipt_mdn_is_a_bounce_kind_report() -> None:
    m = parse("""
        From: reader@example.org
        Subject: Read: hello
        Content-Type: multipart/report; report-type=disposition-notification; boundary=b

        --b
        Content-Type: message/disposition-notification

        Disposition: manual-action/MDN-sent-manually; displayed
        --b--
    """, "")
    assert kind(m) == "bounce"


def test_mailer_daemon_without_structure_is_a_bounce() -> None:
    m = parse("From: MAILER-DAEMON <>\nSubject: Mail delivery failed\n",
              "There was an error delivering your mail to <x@example.org>.\n")
    assert kind(m) == "bounce"


def test_postmaster_failure_subject_with_null_return_path_is_a_bounce() -> None:
    m = parse("Return-Path: <>\nFrom: postmaster@example.org\nSubject: Undeliverable: hello\n")
    assert kind(m) == "bounce"


@pytest.mark.parametrize(
    ("header", "reason_part"),
    [
        ("Auto-Submitted: auto-replied", "Auto-Submitted: auto-replied"),
        ("Auto-Submitted: auto-generated", "Auto-Submitted: auto-generated"),
        ("X-Autoreply: yes", "x-autoreply"),
        ("X-Autorespond: I am away", "x-autorespond"),
        ("Precedence: bulk", "Precedence: bulk"),
        ("Precedence: auto_reply", "Precedence: auto_reply"),
        ("Precedence: junk", "Precedence: junk"),
    ],
)
def test_auto_reply_headers(header: str, reason_part: str) -> None:
    verdict = classify(parse(f"From: someone@example.org\nSubject: Re: your request\n{header}\n"))
    assert verdict is not None and verdict.kind == "auto-reply"
    assert reason_part.lower() in verdict.reason.lower()


@pytest.mark.parametrize("subject", ["Out of Office: Re: ticket", "Automatic reply: hello",
                                     "Abwesenheitsnotiz: Anfrage", "Réponse automatique : test"])
def test_out_of_office_subjects_are_auto_replies(subject: str) -> None:
    assert kind(parse(f"From: someone@example.org\nSubject: {subject}\n")) == "auto-reply"


def test_auto_submitted_no_is_ordinary_mail() -> None:
    assert classify(parse("From: a@example.org\nSubject: hi\nAuto-Submitted: no\n")) is None


def test_outlook_x_auto_response_suppress_is_not_a_signal() -> None:
    m = parse("""
        From: Jane <jane@example.org>
        Subject: Printer broken
        X-Auto-Response-Suppress: All
        X-MS-Has-Attach:
        Thread-Topic: Printer broken
    """)
    assert classify(m) is None


@pytest.mark.parametrize(
    "subject",
    ["Re: Undeliverable mail from our server", "Fwd: Delivery Status Notification (Failure)",
     "Vacation planning for 2025", "Question about the out of office feature", "Failure notice ideas"],
)
def test_people_writing_about_bounces_or_vacations_are_not_flagged(subject: str) -> None:
    assert classify(parse(f"From: person@example.org\nSubject: {subject}\n")) is None


def test_forwarded_message_attachment_is_not_a_bounce() -> None:
    m = parse("""
        From: person@example.org
        Subject: original as attachment
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: text/plain

        see the attached mail
        --b
        Content-Type: message/rfc822

        From: other@example.org
        Subject: Undelivered Mail Returned to Sender

        body
        --b--
    """, "")
    assert classify(m) is None
