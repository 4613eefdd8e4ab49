"""parse_message on small hand-made messages, one per hard case of real-world mail."""

from __future__ import annotations

import base64
import io
import os
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailintake.parsing import Address, ParsedMessage, parse_message, safe_name, sanitize_html


def parse(raw: str | bytes) -> ParsedMessage:
    data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw
    return parse_message(io.BytesIO(data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")))


def mail(headers: str, body: str = "Hello\n") -> str:
    return textwrap.dedent(headers).lstrip() + "\n" + textwrap.dedent(body)


# ---------------------------------------------------------------- headers


def test_encoded_word_subject_in_several_charsets_is_decoded_and_unfolded() -> None:
    m = parse(mail("""
        From: a@example.org
        Subject: =?utf-8?B?R3LDvMOfZQ==?= and
         =?iso-8859-2?Q?=B9o=B9i=E6?= =?windows-1251?B?7/Do4uXy?=
    """))
    # RFC 2047: white space between adjacent encoded words is not text.
    assert m.subject == "Grüße and šošićпривет"


def test_subject_with_multibyte_character_split_across_encoded_words_is_joined() -> None:
    # "日本" in UTF-8 split in the middle of the second character's bytes.
    raw = "日本".encode()
    first, second = base64.b64encode(raw[:4]).decode(), base64.b64encode(raw[4:]).decode()
    m = parse(mail(f"From: a@example.org\nSubject: =?UTF-8?B?{first}?= =?UTF-8?B?{second}?=\n"))
    assert m.subject == "日本"


def test_subject_in_unknown_or_broken_charset_never_raises() -> None:
    m = parse(mail("""
        From: a@example.org
        Subject: =?x-unknown?Q?caf=C3=A9?= =?utf-8?B?!!!notbase64?= =?bogus-charset?Q?=E9t=E9?=
    """))
    assert m.subject.startswith("café")
    assert "\ufffd" not in m.subject.split()[0]


def test_mislabelled_latin1_subject_is_read_as_windows_1252() -> None:
    m = parse(mail("From: a@example.org\nSubject: =?iso-8859-1?Q?=93quoted=94_=80?=\n"))
    assert m.subject == "“quoted” €"


def test_raw_8bit_utf8_subject_is_decoded() -> None:
    m = parse(mail("From: a@example.org\nSubject: Caf\u00e9 cr\u00e8me\n").encode("utf-8"))
    assert m.subject == "Café crème"


def test_iso_2022_jp_subject_with_vendor_extension_characters() -> None:
    m = parse(mail("From: a@example.org\nSubject: =?iso-2022-jp?B?GyRCLSEbKEIgGyRCNF0/dDt6JUYlOSVIGyhC?=\n"))
    assert m.subject == "① 丸数字テスト"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('"Doe, John" <John.Doe@Example.org>', Address("john.doe@example.org", "Doe, John")),
        ("jdoe@example.net (John Doe)", Address("jdoe@example.net", "John Doe")),
        ("=?utf-8?B?w4TDpCDDlsO2?= <foo@example.org>", Address("foo@example.org", "Ää Öö")),
        ('"=?utf-8?Q?Ren=C3=A9?=" <r@example.org>', Address("r@example.org", "René")),
        ("plain@example.org", Address("plain@example.org", "")),
    ],
)
def test_sender_display_name_in_every_form(header: str, expected: Address) -> None:
    assert parse(mail(f"From: {header}\nSubject: x\n")).sender == expected


def test_missing_from_gives_empty_address() -> None:
    m = parse(mail("To: a@example.org\nSubject: no sender\n"))
    assert m.sender == Address("", "")


def test_recipient_lists_reply_to_ids_and_date() -> None:
    m = parse(mail("""
        From: a@example.org
        To: "B" <b@example.org>, c@example.org
        Cc: =?utf-8?Q?D=C3=B6?= <d@example.org>
        Reply-To: replies@example.org
        Message-ID: <abc@example.org>
        In-Reply-To: <parent@example.org>
        References: <root@example.org>
         <parent@example.org>
        Date: Tue, 1 Oct 2024 10:00:00 +0200
        Subject: x
    """))
    assert [a.email for a in m.to] == ["b@example.org", "c@example.org"]
    assert m.cc == [Address("d@example.org", "Dö")]
    assert m.reply_to == [Address("replies@example.org", "")]
    assert m.message_id == "abc@example.org"
    assert m.in_reply_to == ["parent@example.org"]
    assert m.references == ["root@example.org", "parent@example.org"]
    assert m.date == datetime(2024, 10, 1, 8, 0, tzinfo=UTC)


