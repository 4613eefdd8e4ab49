"""Undeclared 8-bit text (mailintake.charsets): raw header bytes and bodies without a charset, decoded as
mail clients decode them, using the evidence of the whole message."""

from __future__ import annotations

import base64
import io
import os
from email import message_from_bytes
from email.message import Message

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailintake.charsets import breaks_are_bytes, codec_for, decode_bytes, guess_codec, message_hints, plausibility
from mailintake.parsing import ParsedMessage, _part_text, parse_message


def raw_mail(headers: list[tuple[str, str, str]], body: str = "Hello", body_charset: str | None = None,
             body_encoding: str | None = None) -> ParsedMessage:
    """A mail whose header values are written as raw bytes in the given charsets (no encoded words)."""
    lines = [f"{name}: ".encode() + value.encode(charset) for name, value, charset in headers]
    lines.append(b"MIME-Version: 1.0")
    content_type = "text/plain" + (f"; charset={body_charset}" if body_charset else "")
    lines.append(f"Content-Type: {content_type}".encode())
    lines.append(b"Content-Transfer-Encoding: 8bit")
    data = b"\r\n".join(lines) + b"\r\n\r\n" + body.encode(body_encoding or body_charset or "ascii") + b"\r\n"
    return parse_message(io.BytesIO(data))


# ---------------------------------------------------------------- whole mails, nothing declared


def test_latin1_german_subject_and_sender_name_without_any_charset() -> None:
    m = raw_mail([("From", "Jörg Müller <joerg@example.de>", "latin-1"),
                  ("Subject", "Drucker im Büro defekt", "latin-1")])
    assert m.subject == "Drucker im Büro defekt"
    assert m.sender.name == "Jörg Müller"


def test_latin1_french_subject_and_body_without_any_charset() -> None:
    m = raw_mail([("From", "Hélène Lefèvre <helene@example.fr>", "latin-1"),
                  ("Subject", "Réunion à 10h", "latin-1")],
                 body="Ça va très bien, merci. À demain !", body_encoding="latin-1")
    assert (m.subject, m.sender.name) == ("Réunion à 10h", "Hélène Lefèvre")
    assert m.text == "Ça va très bien, merci. À demain !"


def test_short_spanish_name_reads_as_latin1_not_as_cjk() -> None:
    m = raw_mail([("From", "José Peña <jose@example.es>", "latin-1"), ("Subject", "Año", "latin-1")])
    assert (m.sender.name, m.subject) == ("José Peña", "Año")


def test_gbk_subject_and_gbk_body_without_any_charset() -> None:
    m = raw_mail([("From", "王小明 <wang@example.cn>", "gbk"), ("Subject", "关于打印机的问题", "gbk")],
                 body="您好，办公室的打印机坏了，请派人来修。谢谢！", body_encoding="gbk")
    assert m.subject == "关于打印机的问题"
    assert m.sender.name == "王小明"
    assert m.text.startswith("您好，办公室的打印机坏了")


def test_euc_kr_subject_without_any_charset() -> None:
    m = raw_mail([("From", "김철수 <kim@example.kr>", "euc-kr"), ("Subject", "회의 일정 안내", "euc-kr")])
    assert (m.subject, m.sender.name) == ("회의 일정 안내", "김철수")


def test_shift_jis_subject_without_any_charset() -> None:
    m = raw_mail([("From", "山田太郎 <yamada@example.jp>", "shift_jis"), ("Subject", "見積書の件", "shift_jis")])
    assert (m.subject, m.sender.name) == ("見積書の件", "山田太郎")


def test_short_shift_jis_katakana_subject_is_not_read_as_windows_1252() -> None:
    # "テスト" is 83 65 83 58 83 67: ASCII letters as trail bytes, "ƒeƒXƒg" in windows-1252.
    assert raw_mail([("Subject", "テスト", "shift_jis")]).subject == "テスト"


def test_shift_jis_body_without_charset_is_read_with_its_subject() -> None:
    m = raw_mail([("Subject", "プリンター故障", "shift_jis")],
                 body="お疲れ様です。事務所のプリンターが故障しています。", body_encoding="shift_jis")
    assert m.subject == "プリンター故障"
    assert m.text == "お疲れ様です。事務所のプリンターが故障しています。"


# ---------------------------------------------------------------- evidence from elsewhere in the mail


