"""Past each bound of mailintake.bounds the mail still parses, keeps what passed the bound, and says what was
simplified. One test per bound; outcomes only, never timings (the worst-case figures are in bench/)."""

from __future__ import annotations

import io
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailintake import bounds, htmlshape, parsing
from mailintake.bounds import BudgetExceeded, Deadline
from mailintake.parsing import ParsedMessage, parse_message
from mailintake.processing import deadline_for
from mailintake.settings import Settings

from .test_settings import STACK

HEAD = b"From: Ada <ada@example.org>\r\nTo: support@example.org\r\nSubject: Bounded\r\nMessage-ID: <b@example.org>\r\n"


def parse(raw: bytes) -> ParsedMessage:
    return parse_message(io.BytesIO(raw))


def simplified(parsed: ParsedMessage, words: str) -> bool:
    return any(words in line for line in parsed.simplified)


def test_ordinary_mail_is_not_simplified() -> None:
    parsed = parse(HEAD + b"Content-Type: text/html\r\n\r\n<div><p>Hello <b>there</b></p></div>\r\n")
    assert parsed.simplified == []
    assert parsed.text == "Hello there"


# --- MIME structure ------------------------------------------------------------------------------------


def nested_multipart(levels: int, leaf: bytes = b"Content-Type: text/plain\r\n\r\nbottom text\r\n") -> bytes:
    nest = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(levels))
    return HEAD + nest + leaf


def test_multipart_nested_past_the_bound_keeps_headers_and_the_deep_part_whole() -> None:
    parsed = parse(nested_multipart(1000))
    assert (parsed.subject, parsed.sender.email) == ("Bounded", "ada@example.org")
    assert simplified(parsed, f"MIME nesting deeper than {bounds.MAX_MIME_DEPTH} levels")
    [kept] = parsed.attachments
    assert kept.filename == "nested-multipart-mixed.eml"
    assert b"boundary=b999" in kept.data and kept.data.rstrip().endswith(b"bottom text")


def test_a_body_sixty_levels_deep_is_kept_as_an_attachment_not_dropped() -> None:
    parsed = parse(nested_multipart(60))
    assert [a.content_type for a in parsed.attachments] == ["message/rfc822"]
    assert b"bottom text" in parsed.attachments[0].data


def test_message_rfc822_nested_250_deep_is_stored_with_its_content() -> None:
    levels = b"".join(b"Content-Type: message/rfc822\r\n\r\nFrom: l%d@example.org\r\nSubject: level %d\r\n" % (i, i)
                      for i in range(250))
    parsed = parse(HEAD + levels + b"\r\ninnermost text\r\n")
    assert parsed.subject == "Bounded"
    [eml] = parsed.attachments
    assert eml.size > 0 and b"innermost text" in eml.data and b"Subject: level 249" in eml.data
    assert simplified(parsed, "MIME nesting deeper than")


def test_parts_past_the_bound_are_left_in_the_raw_mail() -> None:
    parts = b"".join(b"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; "
                     b"filename=\"f%d.bin\"\r\n\r\nx\r\n" % i for i in range(bounds.MAX_MIME_PARTS + 500))
    raw = (HEAD + b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
           b"Files attached.\r\n" + parts + b"--b--\r\n")
    parsed = parse(raw)
    assert parsed.text == "Files attached."
    assert len(parsed.attachments) == bounds.MAX_MIME_PARTS - 1  # the text part is one of the parts read
    assert parsed.attachments[-1].filename == f"f{bounds.MAX_MIME_PARTS - 2}.bin"
    assert simplified(parsed, f"more than {bounds.MAX_MIME_PARTS:,} MIME parts")


# --- Headers -------------------------------------------------------------------------------------------


def test_header_fields_past_the_bound_are_not_decoded_but_the_sender_still_is() -> None:
    junk = b"".join(b"X-Junk-%d: v\r\n" % i for i in range(bounds.MAX_HEADER_FIELDS + 10))
    parsed = parse(b"To: support@example.org\r\n" + junk + b"From: late@example.org\r\nSubject: Late\r\n\r\nbody\r\n")
    assert (parsed.sender.email, parsed.subject) == ("late@example.org", "Late")
    assert len(parsed.headers) == bounds.MAX_HEADER_FIELDS
    assert simplified(parsed, "header fields")


def test_a_subject_longer_than_the_bound_is_cut() -> None:
    parsed = parse(b"From: a@example.org\r\nSubject: " + b"long subject " * 20_000 + b"\r\n\r\nbody\r\n")
    assert len(parsed.subject) == bounds.MAX_SUBJECT_CHARS and parsed.subject.startswith("long subject")
    assert simplified(parsed, "cut to 1,000")


def test_encoded_words_split_across_characters_are_joined_whatever_their_number() -> None:
    words = b" ".join([b"=?utf-8?q?caf=C3?= =?utf-8?q?=A9?="] * 5000)
    parsed = parse(b"From: a@example.org\r\nSubject: " + words + b"\r\n\r\nbody\r\n")
    assert parsed.subject.startswith("cafécafé") and "\ufffd" not in parsed.subject