def test_header_dict_has_lower_cased_names_and_first_decoded_value() -> None:
    m = parse(mail("From: a@example.org\nX-Thing: =?utf-8?Q?=C3=A9?=\nX-Thing: second\nSubject: x\n"))
    assert m.headers["x-thing"] == "é"


def test_garbage_date_is_a_defect_not_an_error() -> None:
    m = parse(mail("From: a@example.org\nDate: the day after tomorrow\nSubject: x\n"))
    assert m.date is None
    assert any("date" in d for d in m.defects)


# ---------------------------------------------------------------- bodies


def test_plain_text_is_preferred_over_html_when_not_empty() -> None:
    m = parse(mail("""
        From: a@example.org
        Subject: x
        MIME-Version: 1.0
        Content-Type: multipart/alternative; boundary=b

        --b
        Content-Type: text/plain; charset=utf-8

        plain words
        --b
        Content-Type: text/html; charset=utf-8

        <p>html words</p>
        --b--
    """, ""))
    assert m.text == "plain words"
    assert m.html is not None and "html words" in m.html


def test_html_only_mail_becomes_readable_text_with_paragraphs_lists_and_links() -> None:
    m = parse(mail("""
        From: a@example.org
        Subject: x
        Content-Type: text/html; charset=utf-8

        <html><head><style>p {color: red}</style></head><body>
        <p>First paragraph.</p><p>Second &amp; last.</p>
        <ul><li>one</li><li>two</li></ul>
        <a href="https://example.org/x">the link</a>
        </body></html>
    """, ""))
    assert "First paragraph.\n\nSecond & last." in m.text
    assert "* one\n" in m.text and "* two" in m.text
    assert "[the link](https://example.org/x)" in m.text
    assert "color" not in m.text


@pytest.mark.parametrize("layout", ["html-only", "alternative-without-plain", "mixed"])
def test_text_from_html_comes_from_the_sanitised_html_so_dropped_links_stay_dropped(layout: str) -> None:
    # Before the fix the description was converted from the raw HTML: "[click](javascript:alert(1))".
    html = ('<p><a href="javascript:alert(1)">click</a> <a href=" JaVaScRiPt:x()">again</a>'
            ' <a href="vbscript:msgbox(1)">vb</a> <a href="data:text/html,x">data</a>'
            ' <a href="https://example.org/ok">safe</a></p><blockquote type="cite">old <a href="javascript:y()">q</a>'
            "</blockquote>")
    part = f"Content-Type: text/html; charset=utf-8\n\n{html}\n"
    bodies = {
        "html-only": part,
        "alternative-without-plain": f"Content-Type: multipart/alternative; boundary=b\n\n--b\n{part}--b--\n",
        "mixed": ("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nplain words\n"
                  f"--b\n{part}--b--\n"),
    }
    m = parse(f"From: a@example.org\nSubject: Re: x\n{bodies[layout]}")
    for text in (m.text, m.reply_text):
        assert "script:" not in text.lower() and "data:" not in text
        assert "click" in text and "again" in text and "vb" in text
        assert "[safe](https://example.org/ok)" in text
    assert "old" in m.text


def test_bidi_controls_are_removed_from_the_title_and_attachment_names_only() -> None:
    # "\u202e" shows "invoice\u202efdp.exe" as "invoiceexe.pdf"; every reordering control goes.
    controls = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c\u206a"
    subject = base64.b64encode(f"Rechnung {controls}fdp.exe".encode()).decode()
    name = base64.b64encode(f"invoice\u202efdp.exe{controls}".encode()).decode()
    m = parse(mail(f"""
        From: a@example.org
        Subject: =?utf-8?b?{subject}?=
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: text/plain; charset=utf-8

        Body keeps \u202e as sent.
        --b
        Content-Type: application/octet-stream
        Content-Disposition: attachment; filename="=?utf-8?b?{name}?="

        MZ
        --b--
    """, ""))
    assert m.subject == "Rechnung fdp.exe"
    assert [a.filename for a in m.attachments] == ["invoicefdp.exe"]
    assert "\u202e" in m.text  # the body is the sender's text, shown as text, not as a name
    # Joiners and right-to-left text itself are not reordering controls: they stay.
    hebrew = parse(mail("From: a@example.org\nSubject: =?utf-8?b?"
                        + base64.b64encode("\u05e9\u05dc\u05d5\u05dd \U0001f469\u200d\U0001f4bb".encode()).decode()
                        + "?=\n"))
    assert hebrew.subject == "\u05e9\u05dc\u05d5\u05dd \U0001f469\u200d\U0001f4bb"