def test_gbk_subject_reads_as_the_charset_the_body_declares() -> None:
    # Two hanzi alone would read as well as two hangul: the body's declared charset settles it.
    m = raw_mail([("Subject", "李娜", "gbk")], body="你好", body_charset="gb2312")
    assert m.subject == "李娜"


def test_raw_name_reads_as_the_charset_an_encoded_word_declares_elsewhere() -> None:
    # "이영희" alone reads as three hanzi just as well (GB2312 level 1); the subject's label settles it.
    subject = "=?ks_c_5601-1987?B?" + base64.b64encode("회의 안내".encode("cp949")).decode() + "?="
    m = raw_mail([("From", "이영희 <lee@example.kr>", "euc-kr"), ("Subject", subject, "ascii")])
    assert (m.sender.name, m.subject) == ("이영희", "회의 안내")


def test_windows_1251_subject_reads_as_the_body_charset() -> None:
    m = raw_mail([("Subject", "Счёт на оплату", "cp1251")], body="Добрый день", body_charset="windows-1251")
    assert m.subject == "Счёт на оплату"


def test_raw_utf8_subject_stays_utf8_whatever_the_body_declares() -> None:
    m = raw_mail([("Subject", "Grüße aus Köln – 東京", "utf-8")], body="Hallo", body_charset="iso-8859-1")
    assert m.subject == "Grüße aus Köln – 東京"


def test_latin1_subject_of_a_mail_whose_body_declares_utf8() -> None:
    m = raw_mail([("Subject", "Änderung für Übermorgen", "latin-1")], body="Hallo", body_charset="utf-8")
    assert m.subject == "Änderung für Übermorgen"


def test_latin1_attachment_name_without_charset() -> None:
    data = (b"From: a@example.de\r\nSubject: Bericht\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nAnbei.\r\n"
            b"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\""
            + "Bericht für März.pdf".encode("latin-1") + b"\"\r\n\r\n%PDF\r\n--b--\r\n")
    assert [a.filename for a in parse_message(io.BytesIO(data)).attachments] == ["Bericht für März.pdf"]


# ---------------------------------------------------------------- the guess on its own


@pytest.mark.parametrize(("text", "charset"), [
    ("Drucker im Büro", "latin-1"), ("Jörg", "latin-1"), ("Müller", "latin-1"), ("Straße", "latin-1"),
    ("José", "latin-1"), ("Zoë", "latin-1"), ("Ça va très bien", "latin-1"), ("Informação técnica", "latin-1"),
    ("«Très» cher – voilà", "cp1252"), ("Łódź", "cp1250"), ("Zażółć gęślą jaźń", "cp1250"),
    ("Ayşe Yılmaz, İstanbul", "cp1254"),
    ("会议纪要", "gbk"), ("请查收附件，谢谢！", "gbk"), ("张伟", "gbk"), ("你好", "gbk"),
    ("안녕하세요", "euc-kr"), ("프린터 문제", "euc-kr"), ("김철수", "euc-kr"),
    ("テスト", "shift_jis"), ("会議のお知らせ", "shift_jis"), ("鈴木一郎", "shift_jis"),
    ("測試郵件", "big5"), ("請查收附件", "big5"),
    ("Привет", "cp1251"), ("Иван Петров", "cp1251"), ("Отчёт за март", "koi8-r"),
])
def test_short_undeclared_strings_are_read_in_their_charset(text: str, charset: str) -> None:
    data = text.encode(charset)
    codec = guess_codec(data)
    assert codec is not None and data.decode(codec) == text


def test_long_greek_text_goes_to_the_statistical_detector() -> None:
    text = ("Καλημέρα σας, ο εκτυπωτής στο γραφείο δεν λειτουργεί από τη Δευτέρα. Μπορείτε να στείλετε "
            "κάποιον να τον δει; Ευχαριστώ πολύ, Γιώργος Παπαδόπουλος")
    data = text.encode("iso-8859-7")
    codec = guess_codec(data)
    assert codec is not None and data.decode(codec) == text


def test_plausibility_prefers_the_reading_a_person_would_write() -> None:
    data = "Drucker im Büro".encode("latin-1")
    assert (plausibility(data.decode("cp1252"), "cp1252") or 0) > (plausibility(data.decode("big5hkscs"),
                                                                                "big5hkscs") or 0)