def test_addresses_past_the_bound_are_not_read() -> None:
    to = b", ".join(b"p%d@example.org" % i for i in range(bounds.MAX_ADDRESSES + 50))
    parsed = parse(b"From: a@example.org\r\nTo: " + to + b"\r\nSubject: many\r\n\r\nbody\r\n")
    assert [a.email for a in parsed.to] == [f"p{i}@example.org" for i in range(bounds.MAX_ADDRESSES)]
    assert simplified(parsed, f"To: {bounds.MAX_ADDRESSES + 50} addresses")


def test_references_past_the_bound_keep_the_root_and_the_newest() -> None:
    ids = b" ".join(b"<r%d@example.org>" % i for i in range(100))
    parsed = parse(b"From: a@example.org\r\nSubject: re\r\nReferences: " + ids + b"\r\n\r\nbody\r\n")
    assert parsed.references[0] == "r0@example.org" and parsed.references[-1] == "r99@example.org"
    assert len(parsed.references) == bounds.MAX_REFERENCES
    assert simplified(parsed, "References: 100 message ids")


@pytest.mark.parametrize("garbage", ['"unterminated', "<unterminated", "unterminated", "=?utf-8?q?x", "a" * 300 + "@x"])
def test_a_garbage_from_has_no_address(garbage: str) -> None:
    parsed = parse(b"From: " + garbage.encode() + b"\r\nSubject: x\r\n\r\nbody\r\n")
    assert parsed.sender.email == ""


def test_an_address_inside_garbage_is_no_sender() -> None:
    # One strict reading of From (mailintake.addresses): an unterminated quote is not a mailbox, whatever
    # address it holds, so the mail is from an unknown sender rather than from a guess.
    parsed = parse(b'From: "Bob <bob@example.org>\r\nSubject: x\r\n\r\nbody\r\n')
    assert parsed.sender.email == ""


# --- Bodies --------------------------------------------------------------------------------------------


def html_mail(markup: str) -> bytes:
    return HEAD + b"Content-Type: text/html; charset=utf-8\r\n\r\n" + markup.encode()


def test_html_nested_past_the_bound_is_flattened_and_keeps_its_text() -> None:
    parsed = parse(html_mail("<div>" * 300_000 + "deep text" + "<p>more</p>"))
    assert "deep text" in parsed.text and "more" in parsed.text
    assert simplified(parsed, f"elements below level {bounds.MAX_HTML_DEPTH} were flattened")
    assert parsed.html is not None and parsed.html.count("<div>") <= bounds.MAX_HTML_DEPTH