def test_html_becomes_plain_text_without_markdown_emphasis_escapes_or_heading_marks() -> None:
    m = parse(mail("""
        From: shop@example.de
        Subject: x
        Content-Type: text/html; charset=utf-8

        <h2>Angebot der Woche</h2>
        <p><b>genie&szlig;en Sie Ihre Lieblings-Musik</b> jetzt ohne <i>st&ouml;rende</i> Kabel</p>
        <p>- 90% nur heute</p><p>1. Preis: 3,90 EUR</p><p>C:\\Users\\anna_b *wichtig* #42 <s>39,90</s></p>
        <p>Code: <code>make_install</code></p>
    """, ""))
    assert "genießen Sie Ihre Lieblings-Musik jetzt ohne störende Kabel" in m.text
    assert m.text.startswith("Angebot der Woche\n")
    assert "\n- 90% nur heute\n" in m.text and "\n1. Preis: 3,90 EUR\n" in m.text
    assert "C:\\Users\\anna_b *wichtig* #42 39,90" in m.text
    assert "Code: make_install" in m.text
    assert "**" not in m.text and "~~" not in m.text and "`" not in m.text and "\\-" not in m.text


def test_multiple_inline_text_parts_are_concatenated_and_text_attachments_are_not() -> None:
    m = parse(mail("""
        From: a@example.org
        Subject: x
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: text/plain

        first
        --b
        Content-Type: application/pdf; name=a.pdf
        Content-Disposition: inline; filename=a.pdf

        %PDF
        --b
        Content-Type: text/plain

        second
        --b
        Content-Type: text/plain
        Content-Disposition: attachment; filename=notes.txt

        attached text
        --b--
    """, ""))
    assert m.text == "first\n\nsecond"
    assert [a.filename for a in m.attachments] == ["a.pdf", "notes.txt"]


def test_plain_and_html_parts_side_by_side_in_mixed_are_all_body_in_order() -> None:
    m = parse(mail("""
        From: a@example.org
        Subject: x
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: text/html; charset=utf-8

        <p>Hallo <b>Team</b>,</p>
        --b
        Content-Type: text/plain; charset=utf-8

        der Drucker ist repariert.
        --b
        Content-Type: image/png; name=logo.png
        Content-Disposition: inline; filename=logo.png

        PNG
        --b
        Content-Type: text/html; charset=utf-8

        <div>-- <br>Anna Beispiel | <i>IT-Service</i></div>
        --b--
    """, ""))
    assert m.text.index("Hallo Team,") < m.text.index("der Drucker ist repariert.") < m.text.index("Anna Beispiel")
    assert "IT-Service" in m.text
    assert "der Drucker ist repariert." in m.reply_text and "Anna Beispiel" not in m.reply_text
    assert [a.filename for a in m.attachments] == ["logo.png"]


def test_ks_c_5601_body_is_decoded_as_cp949() -> None:
    body = "고맙습니다. 똠방각하".encode("cp949")
    raw = b"From: a@example.org\nSubject: x\nContent-Type: text/plain; charset=ks_c_5601-1987\n" \
          b"Content-Transfer-Encoding: 8bit\n\n" + body
    assert parse(raw).text == "고맙습니다. 똠방각하"


def test_invalid_utf8_body_keeps_the_valid_text() -> None:
    raw = b"From: a@example.org\nContent-Type: text/plain; charset=utf-8\n\n" \
          + "Здравствуйте".encode() + b"\xaa and more"
    m = parse(raw)
    assert m.text == "Здравствуйте? and more"
    assert any("invalid" in d for d in m.defects)


def test_unknown_8bit_body_is_detected() -> None:
    raw = b"From: a@example.org\nContent-Type: text/plain; charset=unknown-8bit\n\n" \
          + "Größere Änderungen für Übermorgen".encode()
    assert parse(raw).text == "Größere Änderungen für Übermorgen"


