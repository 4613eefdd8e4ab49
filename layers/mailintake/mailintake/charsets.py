"""Decoding text bytes: declared charsets, the labels mailers get wrong, and 8-bit text that declares none.

Undeclared 8-bit bytes (raw bytes in a Subject or a sender's name, a body part without ``charset=``) are the
hard case. A short string is ambiguous: "Büro" in Latin-1 is also valid GBK and Big5, "Jörg" is valid
GBK, and two Korean syllables are two valid Chinese characters. A statistical detector that sees only
those few bytes guesses wrong (charset-normalizer reads "Drucker im Büro" as Big5, "B僡o"). So the
decision uses the evidence mail clients and Zammad use:

* **The whole message.** :func:`message_hints` collects the charsets the message declares elsewhere (other
  parts, encoded words in other headers) and guesses *one* charset for all of the message's undeclared
  8-bit bytes together; one client wrote them all, and together they are far less ambiguous than any
  one header alone.
* **Plausibility of each reading** (:func:`plausibility`). For every candidate charset the bytes are
  decoded strictly, and the share of non-ASCII characters that read like real text in that script is
  measured: Latin letters with diacritics sit next to ASCII letters, one or two at a time; CJK text is
  made of the common characters of its national standard (GB2312 level 1, KS X 1001 hangul, JIS X 0208
  kana and kanji, Big5 level 1) and never sits alone inside a Latin word; Cyrillic words are lower case
  or capitalised, not mixed.
* **charset-normalizer** for long text that none of these families reads well (Greek, Hebrew, Arabic,
  Thai, ...), where its statistics are reliable.

Everything here is linear in the input (regular expressions without nested quantifiers, bounded samples)
and never raises.
"""

from __future__ import annotations

import codecs
import logging
import re
import unicodedata
from collections.abc import Iterable, Sequence

import charset_normalizer
from charset_normalizer.constant import FREQUENCIES

log = logging.getLogger(__name__)

# Labels that mailers get wrong in practice, mapped to the codec that decodes what they really send.
# windows-1252 is a superset of the printable ISO-8859-1 range and is what "iso-8859-1" mail usually is
# (HTML5's encoding standard makes the same substitution); likewise for Korean, Chinese and Japanese.
_CHARSET_ALIASES: dict[str, str] = {
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "iso_8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "iso-8859-9": "cp1254",
    "iso-8859-11": "cp874",
    "tis-620": "cp874",
    "windows-874": "cp874",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "ks_c_5601-1989": "cp949",
    "ksc5601": "cp949",
    "euc-kr": "cp949",
    "x-windows-949": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cn-gb": "gb18030",
    "euc-cn": "gb18030",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "x-sjis": "cp932",
    "sjis": "cp932",
    "windows-31j": "cp932",
    "iso-2022-jp": "iso2022_jp_ext",
    "big5": "big5hkscs",
    "x-mac-roman": "mac_roman",
    "macintosh": "mac_roman",
    "utf8": "utf-8",
    "unicode-1-1-utf-7": "utf-7",
    "x-unicode20utf8": "utf-8",
    "ansi_x3.4-1968": "ascii",
}

# Labels that say "we do not know": detect instead of trusting them.
UNKNOWN_CHARSETS = frozenset({"", "unknown-8bit", "x-unknown", "unknown", "x-user-defined", "default",
                              "8bit", "charset", "none", "us-ascii", "ascii"})


def codec_for(label: str | None) -> str | None:
    """Return a Python codec name for a MIME charset label, or None when it is unknown / unusable."""
    if not label:
        return None
    name = label.strip().strip("\"'").lower()
    name = _CHARSET_ALIASES.get(name, name)
    if name in UNKNOWN_CHARSETS:
        return None
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    # Refuse non-text codecs ("base64", "zip", ...) that codecs.lookup would happily return.
    if not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


# --------------------------------------------------------------------------------------------------------
# Plausibility of a reading

# Candidates for undeclared 8-bit text, in the order that breaks ties: the Western charset first (by far
# the most common undeclared one in mail), then the CJK double-byte charsets, then Cyrillic.
_CANDIDATES = ("cp1252", "cp1250", "cp1254", "gb18030", "cp949", "cp932", "big5hkscs", "cp1251", "koi8-r",
               "cp1253", "iso8859-7")
