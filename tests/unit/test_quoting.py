"""Cutting quoted history and signatures from replies (mailintake.quoting and ParsedMessage.reply_text)."""

from __future__ import annotations

import io
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailintake.parsing import parse_message
from mailintake.quoting import cut_html_quotes, cut_reply, is_forward_subject


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


# ---------------------------------------------------------------- attributions in more languages and clients


@pytest.mark.parametrize("attribution", [
    "pon., 1 sty 2024 o 10:00 Jan Kowalski <jan.kowalski@example.pl> napisał(a):",  # Polish Gmail
    "W dniu 01.01.2024 o 10:00, Jan Kowalski pisze:",  # Polish Thunderbird
    "Op ma 1 jan. 2024 om 10:00 schreef Jan Jansen <jan@example.nl>:",  # Dutch Gmail
    "Op 1 jan. 2024, om 10:00 heeft Jan Jansen <jan@example.nl> het volgende geschreven:",  # Dutch Apple
    "пн, 1 янв. 2024 г. в 10:00, Иван Петров <ivan@example.ru>:",  # Russian Gmail: no verb at all
    "01.01.2024 10:00, Иван Петров пишет:",  # Russian Thunderbird
    "1 января 2024 г., в 10:00, Иван Петров <ivan@example.ru> написал(а):",  # Russian Apple Mail
    "Den mån 1 jan. 2024 kl 10:00 skrev Anna Andersson <anna@example.se>:",  # Swedish Gmail
    "po 1. 1. 2024 v 10:00 odesílatel Jan Novák <jan@example.cz> napsal:",  # Czech Gmail
    "2024年1月1日(月) 10:00 山田太郎 <yamada@example.jp>:",  # Japanese Gmail
    "王小明 <wang@example.cn> 于2024年1月1日周一 10:00写道：",  # Chinese Gmail
    "2024년 1월 1일 (월) 오전 10:00, 김철수 <kim@example.kr>님이 작성:",  # Korean Gmail
    "Em seg., 1 de jan. de 2024 às 10:00, João Silva <joao@example.pt> escreveu:",  # Portuguese Gmail
    "Il giorno lun 1 gen 2024 alle ore 10:00 Mario Rossi <mario@example.it> ha scritto:",  # Italian Gmail
    "El lun, 1 ene 2024 a las 10:00, Juan Pérez (<juan@example.es>) escribió:",  # Spanish Gmail
    "ma 1. tammik. 2024 klo 10.00 Matti Meikäläinen (matti@example.fi) kirjoitti:",  # Finnish Gmail
    "On Monday, January 1, 2024, 10:00:00 AM GMT+1, Jane Roe <jane@example.org> wrote:",  # Yahoo
    "Jane Roe <jane@example.org> schrieb am Mo., 1. Jan. 2024, 10:00:",  # German Gmail on Android
])
def test_attribution_and_quote_are_cut_in_any_language(attribution: str) -> None:
    out = cut_reply(f"Danke / thanks / спасибо.\n\n{attribution}\n> Der Drucker ist kaputt.\n> Bitte helfen.\n")
    assert out == "Danke / thanks / спасибо."


def test_android_attribution_wrapped_over_two_lines_in_russian() -> None:
    out = cut("""
        Готово, принтер работает.

        01.10.2024 10:00 пользователь "Jane Roe" <
        jane.roe@example.org> написал:

        > Принтер снова сломался?
    """)
    assert out == "Готово, принтер работает."


def test_attribution_wrapped_over_three_lines() -> None:
    out = cut("""
        Fixed in 2.4.1.

        On Tue, 1 Oct 2024 at 10:00, Jane Roe from the Operations
        Department of ACME Corporation
        <jane.roe@operations.acme-corporation.example.org> wrote:
        > Is this fixed?
    """)
    assert out == "Fixed in 2.4.1."