def test_message_hints_put_the_joint_guess_before_declared_charsets() -> None:
    pieces = ["Réunion".encode("latin-1"), "Hélène".encode("latin-1")]
    assert message_hints(["utf-8", "gb2312"], pieces)[:2] == ("cp1252", "gb18030")
    assert message_hints(["iso-8859-1"], []) == ("cp1252",)


@pytest.mark.timeout(20)
def test_guessing_large_adversarial_bytes_is_bounded() -> None:
    noise = os.urandom(1 << 20)
    assert guess_codec(b"a\xe9" * (1 << 20)) is not None
    guess_codec(noise)  # any answer; it must come back
    m = raw_mail([("Subject", "x\xe9" * 50_000, "latin-1")], body="\u00e9t\u00e9 " * 200_000,
                 body_encoding="latin-1")
    assert m.subject.startswith("xéxé") and m.text.startswith("été été")


def test_large_utf8_is_checked_in_slices_with_the_same_verdict() -> None:
    from mailintake import charsets

    slice_ = charsets._CHECK_SLICE
    text = "a" * (slice_ - 1) + "\u00e9\u4f60" * 1000  # a character split across the first slice's end
    assert charsets._utf8(text.encode()) == text
    assert charsets.decode_bytes(text.encode(), None) == text
    broken = text.encode() + b"\xff tail"
    assert charsets._utf8(broken) is None
    assert charsets.decode_bytes(broken, "utf-8") == broken.decode("utf-8", "replace").replace("\ufffd", "?")
    assert charsets._utf8(b"x" * slice_ + b"\xc3") is None  # cut short at the very end


# ---------------------------------------------------------------- line breaks made "\n" in the bytes

_BREAK_CHARSETS = [None, "utf-8", "iso-8859-1", "windows-1252", "iso-8859-16", "windows-1251", "koi8-r", "gbk",
                   "gb18030", "big5", "shift_jis", "euc-jp", "euc-kr", "utf-16", "iso-2022-jp", "hz-gb-2312",
                   "utf-7", "x-unknown"]


def _text_part(charset: str | None, body: bytes) -> Message:
    head = b"Content-Type: text/plain" + (f"; charset={charset}".encode() if charset else b"")
    return message_from_bytes(head + b"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body)


@settings(max_examples=400, deadline=None)
@given(charset=st.sampled_from(_BREAK_CHARSETS), text=st.text(st.sampled_from(
    "aé€ж你好ソウル한\u0219 \r\n\x00~+"), max_size=60), junk=st.binary(max_size=12), strip=st.booleans(),
    ending=st.sampled_from([b"", b"\r\n", b"\r", b"\x84\x33\r\n", b"\x8f\xa1\r\n", b"\xe2\x82\r\n", b"\x81\r"]))
def test_line_breaks_made_in_the_bytes_read_as_made_in_the_text(charset: str | None, text: str, junk: bytes,
                                                               strip: bool, ending: bytes) -> None:
    # The bytes are the body as sent: the text in its charset (what it cannot hold left out) with stray bytes
    # in it and an ending that may be broken; whether the breaks are made "\n" before decoding or after, the
    # reader sees the same text.
    encoded = text.encode(codec_for(charset) or "utf-8", "ignore")
    body = b"\r\n" + encoded[: len(encoded) // 2] + junk + encoded[len(encoded) // 2:] + ending
    hints = ("gbk",)
    made_in_bytes = _part_text(_text_part(charset, body), [], hints, strip=strip)
    label = _text_part(charset, b"").get_param("charset")
    decoded = decode_bytes(body, label if isinstance(label, str) else None, [], "", hints)
    expected = decoded.strip("\r\n") if strip else decoded
    for old, new in (("\r\n", "\n"), ("\r", "\n"), ("\x00", "")):
        expected = expected.replace(old, new)
    assert made_in_bytes == (expected.strip("\n") if strip else expected)


def test_charsets_whose_line_breaks_are_not_plain_bytes_are_decoded_first() -> None:
    assert breaks_are_bytes("utf-8", b"x") and breaks_are_bytes("big5", b"x")
    assert breaks_are_bytes("gb18030", b"\xc4\xe3 abc\r\n")
    assert not breaks_are_bytes("gb18030", b"\x84\x33\r\n")  # maybe an unfinished sequence at the end
    assert not breaks_are_bytes("utf-16", b"x") and not breaks_are_bytes("iso2022_jp", b"x")
    assert not breaks_are_bytes("hz", b"x") and not breaks_are_bytes("utf-7", b"x")