_FAMILY = {"cp1252": "latin", "cp1250": "latin", "cp1254": "latin", "iso8859-15": "latin", "iso8859-1": "latin",
           "gb18030": "cjk", "gbk": "cjk", "gb2312": "cjk", "cp949": "cjk", "euc_kr": "cjk",
           "cp932": "cjk", "shift_jis": "cjk", "euc_jp": "cjk", "big5hkscs": "cjk", "big5": "cjk",
           "cp1251": "cyrillic", "koi8-r": "cyrillic", "koi8-u": "cyrillic", "iso8859-5": "cyrillic",
           "cp1253": "greek", "iso8859-7": "greek"}
# The national standard whose characters count as common text for each CJK codec.
_CJK_COMMON = {"gb18030": "gb2312", "gbk": "gb2312", "gb2312": "gb2312", "cp949": "euc_kr", "euc_kr": "euc_kr",
               "cp932": "shift_jis", "shift_jis": "shift_jis", "euc_jp": "shift_jis",
               "big5hkscs": "big5", "big5": "big5"}

_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")
# Letters of the cased non-Latin scripts judged here: a word is written in lower case or capitalised; all
# capitals count for less (abbreviations are short, and two CJK characters read as cp1251 often come out
# as four capitals); "пРИВЕТ" (KOI8-R read as cp1251) or "КблзмЭсб" (Greek read as cp1251) not at all.
_SCRIPT_LETTERS = {
    "cyrillic": (re.compile(r"[\u0400-\u04ff]+"), re.compile(r"[\u0400-\u042f]?[\u0430-\u045f]+"),
                 re.compile(r"[\u0400-\u042f]+"), re.compile(r"[\u0400-\u042f][\u0430-\u045f]")),
    "greek": (re.compile(r"[\u0386-\u03ce]+"), re.compile(r"[\u0386-\u03ab]?[\u03ac-\u03ce]+"),
              re.compile(r"[\u0386-\u03ab]+"), re.compile(r"[\u0386-\u03ab][\u03ac-\u03ce]")),
}
# Greek letters that are how the most frequent Russian letters (а, р) read in windows-1253.
_RARE_GREEK = frozenset("ΰΐ")
# Punctuation of Western text: typographic quotes and dashes, ellipsis, bullets, ...
_LATIN_PUNCTUATION = frozenset("\u00a0«»‘’‚‛“”„‹›–—…•·§©®™¡¿№")
# ...the few that may sit between two letters ("don’t", "e–mail", "Mont·real")...
_INWORD_PUNCTUATION = frozenset("’‘–—·")
# Letters only Icelandic and Faroese write: in mail they are far more often Turkish ğ ı ş (windows-1254)
# read as windows-1252.
_RARE_LETTERS = dict.fromkeys("ÐðÞþÝý", 0.8)
# ...and signs that go with numbers, never touching a letter ("20 €", "£5", "30°").
_NUMBER_SIGNS = frozenset("€£¥¢°±")
# The most frequent characters of Chinese and Korean text (charset-normalizer's language tables): they
# tip the balance between a GB2312 and an EUC-KR reading of the same bytes, which both decode cleanly.
_FREQUENT = {"gb2312": frozenset(FREQUENCIES.get("Chinese", ())), "euc_kr": frozenset(FREQUENCIES.get("Korean", ()))}
_SAMPLE_CHARS = 8192
_HIGH_BYTE = re.compile(rb"[\x80-\xff]")
_HIGH_BYTES = bytes(range(0x80, 0x100))


def _is_latin_letter(ch: str) -> bool:
    # Letters of Latin-1 Supplement and Latin Extended-A/B (é, ß, ł, č, ő, ...), not other scripts; not
    # "ƒ", which no language writes but Shift_JIS katakana read as windows-1252 is full of.
    return "\u00c0" <= ch < "\u0250" and ch not in "×÷ƒ" and unicodedata.category(ch).startswith("L")


def _ascii_letter(ch: str) -> bool:
    return ch.isascii() and ch.isalpha()