def test_attribution_sharing_a_line_with_the_end_of_the_reply() -> None:
    out = cut("""
        Sounds good to me. On Tue, Oct 1, 2024 at 10:00 AM Jane Roe <jane@example.org> wrote:
        > Shall we ship on Friday?
    """)
    assert out == "Sounds good to me."
    assert cut("Done! Jane Roe <jane@example.org> schrieb am Di., 1. Okt. 2024, 10:00:\n> Erledigt?") == "Done!"


def test_dash_framed_android_attributions_are_cut() -> None:
    assert cut("Will do.\n\n---- Jane Roe wrote ----\n\n> Please restart it.\n") == "Will do."
    assert cut("Erledigt.\n\n------ Am 01.10.2024 10:00 schrieb Jane Roe ------\n\nBitte neu starten.\n") == \
        "Erledigt."


def test_samsung_original_message_block_and_its_sent_from_line_are_cut() -> None:
    out = cut("""
        Restarted it, works again.

        Sent from my Samsung Galaxy smartphone.

        -------- Original message --------
        From: Jane Roe <jane@example.org>
        Date: 01/10/2024 10:00 (GMT+01:00)
        To: support@example.org
        Subject: Server down

        The server is down again.
    """)
    assert out == "Restarted it, works again."


def test_indented_quote_after_attribution_is_cut() -> None:
    out = cut("""
        Yes, please.

        On 1 Oct 2024, at 10:00, Jane Roe <jane@example.org> wrote:

          > Shall I order the toner?
          > It is the HP 26A.
    """)
    assert out == "Yes, please."


def test_thunderbird_bottom_post_keeps_the_reply_below_the_quote() -> None:
    out = cut("""
        On 01/10/2024 10:00, Jane Roe wrote:
        > Is the printer fixed?
        > It jammed again yesterday.

        Yes, since this morning. The roller was worn.

        -- \n        John Doe, IT
    """)
    assert out == "Yes, since this morning. The roller was worn."


def test_text_below_a_quote_after_a_top_posted_reply_stays() -> None:
    out = cut("""
        Fixed.

        On Tue, 1 Oct 2024 at 10:00, Jane Roe <jane@example.org> wrote:
        > Is it fixed?

        Regards, John
    """)
    assert out == "Fixed.\n\nRegards, John"


def test_inline_answers_after_an_attribution_stay_with_their_quotes() -> None:
    out = cut("""
        Answers inline.

        On Tue, 1 Oct 2024 at 10:00, Jane Roe <jane@example.org> wrote:
        > Which model is it?
        HP LaserJet 4050.
        > Where is it?
        Second floor, room 2.14.
        >
        > Thanks, Jane
    """)
    assert "HP LaserJet 4050." in out and "Second floor, room 2.14." in out
    assert "> Which model is it?" in out
    assert "Thanks, Jane" not in out


def test_outlook_plain_header_block_in_french_and_swedish_is_cut() -> None:
    out = cut("""
        C'est corrigé.

        De : Jane Roe <jane@example.org>
        Envoyé : mardi 1 octobre 2024 10:00
        À : Support <support@example.org>
        Objet : Imprimante en panne

        L'imprimante est en panne.
    """)
    assert out == "C'est corrigé."
    assert cut("Klart.\n\nFrån: Anna Andersson\nSkickat: den 1 oktober 2024 10:00\nTill: Support\n"
               "Ämne: Skrivaren\n\nSkrivaren är trasig.") == "Klart."


def test_outlook_header_block_with_underscore_rule_in_german() -> None:
    out = cut("""
        Ist erledigt.

        ________________________________
        Von: Jane Roe <jane@example.org>
        Gesendet: Dienstag, 1. Oktober 2024 10:00
        An: Support <support@example.org>
        Betreff: Drucker defekt

        Der Drucker ist defekt.
    """)
    assert out == "Ist erledigt."


def test_mailing_list_footer_under_a_line_of_underscores_is_cut() -> None:
    out = cut("""
        How do I clear a bucket after a test?

        _______________________________________________
        users mailing list
        users@lists.example.org
        https://lists.example.org/mailman/listinfo/users
    """)
    assert out == "How do I clear a bucket after a test?"