def test_html_past_the_conversion_bound_becomes_text_without_layout() -> None:
    para = "<p>The printer on the <b>second floor</b> jams.</p>\n"
    parsed = parse(html_mail(para * (bounds.MAX_HTML_CONVERT_CHARS // len(para) + 10)))
    assert parsed.text.startswith("The printer on the second floor jams.")
    assert simplified(parsed, "turned into text without layout")


def test_quotes_nested_so_deep_that_their_marks_would_flood_the_text_stop_the_conversion() -> None:
    markup = "<blockquote>" * (bounds.MAX_HTML_DEPTH - 1) + "<p>line</p>" * 20_000
    parsed = parse(html_mail(markup))
    assert "> line" in parsed.text
    assert simplified(parsed, "text of the HTML cut at")


def test_html_that_never_closes_a_tag_is_read_up_to_it() -> None:
    parsed = parse(html_mail("<p>hi</p>" + "<a " * 100_000))
    assert parsed.text == "hi"
    parsed = parse(html_mail("<p>hi</p><!-- " + "<!--" * 100_000))
    assert parsed.text == "hi"


def test_a_line_longer_than_the_bound_is_broken_and_its_text_kept() -> None:
    words = b"endless words " * (3 * bounds.MAX_LINE_BYTES // 14)
    parsed = parse(HEAD + b"Content-Type: text/plain\r\n\r\n" + words + b"\r\n")
    whole = parsed.text
    assert whole.count("\n") == 2 and whole.replace("\n", "").replace("  ", " ").startswith("endless words")
    assert simplified(parsed, "lines longer than 1.0 MB were broken")


def test_html_too_long_to_sanitise_is_shown_as_text_and_left_in_the_raw_mail() -> None:
    para = '<p><span style="color:red">' + "x" * 30 + "</span></p>"
    parsed = parse(html_mail(para * (bounds.MAX_SANITIZED_CHARS // len(para) + 10)))
    assert parsed.html is None and parsed.text.startswith("x" * 30)
    assert simplified(parsed, "the HTML is in the raw mail")


def test_reply_history_is_looked_for_at_the_start_of_a_very_long_text() -> None:
    body = b"My answer.\r\n\r\nOn Mon, Bob <bob@example.org> wrote:\r\n" + b"> old text\r\n" * 200_000
    parsed = parse(HEAD + b"Content-Type: text/plain\r\n\r\n" + body)
    assert parsed.reply_text == "My answer."
    assert simplified(parsed, "quoted history was looked for in its first")


def test_a_very_long_reply_without_history_in_its_start_is_kept_whole() -> None:
    # Nothing quoted in the scanned megabyte: the reply runs on past it, to the end of the text.
    body = b"The printer jams again.\r\n" * 100_000 + b"THE END\r\n"
    parsed = parse(HEAD + b"Content-Type: text/plain\r\n\r\n" + body)
    assert parsed.reply_text.rstrip().endswith("THE END") and len(parsed.reply_text) > 2_000_000


def test_names_past_the_bound_are_cut() -> None:
    name = "scan " * 200 + ".pdf"
    raw = (HEAD + b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/pdf; name=\""
           + name.encode() + b"\"\r\nContent-ID: <" + b"c" * 600 + b">\r\n\r\nx\r\n--b--\r\n")
    [att] = parse(raw).attachments
    assert len(att.filename) == bounds.MAX_NAME_CHARS and att.filename.endswith("…")
    assert att.content_id is not None and len(att.content_id) == bounds.MAX_NAME_CHARS


# --- The deadline --------------------------------------------------------------------------------------


def test_parsing_past_its_deadline_raises_budget_exceeded() -> None:
    deadline = Deadline.after(0.0)
    time.sleep(0.01)
    with pytest.raises(BudgetExceeded) as caught:
        parse_message(io.BytesIO(HEAD + b"\r\nbody\r\n"), deadline)
    assert not caught.value.shortened and "budget exceeded" in str(caught.value)


def test_html2text_is_stopped_by_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    deadline = Deadline.after(3600)
    markup = "<p>x</p>" * 50_000
    monkeypatch.setattr(deadline, "at", time.monotonic() - 1)
    with pytest.raises(BudgetExceeded):
        parsing.html_to_text(markup, deadline=deadline)


def test_a_mail_gets_its_whole_budget_unless_the_invocation_ends_sooner() -> None:
    settings = Settings(processing_budget_seconds=60)
    whole = deadline_for(settings, 120)
    assert (whole.budget, whole.shortened) == (60, False)
    late = deadline_for(settings, 50)
    assert late.shortened and late.budget == pytest.approx(50 - bounds.DEADLINE_RESERVE_SECONDS)
    assert deadline_for(settings, 5).budget == 0
    assert deadline_for(settings, None).budget == 60


def test_the_budget_setting_is_read_as_seconds() -> None:
    settings = Settings.from_mapping({**STACK, "MAILINTAKE_PROCESSING_BUDGET_SECONDS": "0.5"})
    assert settings.processing_budget_seconds == 0.5


# --- htmlshape -----------------------------------------------------------------------------------------


def test_bound_depth_keeps_shallow_html_as_it_is() -> None:
    markup = "<div><p>a<p>b<ul><li>x<li>y</ul></div>" * 100
    assert htmlshape.bound_depth(markup, 8).html is markup


def test_bound_depth_drops_deep_elements_and_their_end_tags_only() -> None:
    bounded = htmlshape.bound_depth("<div>" * 5 + "a" + "</div>" * 5 + "<p>after</p>", 3)
    assert bounded.dropped == 2
    assert bounded.html == "<div><div><div><br>a<br></div></div></div><p>after</p>"


def test_terminated_cuts_only_constructs_that_never_end() -> None:
    assert htmlshape.terminated("<p>a</p> tail < 3") == "<p>a</p> tail < 3"
    assert htmlshape.terminated("<p>a</p><b class='x") == "<p>a</p>"
    assert htmlshape.terminated("<!-- a --> b <!-- c") == "<!-- a --> b "
    assert htmlshape.terminated("<![if !x]>a<![endif]>") == "<![if !x]>a<![endif]>"


def test_has_text_and_to_text_skip_head_scripts_and_styles() -> None:
    assert not htmlshape.has_text("<head><title>t</title><style>p{}</style></head><body>&nbsp;<!-- c --></body>")
    assert htmlshape.has_text("<p><img src='cid:a'></p>")
    text = htmlshape.to_text("<head><title>T</title></head><p>Hello &amp; bye</p><ul><li>one<li>two</ul>")
    assert text == "Hello & bye\n\n- one\n- two"


html_bits = st.lists(st.sampled_from(["<", ">", "!", "-", "--", "[", "]", "a", "/", "?", " ", "if", "CDATA", "<!--",
                                      "-->", "<![", "]]>", "]>", "<a ", "</p>"]), max_size=40).map("".join)


@settings(max_examples=400, deadline=None)
@given(html_bits)
def test_the_fast_answer_of_markup_end_is_the_scans(markup: str) -> None:
    assert htmlshape._markup_end(markup) == htmlshape._scan_end(markup)