def _latin_run(run: str, before: str, after: str) -> float:
    # Accented letters come one to three at a time inside words of ASCII letters ("Büro", "ação",
    # "żółć"); longer runs, or two or more standing alone, are how CJK bytes read as Latin-1.
    letters_fit = len(run) <= 3 and (len(run) == 1 or _ascii_letter(before) or _ascii_letter(after))
    score = 0.0
    for i, ch in enumerate(run):
        prev = run[i - 1] if i else before
        nxt = run[i + 1] if i + 1 < len(run) else after
        sandwiched = prev.isalpha() and nxt.isalpha()
        if _is_latin_letter(ch):
            # An upper-case letter right after a lower-case one ("jaŸñ", "dŸ") is a misread too.
            if letters_fit and not (ch.isupper() and prev.isalpha() and prev.islower()):
                score += _RARE_LETTERS.get(ch, 1.0)
        elif ch in _NUMBER_SIGNS:
            score += 0 if prev.isalpha() or nxt.isalpha() else 1
        elif ch in _LATIN_PUNCTUATION:
            score += 1 if not sandwiched or ch in _INWORD_PUNCTUATION else 0
        elif unicodedata.category(ch)[0] in "NS" and not sandwiched:
            score += 0.5  # "m²", "½": possible, but "bia³y" is Polish read in the wrong charset
    return score


def _cased_run(run: str, before: str, after: str, family: str) -> float:
    letters, word_shape, capitals, _ = _SCRIPT_LETTERS[family]
    score = 0.0
    for word in letters.finditer(run):
        prev = run[word.start() - 1] if word.start() else before
        nxt = run[word.end()] if word.end() < len(run) else after
        if _ascii_letter(prev) or _ascii_letter(nxt):
            continue  # "Bьro": a Cyrillic letter inside a Latin word is a Latin-1 letter misread
        rare = sum(ch in _RARE_GREEK for ch in word.group())
        if word_shape.fullmatch(word.group()):
            score += len(word.group()) - 0.7 * rare
        elif capitals.fullmatch(word.group()):
            score += 0.5 * len(word.group())
    rest = letters.sub("", run)
    score += sum(1 for ch in rest if ch in _LATIN_PUNCTUATION or ch in _INWORD_PUNCTUATION)
    return score


def _cjk_char(ch: str, codec: str) -> float:
    """How plausible one non-ASCII character is as text in the given CJK codec's language."""
    o = ord(ch)
    if 0x3000 <= o <= 0x303F or 0xFF01 <= o <= 0xFF5E:
        return 1.0  # CJK punctuation and full-width forms: every CJK language writes them
    common = _CJK_COMMON[codec]
    try:
        encoded = ch.encode(common)
    except UnicodeEncodeError:
        encoded = b""
    in_standard = len(encoded) == 2
    lead = encoded[0] if in_standard else 0
    ideograph = 0x4E00 <= o <= 0x9FFF
    if common == "gb2312":
        # Level 1 (leads B0-D7) holds the 3,755 common hanzi, level 2 the rarer ones. Level 1 ranks a
        # little below KS X 1001 hangul: Korean text read as GB2312 lands in level 1 too (hangul leads
        # are B0-C8), while Chinese text seldom stays in that range, so on a tie the Korean reading is the
        # likelier; the most frequent hanzi count in full.
        if ideograph and in_standard:
            if ch in _FREQUENT["gb2312"]:
                return 1.0
            return 0.9 if lead < 0xD8 else 0.5
        return 0.1 if ideograph else 0.0
    if common == "euc_kr":
        if 0xAC00 <= o <= 0xD7A3:
            if not in_standard:
                return 0.1  # UHC's extra syllables, beyond the 2,350 of KS X 1001
            return 1.0 if ch in _FREQUENT["euc_kr"] else 0.92
        return 0.5 if ideograph and in_standard else 0.0  # hanja are rare in Korean mail
    if common == "shift_jis":
        if 0x3041 <= o <= 0x30FF:
            return 1.0  # hiragana and katakana
        if ideograph:
            if in_standard:
                return 1.0 if lead < 0x99 else 0.5  # JIS level 1 / level 2 kanji
            return 0.3  # NEC/IBM extensions
        return 0.1 if 0xFF61 <= o <= 0xFF9F else 0.0  # half-width katakana: what GBK bytes read as
    # Big5: level 1 (leads A4-C6) holds the common hanzi. It ranks below GB2312 and KS X 1001, whose
    # bytes are mostly valid Big5 level 1 as well; real Big5 text reads badly in both of those (its
    # frequent characters have leads A4-AF, GB2312's kana and Greek rows, or trail bytes below A1).
    if ideograph and in_standard:
        return 0.85 if lead <= 0xC6 else 0.45
    return 0.1 if ideograph else 0.0