def test_german_tracker_delimiter_cuts() -> None:
    assert cut("Danke!\n\n--- Bitte oberhalb dieser Zeile antworten ---\nTicket #12 wurde aktualisiert.") == \
        "Danke!"


def test_attribution_without_a_colon_right_above_the_quote() -> None:
    out = cut("""
        Works now.
        2024/10/01 Jane Roe <jane@example.org>

        > Does it work?
    """)
    assert out == "Works now."


def test_dutch_apple_attribution_followed_by_unquoted_history() -> None:
    out = cut("""
        Dat klopt.

        Op 1 okt. 2024, om 10:00 heeft Jan Jansen <jan@example.nl> het volgende geschreven:

        De printer is kapot.
    """)
    assert out == "Dat klopt."


def test_header_block_opening_with_date_and_header_keys_sharing_a_line() -> None:
    assert cut("Done.\n\nDate: Tue, 1 Oct 2024 10:00:00 +0200\nTo: support@example.org\n\nOld text") == "Done."
    # An HTML header block whose line breaks were lost, under html2text's "* * *" for <hr>.
    assert cut("Done.\n\n* * *\n\nFrom: jane@example.org Date: Tue, 1 Oct 2024 10:00\n\nOld text") == "Done."


def test_german_reply_message_separator_is_cut() -> None:
    assert cut("Erledigt.\n\n-----Antwort Nachricht-----\n\nAlter Text") == "Erledigt."


def test_attribution_after_reply_text_on_the_same_line_without_a_full_stop() -> None:
    assert cut("ok On Tue, Oct 1, 2024 at 10:00 AM, jane@example.org wrote:\n> ready?") == "ok"
    assert cut("ok, will do--- On Tue, Oct 1, 2024 at 10:00 AM, jane@example.org wrote:\n> ready?") == \
        "ok, will do"


def test_link_wrapped_out_of_a_quote_does_not_make_an_inline_reply() -> None:
    out = cut("""
        Thanks.

        On Tuesday, October 1, 2024 at 10:00 AM, Helpdesk wrote:

        > Your ticket was updated. View it here (https://helpdesk.example.org/tickets/4711?token=
        abcdef0123456789)
        >
        > Reply to this mail to add a comment.
    """)
    assert out == "Thanks."


def test_inline_reply_loses_its_trailing_quote_and_signature() -> None:
    out = cut("""
        On Tue, Oct 1, 2024 at 10:00 AM, Jane Roe <jane@example.org> wrote:

        > Which floor?

        Second.

        > Which room?

        2.14.

        > Thanks, Jane
        > On Mon, Sep 30, 2024 at 9:00 AM, John <john@example.org> wrote:
        >> The printer is broken.

        --
        John Doe, IT
    """)
    assert "Second." in out and "2.14." in out and "> Which room?" in out
    assert "The printer is broken." not in out and "John Doe, IT" not in out


def test_bottom_post_with_greeting_loses_the_quoted_list_footer() -> None:
    out = cut("""
        Hi,
        On Tue, 2024-10-01 at 10:00 +0200, Jane Roe wrote:
        > How do I reset it?

        Hold the button for ten seconds.

        > _______________________________________________
        > users mailing list

        _______________________________________________
        users mailing list
        users@lists.example.org
    """)
    assert "Hold the button for ten seconds." in out and "mailing list" not in out


# ---------------------------------------------------------------- what must stay