def test_undeclared_latin1_body_falls_back_to_a_western_charset() -> None:
    body = "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e".encode("latin-1")
    raw = b"From: a@example.org\nContent-Type: text/plain\n\n" + body
    assert parse(raw).text == "Café crème brûlée"


def test_bad_base64_body_is_decoded_as_far_as_possible_and_noted() -> None:
    m = parse(mail("""
        From: a@example.org
        Subject: x
        Content-Type: text/plain; charset=utf-8
        Content-Transfer-Encoding: base64

        SGVsbG8gd29ybGQ*&^%
    """, ""))
    assert m.text.startswith("Hello world")
    assert m.defects


def test_malformed_mime_never_raises() -> None:
    nasty = [
        b"",
        b"\x00\xff\xfe garbage",
        b"Content-Type: multipart/mixed; boundary=\n\n--\n--",
        b"From: <<<@@@>>>\nContent-Type: multipart/alternative\n\nno boundary at all",
        b"Subject: =?utf-8?B?=?=\nContent-Type: text/plain; charset=\"\"\n"
        b"Content-Transfer-Encoding: x-uue\n\n"
        b"begin 644 x\n!!!\nend\n",
        b"Content-Type: message/rfc822\n\nnot really a message",
        b"Content-Type: text/plain; charset=base64\n\nhello",
        b"Content-Type: text/plain; filename*0*=utf-8''%E2%82; filename*1*=%AC.txt\n\nx",
    ]
    for raw in nasty:
        parse_message(io.BytesIO(raw))


def test_format_flowed_soft_breaks_are_joined() -> None:
    m = parse("From: a@example.org\nContent-Type: text/plain; charset=utf-8; format=flowed\n\n"
              "This is a long line that was \nwrapped by the client.\nNew line.\n")
    assert "This is a long line that was wrapped by the client.\nNew line." in m.text


# ---------------------------------------------------------------- HTML sanitising


def test_hostile_html_is_sanitised() -> None:
    html = """
        <script>alert(1)</script><style>body{display:none}</style>
        <p onclick="steal()" style="color: red; position: fixed; background: url(https://t.example/x)">hi</p>
        <a href="javascript:alert(1)">js</a> <a href="https://example.org">ok</a>
        <img src="https://tracker.example/pixel.gif" alt="pixel">
        <img src="cid:logo@x" alt="logo"><iframe src="https://evil.example"></iframe>
        <form action="https://evil.example"><input name=x></form>
    """
    out = sanitize_html(html)
    assert "alert" not in out and "display:none" not in out
    assert "onclick" not in out and "position" not in out and "url(" not in out
    assert "javascript:" not in out
    assert "tracker.example" not in out
    assert 'src="cid:logo@x"' in out
    assert "iframe" not in out and "<form" not in out and "<input" not in out
    assert 'href="https://example.org"' in out and "color:red" in out


def test_html_part_is_exposed_sanitised() -> None:
    m = parse(mail("""
        From: a@example.org
        Content-Type: text/html

        <p>Hi <img src=x onerror=alert(1)></p>
    """, ""))
    assert m.html is not None and "onerror" not in m.html and "Hi" in m.html


# ---------------------------------------------------------------- attachments


def test_rfc2231_file_name_with_continuations_and_charset() -> None:
    m = parse(mail("""
        From: a@example.org
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: text/plain

        body
        --b
        Content-Type: application/octet-stream
        Content-Disposition: attachment;
         filename*0*=utf-8''%C3%84rger%20mit;
         filename*1*=%20Umlauten%20%E2%82%AC;
         filename*2=".txt"

        data
        --b--
    """, ""))
    assert [a.filename for a in m.attachments] == ["Ärger mit Umlauten €.txt"]


def test_encoded_word_file_name_and_name_only_in_content_type() -> None:
    m = parse(mail("""
        From: a@example.org
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: application/pdf; name="=?utf-8?B?44OG44K544OILnBkZg==?="
        Content-Disposition: attachment

        x
        --b
        Content-Type: image/png; name="only-here.png"

        y
        --b--
    """, ""))
    assert [a.filename for a in m.attachments] == ["テスト.pdf", "only-here.png"]