def _cjk_run(run: str, before: str, after: str, codec: str) -> float:
    if len(run) == 1 and _ascii_letter(before) and _ascii_letter(after):
        return 0.0  # "B僡o": a lone ideograph inside a Latin word is a Latin-1 letter misread
    return sum(_cjk_char(ch, codec) for ch in run)


def plausibility(text: str, codec: str) -> float | None:
    """Share (0..1) of the non-ASCII characters of ``text`` that read as real text in ``codec``'s script;
    None for a codec whose script is not judged here, 1.0 for ASCII-only text."""
    try:
        codec = codecs.lookup(codec).name
    except LookupError:
        return None
    family = _FAMILY.get(codec)
    if family is None:
        return None
    total = score = 0.0
    for run in _NON_ASCII_RUN.finditer(text[:_SAMPLE_CHARS]):
        start, end = run.span()
        before = text[start - 1] if start else " "
        after = text[end] if end < len(text) else " "
        total += end - start
        if family == "latin":
            score += _latin_run(run.group(), before, after)
        elif family in _SCRIPT_LETTERS:
            score += _cased_run(run.group(), before, after, family)
        else:
            score += _cjk_run(run.group(), before, after, codec)
    return score / total if total else 1.0


# --------------------------------------------------------------------------------------------------------
# Guessing

_CONFIDENT = 0.75  # a Latin or CJK reading this plausible is taken without asking the statistical detector
_HINT_ENOUGH = 0.5  # a charset the message declares elsewhere is taken when it reads at least this well
_DETECTOR_MIN_BYTES = 100  # below this many non-ASCII bytes charset-normalizer's statistics mislead
_DETECTOR_MAX_BYTES = 200_000


def _sample(data: bytes) -> bytes:
    """A bounded piece of ``data`` around its first non-ASCII byte, cut where no character can be split."""
    if len(data) <= 4 * _SAMPLE_CHARS:
        return data
    high = _HIGH_BYTE.search(data)
    first = high.start() if high else 0
    start = max(data.rfind(b"\n", 0, first), data.rfind(b" ", 0, first), -1) + 1
    end = start + 4 * _SAMPLE_CHARS
    # Cut after ASCII white space: no multi-byte sequence of these charsets contains it.
    cut = max(data.rfind(b"\n", start, end), data.rfind(b" ", start, end))
    return data[start:cut if cut > start else end]