@pytest.mark.parametrize(("marker", "header"), [
    ("---------- Forwarded message ---------", "From: Jane Roe <jane@example.org>\nDate: Tue, Oct 1, 2024 at "
                                               "10:00 AM\nSubject: Printer\nTo: <support@example.org>"),
    ("-------- Weitergeleitete Nachricht --------", "Betreff: \tDrucker\nDatum: \tTue, 1 Oct 2024 10:00:00 "
                                                    "+0200\nVon: \tJane Roe <jane@example.org>\nAn: \tsupport"),
    ("Début du message réexpédié :", "De: Jane Roe <jane@example.org>\nObjet: Imprimante\nDate: 1 octobre "
                                     "2024 à 10:00:00 UTC+2\nÀ: support@example.org"),
])
def test_forwarded_message_stays_in_the_reply(marker: str, header: str) -> None:
    text = f"FYI, see below.\n\n{marker}\n{header}\n\nThe printer on floor 2 is broken.\n> and an older quote\n"
    out = cut_reply(text)
    assert out.startswith("FYI, see below.")
    assert "The printer on floor 2 is broken." in out and marker in out and "and an older quote" in out


def test_forward_signature_above_the_forwarded_message_goes_but_the_message_stays() -> None:
    out = cut("""
        See below.

        Sent from my iPhone

        Begin forwarded message:

        From: Jane Roe <jane@example.org>
        Date: 1 October 2024 at 10:00:00 CEST
        Subject: Printer

        It is broken.
    """)
    assert "Sent from my iPhone" not in out
    assert out.startswith("See below.") and "It is broken." in out


def test_outlook_forward_recognised_by_its_subject_keeps_the_header_block_and_body() -> None:
    text = ("Bitte prüfen.\n\n________________________________\nVon: Jane Roe <jane@example.org>\n"
            "Gesendet: Dienstag, 1. Oktober 2024 10:00\nAn: Max\nBetreff: Drucker\n\nDer Drucker ist defekt.")
    assert "Der Drucker ist defekt." in cut_reply(text, forwarded=True)
    assert cut_reply(text) == "Bitte prüfen."
    assert is_forward_subject("WG: Drucker") and is_forward_subject("Fwd: [#12] x") and is_forward_subject("TR: x")
    assert not is_forward_subject("Re: Fwd: x") and not is_forward_subject("AW: WG: x")


def test_forward_inside_quoted_history_is_cut_with_it() -> None:
    out = cut("""
        Thanks, done.

        On Tue, 1 Oct 2024 at 10:00, Jane Roe <jane@example.org> wrote:
        > FYI
        > ---------- Forwarded message ---------
        > From: Max <max@example.org>
        > It is broken.
    """)
    assert out == "Thanks, done."


def test_interleaved_inline_reply_without_attribution_stays() -> None:
    out = cut("""
        > Can you send the log?
        Attached.
        > And the version?
        2.4.1
    """)
    assert out == "> Can you send the log?\nAttached.\n> And the version?\n2.4.1"


@pytest.mark.parametrize("text", [
    "On Monday I will replace the toner.\nOn Tuesday the technician comes at 10:00.",
    "On Monday at 10:00 we meet in room 2.14; please bring:\n- the invoice\n- the old toner",
    "From: Monday\nTo: Friday\nThe office is closed.",
    "Date: Wednesday 3 October 2024\nTime: 10:00\nPlace: room 2.14",
    "He wrote the report yesterday. Steps:\n1. open it\n2. print it",
])
def test_human_lines_that_look_like_history_do_not_cut(text: str) -> None:
    assert cut_reply(text) == text


# ---------------------------------------------------------------- HTML


@pytest.mark.parametrize(("block", "quoted"), [
    ("<b>Von:</b> Jane Roe &lt;jane@example.org&gt;<br><b>Gesendet:</b> Dienstag, 1. Oktober 2024 10:00<br>"
     "<b>An:</b> Support<br><b>Betreff:</b> Drucker", "Der Drucker ist defekt."),
    ("<b>De :</b> Jane Roe<br><b>Envoyé :</b> mardi 1 octobre 2024 10:00<br><b>À :</b> Support<br>"
     "<b>Objet :</b> Imprimante", "L'imprimante est en panne."),
    ("<b>От:</b>&nbsp;<a href=\"mailto:jane@example.org\">Jane Roe</a><br><b>Отправлено:</b>&nbsp;вторник, "
     "1 октября 2024 г. 10:00<br><b>Кому:</b>&nbsp;Support", "Принтер сломался."),
])
def test_outlook_and_windows_mail_divider_with_header_block_cuts_in_any_language(block: str, quoted: str) -> None:
    html = ('<div><p>Erledigt / fait / готово.</p><div style="border:none;border-top:solid #E1E1E1 1.0pt;'
            f'padding:3.0pt 0cm 0cm 0cm"><p class="MsoNormal">{block}</p></div><p>{quoted}</p></div>')
    out = cut_html_quotes(html)
    assert "Erledigt / fait / готово." in out and quoted not in out