def test_inline_image_keeps_content_id() -> None:
    m = parse(mail("""
        From: a@example.org
        Content-Type: multipart/related; boundary=b

        --b
        Content-Type: text/html

        <p>logo: <img src="cid:logo@example"></p>
        --b
        Content-Type: image/png
        Content-ID: <logo@example>
        Content-Transfer-Encoding: base64

        iVBORw0KGgo=
        --b--
    """, ""))
    (att,) = m.attachments
    assert att.content_id == "logo@example" and att.inline
    assert att.data == b"\x89PNG\r\n\x1a\n"
    assert m.html is not None and 'src="cid:logo@example"' in m.html


def test_attached_message_is_kept_as_eml() -> None:
    m = parse(mail("""
        From: a@example.org
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: text/plain

        see attached
        --b
        Content-Type: message/rfc822

        From: other@example.org
        Subject: Inner

        inner body
        --b--
    """, ""))
    (att,) = m.attachments
    assert att.filename == "Inner.eml" and att.content_type == "message/rfc822"
    assert b"Subject: Inner" in att.data and b"inner body" in att.data
    assert m.text == "see attached"


def test_empty_attachment_is_kept_with_size_zero() -> None:
    m = parse(mail("""
        From: a@example.org
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: text/plain

        x
        --b
        Content-Type: application/json; name=empty.json
        Content-Disposition: attachment; filename=empty.json
        Content-Transfer-Encoding: base64

        --b--
    """, ""))
    assert [(a.filename, a.size) for a in m.attachments] == [("empty.json", 0)]


def test_smime_signature_part_is_an_attachment_and_the_mail_is_marked_signed() -> None:
    m = parse(mail("""
        From: a@example.org
        Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary=b

        --b
        Content-Type: text/plain

        signed text
        --b
        Content-Type: application/pkcs7-signature; name=smime.p7s
        Content-Disposition: attachment; filename=smime.p7s
        Content-Transfer-Encoding: base64

        MIIB
        --b--
    """, ""))
    assert m.text == "signed text"
    assert [(a.filename, a.content_type) for a in m.attachments] == [("smime.p7s", "application/pkcs7-signature")]
    assert m.signed == ("smime",)


def test_pgp_signature_part_without_a_name_is_listed_as_signature_asc() -> None:
    m = parse(mail("""
        From: a@example.org
        Content-Type: multipart/signed; micalg=pgp-sha256; protocol="application/pgp-signature"; boundary=b

        --b
        Content-Type: text/plain; charset=utf-8

        Bitte um Rückruf.
        --b
        Content-Type: application/pgp-signature

        -----BEGIN PGP SIGNATURE-----
        iQEzBAEBCAAdFiEE
        -----END PGP SIGNATURE-----
        --b--
    """, ""))
    assert [a.filename for a in m.attachments] == ["signature.asc"]
    assert m.attachments[0].data.startswith(b"-----BEGIN PGP SIGNATURE-----")
    assert m.signed == ("openpgp",)


def test_unsigned_mail_is_not_marked_signed() -> None:
    assert parse(mail("From: a@example.org\nSubject: x\n")).signed == ()


def test_file_names_keep_runs_of_spaces_while_the_storage_name_is_normalised() -> None:
    m = parse(mail("""
        From: a@example.org
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: text/plain

        body
        --b
        Content-Type: application/pdf; name="Rechnung  2024   (Kopie).pdf"
        Content-Disposition: attachment; filename="Rechnung  2024   (Kopie).pdf"

        x
        --b
        Content-Type: text/plain; name="=?utf-8?Q?Compte_rendu__r=C3=A9union.txt?="
        Content-Disposition: attachment

        y
        --b--
    """, ""))
    assert [a.filename for a in m.attachments] == ["Rechnung  2024   (Kopie).pdf", "Compte rendu  réunion.txt"]
    assert [a.safe_name for a in m.attachments] == ["Rechnung 2024 (Kopie).pdf", "Compte rendu réunion.txt"]


def _tnef_with_file(name: bytes, data: bytes) -> bytes:
    """A minimal TNEF stream holding one attachment (attAttachRendData, attAttachTitle, attAttachData)."""
    import struct

    def attr(level: int, ident: int, payload: bytes) -> bytes:
        checksum = sum(payload) & 0xFFFF
        return struct.pack("<BII", level, ident, len(payload)) + payload + struct.pack("<H", checksum)

    out = struct.pack("<IH", 0x223E9F78, 0x0001)
    out += attr(2, 0x00069002, b"\x01\x00" + b"\x00" * 12)  # attAttachRendData starts an attachment
    out += attr(2, 0x00018010, name + b"\x00")  # attAttachTitle
    out += attr(2, 0x0006800F, data)  # attAttachData
    return out


