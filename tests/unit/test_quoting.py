"""Cutting quoted history and signatures from replies (mailintake.quoting and ParsedMessage.reply_text)."""

from __future__ import annotations

import io
import textwrap

from hypothesis import given, settings
from hypothesis import strategies as st

from mailintake.parsing import parse_message
from mailintake.quoting import cut_html_quotes, cut_reply


def cut(text: str) -> str:
    return cut_reply(textwrap.dedent(text).lstrip("\n"))


def test_english_on_wrote_attribution_and_quote_are_cut() -> None:
    out = cut("""
        Sounds good, ship it.

        On Tue, Oct 1, 2024 at 10:00 AM John Doe <john@example.org> wrote:
        > Shall we ship?
    """)
    assert out == "Sounds good, ship it."


def test_attribution_wrapped_over_two_lines_is_cut() -> None:
    out = cut("""
        Yes.

        On Tue, 1 Oct 2024 at 10:00, John Doe <john.doe@a-rather-long-domain.example.org>
        wrote:
        > Shall we ship?
    """)
    assert out == "Yes."


def test_german_am_schrieb_attribution_is_cut() -> None:
    out = cut("""
        Danke, erledigt.

        Am 01.10.2024 um 10:00 schrieb Max Mustermann <max@example.org>:
        > Bitte prüfen.
    """)
    assert out == "Danke, erledigt."


def test_french_le_a_ecrit_attribution_is_cut() -> None:
    out = cut("""
        Merci !

        Le mar. 1 oct. 2024 à 10:00, Jean Dupont <jean@example.org> a écrit :
        > Bonjour
    """)
    assert out == "Merci !"


def test_outlook_from_sent_block_is_cut() -> None:
    out = cut("""
        Please see my answer below.

        ________________________________
        From: Jane Roe <jane@example.org>
        Sent: Tuesday, October 1, 2024 10:00 AM
        To: Support <support@example.org>
        Subject: Printer on fire

        The printer is on fire.
    """)
    assert out == "Please see my answer below."


def test_outlook_header_block_without_rule_is_cut() -> None:
    out = cut("""
        Fixed now.

        From: Jane Roe <jane@example.org>
        Sent: Tuesday, October 1, 2024 10:00 AM
        To: Support <support@example.org>
        Subject: Printer on fire

        The printer is on fire.
    """)
    assert out == "Fixed now."


def test_original_message_separator_is_cut() -> None:
    out = cut("""
        Done.

        -----Original Message-----
        From: someone
        old text
    """)
    assert out == "Done."


def test_tracker_delimiter_line_cuts_even_inside_quotes() -> None:
    out = cut("""
        An update.

        >> > --- Reply above. Do not remove this line. ---
        >> > Issue #1 has been updated.
    """)
    assert out == "An update."
    assert cut("My answer\n\n##- Please type your reply above this line -##\nold") == "My answer"


def test_trailing_quote_block_is_cut_but_interleaved_quotes_stay() -> None:
    assert cut("""
        Top answer.

        > quoted 1
        > quoted 2
    """) == "Top answer."
    interleaved = cut("""
        > Question one?
        Answer one.
        > Question two?
        Answer two.
    """)
    assert "Answer one." in interleaved and "Answer two." in interleaved


def test_dash_dash_space_signature_is_cut() -> None:
    assert cut("Body text.\n\n-- \nJohn Doe\nACME Corp\n") == "Body text."


def test_sent_from_my_phone_line_is_cut() -> None:
    assert cut("Ok!\n\nSent from my iPhone\n") == "Ok!"


def test_hyphen_lists_are_not_mistaken_for_signatures() -> None:
    text = "Steps:\n- one\n- two\n\nThanks"
    assert cut_reply(text) == text


def test_text_without_history_is_unchanged() -> None:
    text = "Line one\n\n    indented code stays indented\nFrom here on it's fine."
    assert cut_reply(text) == text


def test_gmail_quote_div_is_removed_from_html() -> None:
    html = ('<div dir="ltr">New reply</div><br><div class="gmail_quote"><div class="gmail_attr">'
            'On Tue, X wrote:<br></div><blockquote class="gmail_quote">old <div>nested</div> stuff'
            '</blockquote></div>')
    out = cut_html_quotes(html)
    assert "New reply" in out and "old" not in out and "nested" not in out and "wrote" not in out


def test_apple_mail_blockquote_type_cite_is_removed() -> None:
    html = ('<div>Answer</div><div><br><blockquote type="cite"><div>Question</div></blockquote></div>'
            '<p>after</p>')
    out = cut_html_quotes(html)
    assert "Answer" in out and "Question" not in out and "after" in out


def test_outlook_reply_block_cuts_everything_after_it() -> None:
    html = '<p>Mine</p><div id="divRplyFwdMsg"><b>From:</b> x</div><div>Old body</div>'
    out = cut_html_quotes(html)
    assert "Mine" in out and "Old body" not in out


def test_html_only_reply_is_cut_before_conversion() -> None:
    raw = (
        b"From: a@example.org\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b'<div>Short answer</div><div class="gmail_quote">On Mon, B &lt;b@x&gt; wrote:'
        b"<blockquote>Long history</blockquote></div>"
    )
    m = parse_message(io.BytesIO(raw))
    assert m.reply_text == "Short answer"
    assert "Long history" in m.text


_FRAGMENTS = [
    "On Mon, 1 Jan 2024 Ada <ada@example.org> wrote:", "> On Tue, Bob wrote:", "From: Ada", "Sent: Monday",
    "To: Bob", "Subject: Re: printer", "*From:* Ada", "-----Original Message-----", "Von: Ada", "Gesendet: Montag",
    "Am 1.1.2024 schrieb Bob:", "Le 1 janv. 2024, Bob a écrit :", "2024年1月1日(月) 10:00 Bob <b@example.org>:",
    "Den 1 jan 2024 skrev Bob:", "Hello,", "", "  ", "It jams at 10:30 on duplex.", "> quoted: line", "Thanks!",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), min_size=1, max_size=14), st.sampled_from(["\n", "\n\n"]))
def test_searching_from_line_starts_finds_exactly_what_a_full_search_finds(lines: list[str], joiner: str) -> None:
    # The shortcut relies on every alternative of mail-parser-reply's pattern starting at a line start or a
    # newline; a library update that broke that would show here.
    from mailintake.quoting import _library_header_regex, _search_from_line_starts

    pattern = _library_header_regex()
    assert pattern is not None
    text = joiner.join(lines)
    full, shortcut = pattern.search(text), _search_from_line_starts(pattern, text)
    assert (full and (full.start(), full.group())) == (shortcut and (shortcut.start(), shortcut.group()))