def test_bordered_div_without_a_header_block_is_content() -> None:
    html = '<p>Our offer:</p><div style="border-top: 1px solid #ccc">Toner HP 26A: 49 EUR</div><p>Bye</p>'
    out = cut_html_quotes(html)
    assert "Toner HP 26A: 49 EUR" in out and "Bye" in out


def test_gmail_reply_history_goes_but_a_quote_made_with_the_quote_button_stays() -> None:
    reply = ('<div dir="ltr">As the manual says:<blockquote class="gmail_quote" style="margin:0 0 0 .8ex">'
             'Replace the toner every 5000 pages.</blockquote>So it is due.</div><br><div class="gmail_quote">'
             '<div dir="ltr" class="gmail_attr">On Tue, Oct 1, 2024 at 10:00 AM Jane Roe &lt;jane@example.org&gt;'
             ' wrote:<br></div><blockquote class="gmail_quote">When is the toner due?</blockquote></div>')
    m = parse_message(io.BytesIO(b"From: a@example.org\r\nSubject: Re: toner\r\nContent-Type: text/html; "
                                 b"charset=utf-8\r\n\r\n" + reply.encode()))
    assert "Replace the toner every 5000 pages." in m.reply_text and "So it is due." in m.reply_text
    assert "When is the toner due?" not in m.reply_text and "wrote" not in m.reply_text


def test_gmail_html_forward_stays() -> None:
    html = ('<div dir="ltr">FYI<br><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">'
            '---------- Forwarded message ---------<br>From: <b>Jane Roe</b> &lt;jane@example.org&gt;<br>'
            'Date: Tue, Oct 1, 2024 at 10:00 AM<br>Subject: Printer<br></div><br><div>The printer is broken.'
            '</div></div></div>')
    out = cut_html_quotes(html)
    assert "The printer is broken." in out and "Forwarded message" in out


def test_apple_mail_reply_quote_goes_but_a_forwarded_quote_stays() -> None:
    reply = ('<div>Yes.</div><div><br><blockquote type="cite"><div>On 1 Oct 2024, at 10:00, Jane Roe wrote:</div>'
             '<div>Ready?</div></blockquote></div>')
    assert "Ready?" not in cut_html_quotes(reply)
    forward = ('<div>See below.<br><br>Begin forwarded message:<br><br></div><blockquote type="cite"><div>'
               '<b>From: </b>Jane Roe &lt;jane@example.org&gt;<br><b>Subject: </b>Printer<br></div>'
               '<div>It is broken.</div></blockquote>')
    assert "It is broken." in cut_html_quotes(forward)


def test_outlook_forward_by_subject_keeps_the_html_header_block() -> None:
    html = ('<p>Please check.</p><div id="divRplyFwdMsg"><b>From:</b> Jane Roe<br><b>Sent:</b> Tuesday<br>'
            '</div><div>The printer is broken.</div>')
    assert "The printer is broken." in cut_html_quotes(html, forwarded=True)
    assert "The printer is broken." not in cut_html_quotes(html)