def test_winmail_dat_is_unpacked_into_its_files() -> None:
    tnef = base64.b64encode(_tnef_with_file(b"report.txt", b"hello tnef")).decode()
    m = parse(mail(f"""
        From: a@example.org
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: text/plain

        see attached
        --b
        Content-Type: application/ms-tnef; name=winmail.dat
        Content-Disposition: attachment; filename=winmail.dat
        Content-Transfer-Encoding: base64

        {tnef}
        --b--
    """, ""))
    assert [(a.filename, a.data) for a in m.attachments] == [("report.txt", b"hello tnef")]


def test_undecodable_winmail_dat_is_kept_as_it_is() -> None:
    m = parse(mail("""
        From: a@example.org
        Content-Type: multipart/mixed; boundary=b

        --b
        Content-Type: application/ms-tnef; name=winmail.dat

        not tnef
        --b--
    """, ""))
    assert [a.filename for a in m.attachments] == ["winmail.dat"]
    assert any("winmail.dat" in d for d in m.defects)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system.ini", "system.ini"),
        ("con.txt\x00.exe", "_con.txt.exe"),
        ("..", "attachment.bin"),
        ("", "attachment.bin"),
        ("report\u202egnp.exe", "reportgnp.exe"),
        ("A\u0308rger.txt", "Ärger.txt"),
        ('what?<is>:"this"|*.pdf', "what__is___this___.pdf"),
        (".bashrc", "bashrc"),
    ],
)
def test_safe_name_neutralises_hostile_file_names(name: str, expected: str) -> None:
    assert safe_name(name, "application/octet-stream") == expected


def test_safe_name_bounds_length_and_keeps_the_extension() -> None:
    out = safe_name("ä" * 500 + ".docx")
    assert out.endswith(".docx") and len(out.encode()) <= 150
    assert "/" not in out and out.startswith("ää")


def test_attachments_with_the_same_name_get_distinct_safe_names() -> None:
    part = "--b\nContent-Type: image/png\nContent-Disposition: attachment; filename=image.png\n\nx\n"
    m = parse("From: a@example.org\nContent-Type: multipart/mixed; boundary=b\n\n" + part * 2 + "--b--\n")
    assert [a.safe_name for a in m.attachments] == ["image.png", "image-2.png"]


# ---------------------------------------------------------------- size


def test_25_mb_mail_parses_with_its_attachment_whole(tmp_path: Path) -> None:
    """The large-mail path (base64 decoded from the parsed text) keeps every byte; bench/memory.py
    measures its peak memory."""
    data = os.urandom(3 * 349_184)
    path = tmp_path / "big.eml"
    with path.open("wb") as fh:
        fh.write(b"From: a@example.org\r\nSubject: big\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
                 b"--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n--b\r\nContent-Type: application/zip\r\n"
                 b"Content-Disposition: attachment; filename=big.zip\r\n"
                 b"Content-Transfer-Encoding: base64\r\n\r\n")
        for _ in range(18):  # ~18 MiB of data, ~25 MB encoded; chunks a multiple of 3 bytes: no padding
            fh.write(base64.encodebytes(data).replace(b"\n", b"\r\n"))
        fh.write(b"--b--\r\n")
    with path.open("rb") as fh:
        message = parse_message(fh)
    (attachment,) = message.attachments
    assert attachment.filename == "big.zip"
    assert attachment.size == 18 * len(data)
    assert attachment.data[: len(data)] == data and attachment.data[-len(data):] == data


def test_a_header_parameter_continued_without_folding_white_space_is_read_as_a_continuation() -> None:
    # As an SMS gateway writes it: "boundary=" starts a line of its own.
    raw = (b"From: post_master@sms.example.com\r\nSubject: Re:Hello\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
           b"--outer\r\nContent-Type: multipart/alternative;\r\nboundary=\"inner\"\r\n\r\n"
           b"--inner\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nError: Invalid user address\r\n"
           b"--inner--\r\n--outer--\r\n")
    parsed = parse_message(io.BytesIO(raw))
    assert parsed.text == "Error: Invalid user address"
    assert parsed.attachments == []
    assert parsed.content_types == ["multipart/mixed", "multipart/alternative", "text/plain"]
    assert any("without folding white space" in d for d in parsed.defects)