def _strict(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def guess_codec(data: bytes, hints: Sequence[str] = ()) -> str | None:
    """The codec that best reads undeclared 8-bit ``data``: UTF-8 when valid, a hinted charset (declared
    elsewhere in the same message) when it reads plausibly, else the most plausible candidate, with
    charset-normalizer's verdict for long text no candidate reads well. None for ASCII."""
    if data.isascii():
        return None
    sample = _sample(data)
    if _strict(sample, "utf-8") is not None:
        return "utf-8"
    for hint in hints:
        text = _strict(sample, hint)
        if text is None:
            continue
        score = plausibility(text, hint)
        if score is None or score >= _HINT_ENOUGH:
            return hint
    best, best_score = None, -1.0
    for codec in _CANDIDATES:
        text = _strict(sample, codec)
        if text is None:
            continue
        score = plausibility(text, codec) or 0.0
        if score > best_score:
            best, best_score = codec, score
    if best is not None and best_score >= _CONFIDENT:
        family = _FAMILY[best]
        if family not in _SCRIPT_LETTERS:
            return best
        # A cased script read with no capitalised word at all is more likely a caseless one (Hebrew,
        # Arabic) read in the wrong charset; the statistical detector judges those.
        text = _strict(sample, best) or ""
        if best_score >= 0.9 and _SCRIPT_LETTERS[family][3].search(text):
            return best
    high_bytes = len(sample) - len(sample.translate(None, delete=bytes(range(0x80, 0x100))))
    if high_bytes >= _DETECTOR_MIN_BYTES:
        found = charset_normalizer.from_bytes(data[:_DETECTOR_MAX_BYTES]).best()
        if found is not None and _strict(sample, found.encoding) is not None:
            return str(found.encoding)
    return best


def message_hints(declared: Iterable[str | None], undeclared: Iterable[bytes]) -> tuple[str, ...]:
    """Charsets to try first for a message's undeclared 8-bit text, best first.

    ``declared``: the charset labels the message states anywhere (parts, encoded words); ``undeclared``:
    every piece of 8-bit text it does not label (raw header bytes, bodies without a charset). One guess
    over all the undeclared pieces together comes first, then the declared charsets.
    """
    hints: list[str] = []
    for label in declared:
        codec = codec_for(label)
        if codec and codec not in ("utf-8", "ascii") and codec not in hints:
            hints.append(codec)
    pieces, size = [], 0
    for piece in undeclared:
        if size >= _DETECTOR_MAX_BYTES:
            break
        if not piece.isascii():
            pieces.append(piece[: _DETECTOR_MAX_BYTES - size])
            size += len(pieces[-1])
    if pieces:
        joined = b"\n".join(pieces)
        guessed = guess_codec(joined, hints) if _strict(joined, "utf-8") is None else None
        if guessed and guessed != "utf-8":
            hints = [guessed, *(h for h in hints if h != guessed)]
    return tuple(hints)


# --------------------------------------------------------------------------------------------------------
# Decoding


_CHECK_SLICE = 1 << 20


def _utf8_valid(data: bytes) -> bool:
    """Whether ``data`` is UTF-8, checked a slice at a time: a failed decode of the whole costs a buffer for
    all of it, and its error holds a copy of the data (80 MB for a 25 MB body)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for start in range(0, len(data), _CHECK_SLICE):
            decoder.decode(data[start:start + _CHECK_SLICE])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _utf8(data: bytes) -> str | None:
    """``data`` decoded as UTF-8, None when it is not valid UTF-8 (large data checked first, see
    ``_utf8_valid``)."""
    if len(data) > _CHECK_SLICE and not _utf8_valid(data):
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _guess(data: bytes, hints: Sequence[str]) -> str | None:
    try:
        return guess_codec(data, hints)
    except Exception:  # a heuristic must never break parsing
        log.warning("charset guess failed", exc_info=True)
        return None


def _detect(data: bytes, hints: Sequence[str]) -> str:
    """Decode bytes whose charset is unknown; never raises."""
    text = _utf8(data)
    if text is not None:
        return text
    codec = _guess(data, hints)
    if codec is not None:
        text = _strict(data, codec)
        if text is not None:
            return text
        return data.decode(codec, errors="replace")
    return data.decode("cp1252", errors="replace")


def reading_codec(data: bytes, charset: str | None, hints: Sequence[str] = ()) -> str:
    """The codec :func:`decode_bytes` reads ``data`` with, before any fallback for bytes it cannot read."""
    codec = codec_for(charset)
    if codec is not None:
        return codec
    if data.isascii():
        return "ascii"
    if _utf8_valid(data):
        return "utf-8"
    return _guess(data, hints) or "cp1252"


def _waits_for_more(codec: str) -> bool:
    """Whether ``codec`` reads characters of more than one byte: a high byte alone is held back."""
    decoder = codecs.getincrementaldecoder(codec)("replace")
    for byte in range(0x80, 0x100):
        if decoder.decode(bytes([byte])) == "":
            return True
        decoder.reset()
    return False


def breaks_are_bytes(codec: str, data: bytes) -> bool:
    """Whether line breaks in ``data``, read with ``codec`` (see :func:`reading_codec`), can be made "\\n"
    in the bytes before decoding, with the same text as a result: a large text is then not copied twice more
    as a string (a 25 MB text of two-byte characters is 51 MB a copy).

    True of the ASCII-compatible charsets whose multi-byte sequences never use CR or LF bytes (UTF-8, the
    ISO-8859 and Windows families, GB18030, Big5, Shift_JIS, EUC); not of UTF-16/32, UTF-7, the ISO-2022
    family or HZ (a line break may end their shift state; in HZ "~" before one continues the line), nor of
    a BOM's UTF-8. The East Asian decoders read an unfinished sequence at the end of their input as one
    broken character and before a line break as several: for them only when the bytes before the last line
    breaks are ASCII (no sequence is longer than four bytes). UTF-8's decoder replaces the longest broken
    prefix with one character either way.
    """
    try:
        name = codecs.lookup(codec).name
        if "a\r\n".encode(name) != b"a\r\n":
            return False
    except (UnicodeError, LookupError):
        return False
    if name.startswith("iso2022") or name in ("hz", "utf-7", "utf-8-sig"):  # UTF-7: a CR in base64, too
        return False
    if name != "utf-8" and _waits_for_more(name):
        end = len(data)
        while end and data[end - 1] in b"\r\n":
            end -= 1
        return data[max(end - 3, 0):end].isascii()
    return True


def mostly_latin(data: bytes) -> bool:
    """Lone high bytes between ASCII letters, and no UTF-8 sequences: a Western 8-bit charset."""
    return bool(re.search(rb"[a-zA-Z][\x80-\xff][a-zA-Z]", data)) and not re.search(
        rb"[\xc2-\xf4][\x80-\xbf]", data)


def decode_bytes(data: bytes, charset: str | None, defects: list[str] | None = None, where: str = "",
                 hints: Sequence[str] = ()) -> str:
    """Decode text bytes labelled with ``charset``, falling back sensibly; never raises.

    ``hints`` are the message's charsets (see :func:`message_hints`), used when ``charset`` is missing or
    unknown.
    """
    codec = codec_for(charset)
    if codec is None:
        if charset and charset.strip().lower() not in UNKNOWN_CHARSETS and defects is not None:
            defects.append(f"{where}unknown charset {charset!r}")
        if data.isascii():
            return data.decode("ascii")
        return _detect(data, hints)
    if codec == "utf-8":
        text = _utf8(data)
        if text is not None:
            return text
    else:
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            pass
    # cp1252 leaves five bytes undefined; real "iso-8859-1" mail containing them is plain Latin-1.
    if codec == "cp1252":
        return data.decode("latin-1")
    if codec in ("utf-8", "ascii"):
        # Mislabelled: a Western 8-bit text sent as UTF-8 is more common than broken UTF-8, but keep
        # the UTF-8 reading when most of the text is valid UTF-8 (a few bad bytes in a good text).
        lossy = data.decode("utf-8", errors="replace")
        high = len(data) - len(data.translate(None, delete=_HIGH_BYTES))  # no list of them: data may be 25 MB
        if lossy.count("\ufffd") * 20 > high and mostly_latin(data):
            return data.decode("cp1252", errors="replace")
        if defects is not None:
            defects.append(f"{where}invalid {charset} bytes replaced")
        # '?' rather than U+FFFD for the broken bytes: what Redmine and most trackers show, and plain
        # to readers; the defect above records that bytes were replaced.
        return lossy if b"\xef\xbf\xbd" in data else lossy.replace("\ufffd", "?")
    if codec == "iso2022_jp_ext":
        return _decode_iso2022jp_ms(data)
    if defects is not None:
        defects.append(f"{where}invalid {charset} bytes replaced")
    return data.decode(codec, errors="replace")


_ISO2022_ESC = re.compile(rb"\x1b(\$[@B]|\$\(D|\([BJHI])")


def _decode_iso2022jp_ms(data: bytes) -> str:
    """ISO-2022-JP as Japanese mailers really send it (CP50221 / ISO-2022-JP-MS).

    Windows and Japanese phones put NEC and IBM extension characters (circled digits, Roman numerals,
    ...) into JIS X 0208 sequences; Python's ISO-2022-JP codecs reject them. Each JIS segment is
    shifted to Shift_JIS and decoded as CP932, which holds those extensions.
    """
    out: list[str] = []
    mode = b"(B"
    pos = 0
    for m in [*_ISO2022_ESC.finditer(data), None]:
        end = m.start() if m is not None else len(data)
        chunk = data[pos:end]
        if mode in (b"$B", b"$@", b"$(D"):
            sjis = bytearray()
            for i in range(0, len(chunk) - 1, 2):
                j1, j2 = chunk[i], chunk[i + 1]
                if not (0x21 <= j1 <= 0x7E and 0x21 <= j2 <= 0x7E):
                    sjis += b"?"
                    continue
                s1 = (j1 + 1) // 2 + (0x70 if j1 <= 0x5E else 0xB0)
                s2 = j2 + (0x1F if j1 % 2 else 0x7E)
                if j1 % 2 and s2 >= 0x7F:
                    s2 += 1
                sjis += bytes((s1, s2))
            out.append(bytes(sjis).decode("cp932", errors="replace"))
        elif mode == b"(I":  # JIS X 0201 half-width katakana
            out.append(bytes(b + 0x80 if 0x21 <= b <= 0x5F else b for b in chunk).decode("cp932", "replace"))
        else:
            out.append(chunk.decode("ascii", errors="replace"))
        if m is not None:
            mode = m.group(1)
            pos = m.end()
    return "".join(out)