def test_the_last_blockquote_is_history_and_earlier_ones_are_content() -> None:
    html = ('<div>As the manual says:<blockquote>Replace the toner every 5000 pages.</blockquote>So it is due.'
            '</div><div>On Tue, Jane &lt;jane@example.org&gt; wrote:</div><blockquote>When is it due?</blockquote>')
    m = parse_message(io.BytesIO(b"From: a@example.org\r\nSubject: Re: toner\r\nContent-Type: text/html; "
                                 b"charset=utf-8\r\n\r\n" + html.encode()))
    assert "Replace the toner every 5000 pages." in m.reply_text and "So it is due." in m.reply_text
    assert "When is it due?" not in m.reply_text and "> Replace" not in m.reply_text
    assert "Old" not in cut_html_quotes("<p>New</p><blockquote>Old</blockquote><p>Regards</p>")


def test_a_blockquote_above_outlook_history_is_content() -> None:
    html = ('<p>The manual says:</p><blockquote>Replace the toner every 5000 pages.</blockquote><p>Done.</p>'
            '<div id="divRplyFwdMsg"><b>From:</b> Jane Roe<br><b>Sent:</b> Tuesday, 1 October 2024</div>'
            '<div>When is the toner due?</div>')
    out = cut_html_quotes(html)
    assert "Replace the toner every 5000 pages." in out and "Done." in out and "When is" not in out


def test_html_that_is_all_quote_is_kept_whole() -> None:
    html = "<blockquote>My answer is yes.<div>On Tue, Jane &lt;jane@example.org&gt; wrote:</div>Ready?</blockquote>"
    assert cut_html_quotes(html) == html


# ---------------------------------------------------------------- hostile input


_FRAGMENTS = [
    "On Mon, 1 Jan 2024 Ada <ada@example.org> wrote:", "> On Tue, Bob wrote:", "From: Ada", "Sent: Monday",
    "To: Bob", "Subject: Re: printer", "*From:* Ada", "-----Original Message-----", "Von: Ada", "Gesendet: Montag",
    "Am 1.1.2024 schrieb Bob:", "Le 1 janv. 2024, Bob a écrit :", "2024年1月1日(月) 10:00 Bob <b@example.org>:",
    "Den 1 jan 2024 skrev Bob:", "Hello,", "", "  ", "It jams at 10:30 on duplex.", "> quoted: line", "Thanks!",
    "---------- Forwarded message ---------", "---- Bob wrote ----", "-- ", "________", "> wrote:", "<", ">",
    "Begin forwarded message:", "Reply above this line", "Sent from my iPhone", "x:", "a@b.example:",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), min_size=1, max_size=30), st.booleans())
def test_cut_reply_keeps_only_lines_of_the_input(lines: list[str], forwarded: bool) -> None:
    text = "\n".join(lines)
    out = cut_reply(text, forwarded=forwarded)
    for line in out.split("\n"):
        # Every line is one of the input's, or the start of one (an attribution sharing its line).
        assert not line.strip() or any(original.strip().startswith(line.strip()) for original in lines)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("body", [
    "Reply\n" + "On Mon, 1 Jan 2024 Ada <ada@example.org> wrote:\n> quoted\n" * 20_000,
    "Reply\n" + ">" * 1_000_000,
    "Reply\n" + "> " * 500_000 + "\n",
    "Reply\n\nOn " + "a " * 500_000 + "wrote:\n> q\n",
    "Reply\n" + "x:\n" * 330_000,
    "Reply\n" + ("On " + "1:11 a@b.example " * 20 + ":\n") * 3_000,
    "Reply\n" + ("-" * 300 + " wrote " + "-" * 300 + "\n") * 1_600,
    "Reply\n" + "From: a\nTo: b\n" * 80_000,
    "Reply\n" + " " * 1_000_000 + "\nSent from my phone",
])
def test_a_megabyte_of_adversarial_history_markers_is_cut_without_blowing_up(body: str) -> None:
    out = cut_reply(body)
    assert out.startswith("Reply")
    assert len(out) <= len(body)


@pytest.mark.timeout(30)
def test_a_megabyte_of_adversarial_html_quotes_is_handled() -> None:
    html = "<p>Reply</p>" + '<div class="gmail_quote">On x wrote:<blockquote class="gmail_quote">q' * 20_000
    assert cut_html_quotes(html).startswith("<p>Reply</p>")
