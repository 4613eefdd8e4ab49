"""Cutting quoted history and signatures from a reply, so a comment holds only what the sender wrote.

Two stages:

* :func:`cut_html_quotes` removes what mail clients mark as history in HTML, before the HTML becomes text:
  Gmail's ``div.gmail_quote`` (its attribution and quote), Apple Mail's and Thunderbird's ``blockquote
  type=cite`` and ``moz-cite-prefix``, Outlook's ``divRplyFwdMsg`` block and the bordered divider with a
  From/Sent/To block under it (Outlook and Windows Mail, in any language), and what follows those.
  A ``blockquote class=gmail_quote`` that no attribution introduces is what Gmail's "Quote" button makes:
  content, kept (as a plain block, so the text stage does not take it for history either); of other
  blockquotes only the last is history. A quote container that begins with a forwarded-message marker is
  content too, and a mail that is all quote is left whole.
* :func:`cut_reply` works on plain text, line by line. Each line is classed as empty, quoted (``>``),
  *splitter* (an attribution such as "On <date>, X wrote:", a From/Sent/To header block, an
  "Original Message" line, a tracker's "reply above this line"), forward marker, or text. The reply is then
  decided on that sequence: text above the first splitter is the reply (top-posting); a quote and then
  text is bottom-posting; quotes interleaved with text are an inline reply and stay; text below a quote
  stays; a trailing quote block goes; a forward marker that comes before any history keeps the forwarded
  message, since forwarding it was the point. Signatures ("-- ", "Sent from my ...") and mailing-list
  footers below a line of underscores end the sender's text before that decision.

The evidence for an attribution is generic, not one pattern per client: a line (or up to five lines, when
a long name and address wrapped; or the end of a line that begins with the reply) that ends with a colon
and either contains a "wrote" verb (in any of the languages below) with a date, an address or an
"On"-type opening, or, in any language at all, contains an address or a date and time and is followed by
quoted lines; without the colon, only a line that opens like one and holds an address, right above the
quote. A header block is two or more "Key: value" lines with a From or Date/Sent key and enough of the
rest, whose names come from the header tables below (Outlook's, Apple Mail's and Gmail's labels in some
twenty languages).

The work is linear in the size of the mail: whole-text scans anchored at line starts pick the candidate
lines, each candidate is judged on a window of at most five lines of bounded length, no expression nests
quantifiers, and at most ``_BUDGET`` candidates of each kind are judged per mail.
"""

from __future__ import annotations

import bisect
import html
import itertools
import logging
import re
from dataclasses import dataclass
from html.parser import HTMLParser

log = logging.getLogger(__name__)

_MAX_LINE = 400  # longer lines are prose: no attribution, header or separator is this long
_MAX_WINDOW_LINES = 6  # an attribution wrapped over lines (Polymail splits one over five)

# --------------------------------------------------------------------------------------------------------
# Vocabulary

# How attributions open, before the date: "On", "Am", "Le", "El", "Il", "Op", "Em", "Den", "Dne", ...
_LEADS = ("on", "am", "le", "el", "il", "il giorno", "op", "em", "den", "dne", "dnia", "w dniu", "på",
          "pe", "vào", "στις", "dana", "dňa", "el día")
# "wrote" in the languages mail clients write attributions in (lower case). Each is matched as a word.
_VERBS = (
    "wrote", "writes", "written", "schrieb", "schreibt", "geschrieben", "a écrit", "écrit", "geschreven",
    "escribió", "escribio", "escrito", "escreveu", "scritto", "scrisse", "schreef",
    "skrev", "skrifaði", "napsal", "napsala", "napsal(a)", "napísal", "napísala", "napísal(a)", "napisał",
    "napisała", "napisał(a)", "pisze", "написал", "написала", "написал(а)", "пишет", "написав", "написала",
    "пише", "написа", "kirjoitti", "írta", "ezt írta", "yazdı", "şunu yazdı", "έγραψε", "a scris",
    "rašė", "rakstīja", "kirjutas", "napisao", "napisala", "je napisal", "je napisala", "menulis",
    "đã viết", "写道", "寫道", "님이 작성", "작성", "さんは書きました", "のメッセージ",
)
# Header labels of quoted header blocks, by role, in the languages Outlook, Apple Mail, Gmail and
# Thunderbird write them (mail-parser-reply's thirteen languages and more).
_FROM_KEYS = frozenset({
    "from", "von", "de", "da", "van", "od", "från", "fra", "lähettäjä", "feladó", "от", "від", "kimden",
    "από", "de la", "差出人", "发件人", "寄件者", "寄件人", "보낸 사람", "보낸사람", "afzender", "avsändare",
    "odesílatel", "nadawca", "remetente", "mittente", "expéditeur", "remitente", "absender", "sender",
})
_DATE_KEYS = frozenset({
    "sent", "date", "gesendet", "datum", "envoyé", "envoyé le", "enviado", "enviada", "fecha", "inviato",
    "data", "verzonden", "wysłano", "wysłane", "skickat", "sendt", "dato", "lähetetty", "päivämäärä",
    "odesláno", "odoslané", "dátum", "elküldve", "отправлено", "дата", "надіслано", "gönderildi", "tarih",
    "στάλθηκε", "ημερομηνία", "trimis", "送信日時", "日付", "发送时间", "日期", "寄件日期", "傳送時間",
    "보낸 날짜", "날짜", "gesendet am", "sent date",
})
_OTHER_KEYS = frozenset({
    "to", "cc", "bcc", "subject", "reply-to", "an", "kopie", "cc/bcc", "betreff", "à", "a", "objet",
    "para", "asunto", "oggetto", "aan", "onderwerp", "do", "dw", "temat", "till", "kopia", "ämne", "til",
    "kopi", "emne", "vastaanottaja", "kopio", "aihe", "komu", "předmět", "predmet", "kópia", "címzett",
    "másolat", "tárgy", "кому", "копия", "тема", "копія", "kime", "bilgi", "konu", "προς", "κοιν",
    "θέμα", "către", "subiect", "宛先", "件名", "收件人", "抄送", "主题", "收件者", "副本", "主旨",
    "받는 사람", "받는사람", "참조", "제목", "assunto", "organization", "organisation", "sujet", "pour",
})

_ORIGINAL_PHRASES = (
    "original message", "reply message", "ursprüngliche nachricht", "originalnachricht", "antwort nachricht",
    "message d'origine",
    "message d’origine", "mensaje original", "messaggio originale", "oorspronkelijk bericht",
    "oprindelig meddelelse", "opprinnelig melding", "originalmeddelande", "ursprungligt meddelande",
    "alkuperäinen viesti", "původní zpráva", "pôvodná správa", "oryginalna wiadomość",
    "wiadomość oryginalna", "eredeti üzenet", "исходное сообщение", "оригинальное сообщение",
    "вихідне повідомлення", "mensagem original", "αρχικό μήνυμα", "orijinal ileti", "orijinal mesaj",
    "mesaj original", "原始邮件", "原始郵件", "元のメッセージ", "원본 메시지", "original appointment",
)
_FORWARD_PHRASES = (
    "forwarded message", "forwarded e-mail", "forwarded email", "weitergeleitete nachricht",
    "weitergeleitete e-mail", "message transféré", "e-mail transféré", "mensaje reenviado",
    "correo reenviado", "messaggio inoltrato", "doorgestuurd bericht", "videresendt meddelelse",
    "videresendt melding", "vidarebefordrat meddelande", "vidarebefordrat mejl", "välitetty viesti",
    "přeposlaná zpráva", "preposlaná správa", "przekazana wiadomość", "wiadomość przekazana",
    "továbbított üzenet", "пересылаемое сообщение", "пересланное сообщение", "переслане повідомлення",
    "mensagem encaminhada", "προωθημένο μήνυμα", "iletilen ileti", "mesaj redirecționat",
    "转发的邮件", "轉寄的郵件", "転送されたメッセージ", "전달된 메시지", "forwarded",
)
# Apple Mail's (and iOS's) forward opening line, "Begin forwarded message:", per language.
_FORWARD_BEGIN = (
    "begin forwarded message", "anfang der weitergeleiteten nachricht", "début du message réexpédié",
    "début du message transféré", "inicio del mensaje reenviado", "inizio messaggio inoltrato",
    "begin doorgestuurd bericht", "início da mensagem reencaminhada", "início da mensagem encaminhada",
    "videresendt besked", "vidarebefordrat brev", "välitetty viesti alkaa", "začátek přeposlané zprávy",
    "początek przekazywanej wiadomości", "начало переадресованного сообщения", "転送されたメッセージ",
    "转发的邮件", "전달된 메시지",
)


def _is_cjk(ch: str) -> bool:
    return "\u3040" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7a3"


# Vocabulary is looked up word by word in sets, not matched by alternations of dozens of words: those cost
# milliseconds to compile at every cold start, and are slower to search too.
_WORD = re.compile(r"[^\W\d_]+(?:\([^\W\d_]{1,2}\))?")  # "wrote", "napisał(a)", "écrit"
_VERB_WORDS = frozenset(v for v in _VERBS if " " not in v and not _is_cjk(v[0]))
_VERB_PAIRS = frozenset(v for v in _VERBS if v.count(" ") == 1)
_VERB_CJK = tuple(v for v in _VERBS if _is_cjk(v[0]))  # no spaces between words in these scripts
_LEAD_WORDS = frozenset(w for w in _LEADS if " " not in w)
_LEAD_PAIRS = frozenset(w for w in _LEADS if " " in w)


def _has_verb(text: str) -> bool:
    """Whether text (lower case) holds a "wrote" word, as a word ("rewrote" does not count)."""
    words = _WORD.findall(text)
    if any(w in _VERB_WORDS for w in words):
        return True
    if any(f"{a} {b}" in _VERB_PAIRS for a, b in itertools.pairwise(words)):
        return True
    return any(v in text for v in _VERB_CJK)


def _opens_with_lead(text: str) -> bool:
    """Whether text starts with an attribution's opening word ("On", "Am", "Le", "W dniu", ...)."""
    head = text[:24].lower().split(maxsplit=2)
    if len(head) < 2:
        return False  # the opening word is followed by the date
    return head[0] in _LEAD_WORDS or f"{head[0]} {head[1]}" in _LEAD_PAIRS


_FRAME = "-=_*:： \t"  # what frames "-----Original Message-----" and "---------- Forwarded message ---------"


def _framed_phrase(line: str) -> str | None:
    """The lower-cased phrase of a line framed by dashes ("-----Original Message-----"), or None.

    Looked up in a set rather than matched by an alternation: compiling those (non-ASCII) alternations
    cost milliseconds of every cold start."""
    if len(line) > 120 or line[:2].strip("-=_*") or line[-2:].strip(_FRAME):
        return None
    return " ".join(line.strip(_FRAME).lower().split())


def _is_original(line: str) -> bool:
    return _framed_phrase(line) in _ORIGINAL_SET


def _is_forward(line: str) -> bool:
    """"---------- Forwarded message ---------" and its kind, or Apple's "Begin forwarded message:"."""
    if _framed_phrase(line) in _FORWARD_SET:
        return True
    return line[-1:] in (":", "：") and " ".join(line.rstrip(":： \t").lower().split()) in _FORWARD_BEGIN_SET


_ORIGINAL_SET = frozenset(_ORIGINAL_PHRASES)
_FORWARD_SET = frozenset(_FORWARD_PHRASES)
_FORWARD_BEGIN_SET = frozenset(_FORWARD_BEGIN)
# "Key: value" at the start of a line, "*From:*" and "De :" included; the key is checked against the tables.
_HEADER_LINE = re.compile(r"[*_]{0,2}[ \t]*([^\W\d_][^:：\n]{0,24}?)[ \t]*[*_]{0,2}[ \t]*[:：][ \t]*[*_]{0,2}")
_EMAIL = re.compile(r"[\w.+-]@[\w-]{1,63}\.[\w.-]{2,}")
# A time ("10:00", "10.00"), a date ("02.04.2012", "2014-10-17", "1/3/11"), a year, or a CJK date ("2024年").
# Every alternative starts with a digit, so the scan skips everything else quickly.
_DATE_OR_TIME = re.compile(r"\d(?:\d?[:.]\d{2}(?!\d)|\d{0,3}[./-]\d{1,2}[./-]\d{1,4}|\d{3}(?!\d)"
                           r"|\d{0,3}\s?[年년月월日일])")
_TIME = re.compile(r"\d(?:\d?[:.]\d{2}(?!\d)|\d?\s?[時시])")
_ENDS_WITH_COLON = re.compile(r"[:：][ \t]*$")
_SEPARATOR_LINE = re.compile(r"(?:[-_=*•~][ \t]*){3,}")  # "-----", "_____", "* * *" (html2text's <hr>)

# "--- Reply above this line ---" (Redmine's emails_header, Zendesk, Help Scout, GitHub, ...), matched
# against the lower-cased line.
_DELIMITER = re.compile(
    r"[-=#_*]{0,10}[ \t]*"
    r"(?:(?:please\s+)?(?:type|write|reply|respond|add\s+your\s+reply)\b[^\n]{0,40}?\babove\b[^\n]{0,40}"
    r"|[^\n]{0,40}?\bdo\s+not\s+(?:write|reply|type)\s+below\b[^\n]{0,40}"
    r"|bitte\s+oberhalb\s+dieser\s+zeile\s+antworten[^\n]{0,20}"
    r"|répondez\s+au-dessus\s+de\s+cette\s+ligne[^\n]{0,20})",
)
_QUOTE_PREFIX = re.compile(r"(?:>[ \t]*)+")

_SIGNATURE = re.compile(r"^(?:-- ?|--|__)[ \t]*$", re.MULTILINE)
_SIGNATURE_LINE = re.compile(r"^[ \t]*+(?:--|__)[ \t]*+$", re.MULTILINE)
# "Sent from my iPhone" and its kind, as phones and apps write them, lower case; the line is short.
_SENT_FROM = (
    "sent from my ", "sent from mail for ", "sent from outlook for ", "get outlook for ", "sent from samsung ",
    "sent from yahoo mail", "von meinem ", "gesendet von meinem ", "envoyé de mon ", "envoyé depuis mon ",
    "enviado desde mi ", "inviato da mio ", "inviato dal mio ", "verzonden vanaf mijn ", "verzonden met mijn ",
    "skickat från min ", "sendt fra min ", "wysłane z ", "odesláno z ", "отправлено с ", "enviado do meu ",
)


def _is_sent_from(line: str) -> bool:
    """A phone's or app's line: the prefix and a short name ("Sent from my Verizon Wireless BlackBerry"),
    not a sentence ("Sent from my desk, is much easier then my mobile phone.")."""
    low = line.strip().lower()
    prefix = next((p for p in _SENT_FROM if low.startswith(p)), None)
    return prefix is not None and 0 < len(low) - len(prefix) <= 40 and ", " not in low


# A mailing-list footer: a line of underscores, then a few short lines to the end (Mailman's is three).
_FOOTER_RULE = re.compile(r"[ \t]*_{5,}[ \t]*")
_FOOTER_MAX_LINES = 8

# Subject prefixes of a forwarded mail (Fwd, Fw, German WG, French TR, Spanish RV, Dutch Doorst, ...).
_FORWARD_PREFIXES = frozenset({"fwd", "fw", "wg", "tr", "rv", "enc", "doorst", "vb", "vl", "pd", "ilt", "i̇lt",
                               "пересл", "转发", "轉寄", "転送", "전달"})


def is_forward_subject(subject: str) -> bool:
    """Whether a subject says the mail forwards another ("Fwd: ...", "WG: ...", "TR: ...", "RV: ...")."""
    head = subject[:200].strip()
    if head.startswith("[") and "]" in head[:42]:
        head = head[head.index("]") + 1:].lstrip()  # "[list] Fwd: ..."
    colon = min((i for i in (head.find(":"), head.find("：")) if i > 0), default=-1)
    return colon > 0 and head[:colon].strip().lower() in _FORWARD_PREFIXES


def is_forward_marker(line: str) -> bool:
    """A forwarded-message marker line ("---------- Forwarded message ---------", "Begin forwarded message:",
    "-------- Weitergeleitete Nachricht --------"), stripped of surrounding blanks; for mailintake.forwards."""
    return _is_forward(line)


def is_original_marker(line: str) -> bool:
    """An "-----Original Message-----" line, in any of the languages above."""
    return _is_original(line)


def is_separator(line: str) -> bool:
    """A rule of dashes or underscores ("________________________________", Outlook's line above a
    forwarded header block)."""
    return bool(_SEPARATOR_LINE.fullmatch(line))


def header_role(line: str) -> str | None:
    """The role of a quoted "Key: value" header line (``from``, ``date``, ``other``), or None."""
    return _header_key(line)


def header_block_end(stripped: list[str], i: int) -> int | None:
    """End (exclusive) of a quoted From/Sent/To header block starting at line ``i`` of ``stripped`` (lines
    with their surrounding blanks removed), or None when none starts there."""
    return _header_block(stripped, i)


# --------------------------------------------------------------------------------------------------------
# Classifying lines

EMPTY, QUOTED, SPLITTER, FORWARD, TEXT = "e", "m", "s", "f", "t"

# Attribution windows and header blocks examined in full per mail. Real mail needs a handful; a body
# built to make every line a candidate stops costing anything after this many, its remaining lines
# counting as text.
_BUDGET = 2000
# Lines that may be a tracker's delimiter: anchored at line starts, so the scan is cheap.
_DELIMITER_CANDIDATE = re.compile(
    r"^[ \t>]*+[-=#_*]{0,10}+[ \t]*+(?:please|type|write|reply|respond|add|bitte|répondez|[^\n]{0,40}?do\s+not)",
    re.MULTILINE | re.IGNORECASE)
# Evidence flags of one line.
_HAS_VERB, _HAS_EMAIL, _HAS_DATE, _HAS_TIME, _OPENS = 1, 2, 4, 8, 16


@dataclass(frozen=True)
class _Splitter:
    start: int  # first line of the history's introduction
    end: int  # line after it
    offset: int = 0  # where it starts in its first line (an attribution sharing a line with the reply)


def _header_key(stripped: str) -> str | None:
    """The role of a "Key: value" line ("from", "date", "other"), or None."""
    if len(stripped) > _MAX_LINE:
        return None
    match = _HEADER_LINE.match(stripped)
    if match is None:
        return None
    key = " ".join(match.group(1).lower().split())
    if key in _FROM_KEYS:
        value = stripped[match.end():]
        return "from" if any(ch.isalpha() for ch in value) else None  # a sender, not "From: 10:00"
    if key in _DATE_KEYS:
        return "date"
    return "other" if key in _OTHER_KEYS else None


# A further "Key:" inside a header line's value ("From: bob@example.com Date: Thu, 24 Mar 2016 ..." when
# an HTML header block lost its line breaks).
_INLINE_KEY = re.compile(r"(?<!\S)(\w[\w-]{0,15}(?: \w{1,15})?)[ \t]?[:：]")


def _inline_roles(value: str) -> list[str]:
    roles = []
    for match in _INLINE_KEY.finditer(value[:_MAX_LINE]):
        key = match.group(1).lower()
        if key in _FROM_KEYS or key in _DATE_KEYS:
            roles.append("from" if key in _FROM_KEYS else "date")
        elif key in _OTHER_KEYS:
            roles.append("other")
    return roles


def _header_block(stripped: list[str], i: int) -> int | None:
    """End (exclusive) of a From/Sent/To header block starting at line ``i``, or None.

    Two or more header lines, with a From or a Date/Sent key, and either both, or two more keys, or an
    address: Outlook's block, Apple Mail's and Gmail's forwarded headers, a Hotmail quote's header lines.
    A schedule ("From: Monday / To: Friday") or a memo's "Date: / Time:" is none of these.
    """
    roles: list[str] = []
    j = i
    last = i
    gap = 0
    while j < len(stripped) and j - i < 16:
        role = _header_key(stripped[j])
        if role is not None:
            roles.append(role)
            if j == i:
                roles.extend(_inline_roles(stripped[j][stripped[j].find(":") + 1:]))
            last, gap = j, 0
        elif stripped[j] and gap == 0 and roles:
            gap = 1  # a wrapped value ("Subject: Two\nline subject")
        else:
            break
        j += 1
    if len(roles) < 2 or not ("from" in roles or "date" in roles):
        return None
    if ("from" in roles and "date" in roles) or roles.count("other") >= 2 or \
            any("@" in line for line in stripped[i:last + 1]):
        return last + 1
    return None


def _dash_framed_attribution(line: str) -> bool:
    """"---- John Smith wrote ----", "------On 12/29/1987 17:32 PM, Julius Caesar wrote-----" (Android,
    Samsung): an attribution between runs of dashes, found without a backtracking pattern."""
    if not (line.startswith("--") and line.endswith("--")):
        return False
    inner = line.strip("-").strip(" \t:：")
    return 0 < len(inner) <= 200 and _has_verb(inner[-60:].lower())


def _flags(text: str) -> int:
    """Evidence in one line (bounded length) that it belongs to an attribution."""
    flags = 0
    if _has_verb(text.lower()):
        flags |= _HAS_VERB
    if "@" in text and _EMAIL.search(text):
        flags |= _HAS_EMAIL
    if _DATE_OR_TIME.search(text):
        flags |= _HAS_DATE
        if _TIME.search(text):
            flags |= _HAS_TIME
    if _opens_attribution(text):
        flags |= _OPENS
    return flags


def _qualifies(flags: int, first_flags: int, followed_by_quote: bool, wrapped: bool, colon: bool = True) -> bool:
    """Whether lines with these evidence flags (together; ``first_flags`` of the first one) form an
    attribution. See the module docstring. Without a closing colon only the surest kind counts: opening
    like an attribution, with an address, right above the quote ("2011/4/7 Nathan <nathan@example.com>")."""
    email, opens = bool(flags & _HAS_EMAIL), bool(first_flags & _OPENS)
    if not colon:
        return followed_by_quote and email and opens
    if wrapped and not (email or opens):
        return False  # joining lines of prose must not make one
    if flags & _HAS_VERB and (opens or email or flags & _HAS_DATE):
        return True
    # Any language: an address, or a date with a time, then a colon, then the quote itself.
    return followed_by_quote and (email or bool(flags & _HAS_TIME))


def _attribution(window: str, followed_by_quote: bool, wrapped: bool) -> bool:
    """Whether ``window`` (one line, or wrapped lines joined by spaces) is an attribution line."""
    if len(window) > _MAX_LINE or not _ENDS_WITH_COLON.search(window):
        return False
    flags = _flags(window)
    return _qualifies(flags, flags, followed_by_quote, wrapped)


def _opens_attribution(text: str) -> bool:
    """Whether text starts the way attributions start: "On ...", "Am ...", a date ("02.04.2012 ...")."""
    return bool(text) and (text[0].isdigit() or _opens_with_lead(text))


# Where an attribution may begin inside a line: after a sentence, or before a capitalised opening word
# ("reply On Wed, ...", "reply--- On Wed, ...").
_INNER_START = re.compile(r"[.!?][ \t]+|(?:[ \t]+|-{2,}[ \t]*)(?=[^\W\d_a-z])")


def _shared_start(first: str, rest: str, followed_by_quote: bool, wrapped: bool) -> int:
    """Where an attribution begins inside its first line when that line starts with the end of the reply
    ("Thanks! On Tue, 1 Oct 2024, Ann <ann@example.org> wrote:"); 0 when the whole line belongs to it.

    ``rest``: the attribution's further lines, joined. The split is made where what follows opens like an
    attribution ("On ...", "Am ..."), or after a full sentence ("Thanks, see you then. Ann <a@b> wrote:"),
    never after an abbreviation ("Dr. Smith <s@x> wrote:") or inside a date ("Mo., 1. Jan. 2024 ...").
    """
    if _opens_attribution(first):
        return 0
    for boundary in _INNER_START.finditer(first[:_MAX_LINE]):
        tail = first[boundary.end():]
        if not tail or not _attribution(" ".join(filter(None, (tail, rest))), followed_by_quote, wrapped):
            continue
        prefix = first[: boundary.start() + 1].rstrip()
        if _opens_with_lead(tail) and tail[0].isupper():
            return boundary.end()  # "... works for me. On Tue, ... wrote:", "reply--- On Wed, ..."
        if not boundary.group().strip(" \t-"):
            continue  # only a space or dashes before it: only an opening word starts it there
        # Otherwise only after a sentence that cannot be the attribution's own start: no digits (it is
        # not "Mo., 1. Jan. 2024 ...") and a full sentence, not an abbreviation ("Dr. Smith <s@x> wrote:").
        if prefix[-1:] in (".", "!", "?") and not any(ch.isdigit() for ch in prefix) and (
                prefix[-1] in "!?" or len(prefix.split()) >= 3):
            return boundary.end()
    return 0


# Whole-text scans that find the few lines worth a closer look, at C speed; only those lines (at most
# _BUDGET of each kind, top first) get Python-level attention.
_STRUCTURE_LINE = re.compile(r"^[ \t]*+[-=_*#~•]", re.MULTILINE)
_HEADER_CANDIDATE = re.compile(r"^[ \t]*+[*_]{0,2}+[ \t]*+[^\W\d_][^:：\n]{0,24}+[:：]", re.MULTILINE)
_COLON_END = re.compile(r"[:：][ \t]*+$", re.MULTILINE)
_URL_LINE = re.compile(r"^[ \t]*+[(<]?https?://\S{1,2000}+[ \t]*+$", re.MULTILINE)
# A line right above a quote (through up to three empty lines): an attribution may lack its colon.
_ABOVE_QUOTE = re.compile(r"^[ \t]*+[^>\s][^\n]*+\n(?:[ \t]*+\n){0,3}+[ \t]*+>", re.MULTILINE)
# A link that a quoting client wrapped, leaving its tail without the quote marker (talon's "link breaks
# quotation markers"): a line starting with a link, or a quoted line ending inside one.
_LINK_START = re.compile(r"^[ \t]*+[(<]?https?://", re.MULTILINE)
_LINK_OPEN_AT_END = re.compile(r"[(<]https?://[^)>\s]*+[ \t]*+$", re.MULTILINE)


class _Body:
    """A plain-text body as lines, each with its class, the splitters, and the indexes the decision
    needs (so that every question about a range of lines is answered without walking it)."""

    def __init__(self, text: str, forwarded: bool) -> None:
        self.text = text
        self.lines = lines = text.split("\n")
        self.stripped = list(map(str.strip, lines))
        self.kinds = [EMPTY if not s else QUOTED if s[0] == ">" else TEXT for s in self.stripped]
        self.splitters: dict[int, _Splitter] = {}
        self._flag_memo: dict[int, int] = {}
        self._classify_link_debris()
        self._classify_structure()
        self._classify_attributions()
        if forwarded:
            # The subject says this is a forward: its first history block is the forwarded message.
            first = min(self.splitters, default=None)
            if first is not None and QUOTED not in self.kinds[:first]:
                split = self.splitters.pop(first)
                for k in range(split.start, split.end):
                    self.kinds[k] = TEXT
                self.kinds[first] = FORWARD
        self._index()

    # -- classification

    def _candidates(self, pattern: re.Pattern[str], first_line: int = 0) -> list[int]:
        """Lines from ``first_line`` on where ``pattern`` matches, top first, at most _BUDGET of them."""
        found: list[int] = []
        first_line = max(first_line, 0)
        line = first_line
        counted = sum(map(len, self.lines[:first_line])) + first_line if first_line else 0
        for match in pattern.finditer(self.text, counted):
            line += self.text.count("\n", counted, match.start())  # newlines since the last match
            counted = match.start()
            if not found or found[-1] != line:
                found.append(line)
                if len(found) >= _BUDGET:
                    break
        return found

    def _classify_link_debris(self) -> None:
        """Unquoted tails of links wrapped out of a quote belong to the quote."""
        stripped, kinds = self.stripped, self.kinds
        n = len(kinds)

        def quote_follows(k: int) -> bool:
            nxt = k + 1
            while nxt < n and kinds[nxt] == EMPTY:
                nxt += 1
            return nxt >= n or kinds[nxt] == QUOTED

        for k in self._candidates(_LINK_START):
            if k > 0 and kinds[k] == TEXT and kinds[k - 1] == QUOTED and len(stripped[k]) <= _MAX_LINE and \
                    quote_follows(k):
                kinds[k] = QUOTED
        for k in self._candidates(_LINK_OPEN_AT_END):
            tail = k + 1
            if kinds[k] == QUOTED and tail < n and kinds[tail] == TEXT and len(stripped[tail]) <= 200 and \
                    not any(ch.isspace() for ch in stripped[tail]) and quote_follows(tail):
                kinds[tail] = QUOTED

    def _mark(self, split: _Splitter) -> None:
        self.splitters[split.start] = split
        for k in range(split.start, split.end):
            self.kinds[k] = SPLITTER

    def _classify_structure(self) -> None:
        """Tracker delimiters, forward and "Original Message" lines, dash-framed attributions, header
        blocks (with the separator line above them)."""
        stripped, kinds = self.stripped, self.kinds
        n = len(stripped)
        for i in self._candidates(_DELIMITER_CANDIDATE):
            s = stripped[i]
            unquoted = _QUOTE_PREFIX.sub("", s, count=1) if s[:1] == ">" else s
            if len(unquoted) <= _MAX_LINE and _DELIMITER.fullmatch(unquoted.lower()):
                # A tracker's delimiter cuts wherever it is, inside quotes too.
                self._mark(_Splitter(i, i + 1))
        for i in self._candidates(_STRUCTURE_LINE):
            s = stripped[i]
            if kinds[i] != TEXT or len(s) > _MAX_LINE:
                continue
            if _is_forward(s):
                kinds[i] = FORWARD
            elif _is_original(s) or _dash_framed_attribution(s):
                self._mark(_Splitter(i, i + 1))
            elif _SEPARATOR_LINE.fullmatch(s):
                # Outlook's line of underscores (or an <hr>) above its header block belongs to it.
                k = i + 1
                while k < n and not stripped[k] and k - i < 3:
                    k += 1
                end = _header_block(stripped, k) if k < n and kinds[k] == TEXT else None
                if end is not None:
                    self._mark(_Splitter(i, end))
        for i in self._candidates(_HEADER_CANDIDATE):
            if kinds[i] != TEXT:
                continue  # inside a block already found
            end = _header_block(stripped, i)
            if end is not None and all(kind == TEXT for kind in kinds[i:end]):
                self._mark(_Splitter(i, end))

    def _line_flags(self, k: int) -> int:
        flags = self._flag_memo.get(k)
        if flags is None:
            flags = self._flag_memo[k] = _flags(self.stripped[k])
        return flags

    def _classify_attributions(self) -> None:
        """Attributions, found from their last line (the one ending in a colon): the fewest lines that
        make one, then earlier lines too when they open it ("On Fri, ... Roman Tkachenko from Hacker
        News" above "<roman@example.org> wrote:")."""
        stripped, kinds = self.stripped, self.kinds
        n = len(stripped)
        for j in self._candidates(_COLON_END):
            s = stripped[j]
            if kinds[j] not in (TEXT, QUOTED) or not s or len(s) > 2 * _MAX_LINE:
                continue
            if kinds[j] == TEXT and _is_forward(s):
                kinds[j] = FORWARD  # "Begin forwarded message:"
                continue
            last = s
            if kinds[j] == QUOTED:
                # Only "> wrote:", closing an attribution wrapped around a "<mailto:...>" (Polymail).
                last = _QUOTE_PREFIX.sub("", s, count=1)
                if len(last) > 40 or not _has_verb(last.lower()):
                    continue
            k = j + 1
            while k < n and kinds[k] == EMPTY:
                k += 1
            found = self._attribution_ending_at(j, last, k < n and kinds[k] == QUOTED)
            if found is not None:
                self._mark(found)
        for j in self._candidates(_ABOVE_QUOTE):
            s = stripped[j]
            if kinds[j] != TEXT or s[-1] in ":：" or len(s) > _MAX_LINE:
                continue
            found = self._attribution_ending_at(j, s, True, colon=False)
            if found is not None:
                self._mark(found)

    def _attribution_ending_at(self, j: int, last: str, followed: bool, colon: bool = True) -> _Splitter | None:
        stripped, kinds = self.stripped, self.kinds
        tail = last[-_MAX_LINE:]
        flags = self._line_flags(j) if kinds[j] == TEXT and len(last) <= _MAX_LINE else _flags(tail)
        found = j if kinds[j] == TEXT and _qualifies(flags, flags, followed, False, colon) else None
        length = len(tail)
        first_found_flags = flags
        for start in range(j - 1, max(-1, j - _MAX_WINDOW_LINES), -1):
            if kinds[start] not in (TEXT, EMPTY):
                break
            if not stripped[start]:
                continue
            length += len(stripped[start]) + 1
            if length > _MAX_LINE:
                break
            line_flags = self._line_flags(start)
            flags |= line_flags
            if found is None:
                if _qualifies(flags, line_flags, followed, True, colon):
                    found, first_found_flags = start, line_flags
            elif line_flags & _OPENS and not first_found_flags & _OPENS and \
                    _qualifies(flags, line_flags, followed, True, colon):
                found, first_found_flags = start, line_flags  # extend to the line that opens it
        if found is None:
            return None
        if found == j:
            first, rest = tail, ""
        else:
            first = stripped[found]
            rest = " ".join(stripped[k] for k in range(found + 1, j) if stripped[k])
            rest = f"{rest} {last}".strip()
        offset = _shared_start(first, rest, followed, wrapped=found < j)
        if offset:
            line = self.lines[found]
            offset += len(line) - len(line.lstrip()) + (len(stripped[found]) - len(tail) if found == j else 0)
        return _Splitter(found, j + 1, offset)

    def content_end(self) -> int:
        """The line where the sender's own text ends at the latest: a "-- " signature separator, a "Sent
        from my ..." line, or a mailing-list footer under a line of underscores, each with text above it.
        Whatever follows is signature, footer or history, so a quote just above it still counts as
        trailing."""
        n = len(self.lines)
        # They close a reply: only its end is searched (a top-posted one is cut above its history anyway).
        first = n - _SIGNATURE_LINES
        ends = [k for k in self._candidates(_SIGNATURE_LINE, first) if self.kinds[k] == TEXT and self.has_text(0, k)]
        ends += [k for k in range(max(first, 0), n) if self.kinds[k] == TEXT and _is_sent_from(self.lines[k])
                 and self.has_text(0, k)][:1]
        tail = self.nonempty[-_FOOTER_MAX_LINES - 1:]
        for k in tail:
            if self.kinds[k] == TEXT and _FOOTER_RULE.fullmatch(self.lines[k]) and self.has_text(0, k) and \
                    all(len(self.lines[j]) <= 120 for j in range(k + 1, n)):
                ends.append(k)
                break
        return min(ends, default=n)

    # -- indexes

    def _index(self) -> None:
        kinds = self.kinds
        n = len(kinds)
        self.order = sorted(self.splitters)
        self.text_before = list(itertools.accumulate(map(TEXT.__eq__, kinds), initial=0))
        # A long link wrapped out of a quote is not an answer.
        links = set(self._candidates(_URL_LINE))
        self.answers_before = list(itertools.accumulate(
            (kind == TEXT and k not in links for k, kind in enumerate(kinds)), initial=0)) if links else \
            self.text_before
        # (compress and map keep these at C speed: they run over every line of a possibly huge body)
        self.nonempty = list(itertools.compress(range(n), map(EMPTY.__ne__, kinds)))
        self.quotes = list(itertools.compress(range(n), map(QUOTED.__eq__, kinds)))
        self.forwards = list(itertools.compress(range(n), map(FORWARD.__eq__, kinds)))

    @staticmethod
    def _next(positions: list[int], k: int, default: int) -> int:
        at = bisect.bisect_left(positions, k)
        return positions[at] if at < len(positions) else default

    def next_nonempty(self, k: int) -> int:
        return self._next(self.nonempty, k, len(self.lines))

    def next_quote(self, k: int) -> int:
        return self._next(self.quotes, k, len(self.lines))

    def prev_quote(self, k: int) -> int:
        """The last quoted line at or before ``k``, or -1."""
        at = bisect.bisect_right(self.quotes, k)
        return self.quotes[at - 1] if at else -1

    def run_end(self, k: int) -> int:
        """End (exclusive) of the run of quoted lines holding quoted line ``k``; empty lines inside a run
        belong to it. Runs are walked through the index of non-empty lines, one bisection per line."""
        at = bisect.bisect_left(self.nonempty, k)
        while at + 1 < len(self.nonempty) and self.kinds[self.nonempty[at + 1]] == QUOTED:
            at += 1
        return self.nonempty[at] + 1

    def run_start(self, k: int, floor: int) -> int:
        """First line of the run holding quoted line ``k``, not before ``floor``."""
        at = bisect.bisect_left(self.nonempty, k)
        while at > 0 and self.nonempty[at - 1] >= floor and self.kinds[self.nonempty[at - 1]] == QUOTED:
            at -= 1
        return self.nonempty[at]

    def has_text(self, start: int, end: int) -> bool:
        return end > start and self.text_before[end] > self.text_before[start]

    def interleaved(self, start: int, end: int) -> bool:
        """Whether an answer sits between two quotes in [start, end): an inline reply."""
        if end <= start:
            return False
        first, last = self.next_quote(start), self.prev_quote(end - 1)
        return first < last and self.answers_before[last] > self.answers_before[first]

    def trim(self, start: int, end: int) -> list[str]:
        """Lines [start, end) with a quote block at the start or at the end dropped, unless the quotes
        interleave with text (an inline reply keeps its quotes for context, but not a trailing one)."""
        if self.next_quote(start) >= end or not self.has_text(start, end):
            return self.lines[start:end]
        last_quote = self.prev_quote(end - 1)
        if not self.has_text(last_quote + 1, end):
            run = self.run_start(last_quote, start)
            if self.has_text(start, run):
                end = run  # a quote at the end: top-posting without an attribution
        if not self.interleaved(start, end):
            first = self.next_nonempty(start)
            if first < end and self.kinds[first] == QUOTED:
                start = min(self.run_end(first), end)  # bottom-posting: the quote first, the reply after
        return self.lines[start:end]

    # -- the decision

    def reply(self) -> tuple[list[str], int | None]:
        """The reply's lines, and the line of a forward marker whose message was kept (or None)."""
        lines, kinds, n = self.lines, self.kinds, len(self.lines)
        parts: list[list[str]] = []
        pos = 0
        while pos < n:
            first_split = self._next(self.order, pos, n)
            forward = self._next(self.forwards, pos, n)
            if forward < first_split and forward < self.next_quote(pos):
                # A forward before any history: the forwarded message is the content.
                parts.append(lines[pos:])
                kept = [line for part in parts for line in part]
                return kept, forward
            if first_split == n:
                parts.append(self.trim(pos, n))
                break
            split = self.splitters[first_split]
            after = self.next_nonempty(split.end)
            below: int | None = None
            if after < n and kinds[after] == QUOTED:
                quote_end = self.run_end(after)
                if self.has_text(quote_end, n):
                    next_split = self._next(self.order, split.end, n)
                    if self.interleaved(after, next_split):
                        # The attribution, then quotes and answers in turn: an inline reply.
                        parts.append(self.trim(pos, next_split))
                        break
                    # Text below the quote ("Regards, Roman" under a top-posted reply, or the whole reply
                    # when bottom-posting) is the sender's, unless it is more history.
                    below = quote_end
            if split.offset or self.has_text(pos, split.start):
                above = self.trim(pos, split.start)
                if split.offset:
                    above.append(lines[split.start][: split.offset].rstrip(" \t-"))
                # Drop a separator line just above the history ("* * *", "-----").
                while above and (not above[-1].strip() or _SEPARATOR_LINE.fullmatch(above[-1].strip())):
                    above.pop()
                parts.append(above)
            if below is None:
                break
            pos = below
        kept = []
        for part in parts:
            if any(line.strip() for line in part):
                kept.extend([""] * bool(kept) + part)
        # A mail that is all history (nothing written above or below it) is kept whole.
        return (kept if kept else lines), None


_SIGNATURE_LINES = 100  # signatures and "Sent from my ..." close a reply: only its end is searched


def _cut_signature(text: str) -> str:
    lines = text.split("\n")
    head, tail = "\n".join(lines[:-_SIGNATURE_LINES]), "\n".join(lines[-_SIGNATURE_LINES:])
    above = head.strip()  # "something written above" a marker in the tail
    sig = _first(_SIGNATURE, tail, above)
    if sig is not None:
        tail = tail[:sig]
    tail_lines = tail.split("\n")
    for k, line in enumerate(tail_lines):
        if _is_sent_from(line) and (above or any(x.strip() for x in tail_lines[:k])):
            tail = "\n".join(tail_lines[:k])
            break
    text = f"{head}\n{tail}" if head else tail
    lines = text.rstrip().split("\n")
    for k in range(max(1, len(lines) - _FOOTER_MAX_LINES - 1), len(lines)):
        if _FOOTER_RULE.fullmatch(lines[k]) and all(len(line) <= 120 for line in lines[k + 1:]) and \
                any(line.strip() for line in lines[:k]):
            return "\n".join(lines[:k])
    return text


def _first(pattern: re.Pattern[str], text: str, above: str = "") -> int | None:
    """Where ``pattern`` first matches in ``text`` with something written above it (in ``text``, or in
    ``above``, the text before it)."""
    for match in pattern.finditer(text):
        if above or text[: match.start()].strip():
            return match.start()
    return None


def cut_reply(text: str, *, forwarded: bool = False) -> str:
    """The reply part of a plain-text body: history, tracker delimiters and signature removed.

    ``forwarded``: the mail's subject says it forwards another (see :func:`is_forward_subject`); then the
    history block it carries is the forwarded message, and stays.
    """
    if not text:
        return ""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    body = _Body(text, forwarded)
    end = body.content_end()
    if end < len(body.lines) and not body.forwards:
        body = _Body("\n".join(body.lines[:end]), forwarded)
    kept, forward = body.reply()
    if forward is not None:
        # The sender's own signature sits above the forwarded message; the forwarded text stays whole.
        marker = body.lines[forward]
        at = len(kept) - (len(body.lines) - forward)
        head = _cut_signature("\n".join(kept[:at]))
        out = head.rstrip() + "\n\n" + "\n".join([marker, *kept[at + 1:]])
    else:
        out = _cut_signature("\n".join(kept))
    out = re.sub(r"\n{3,}", "\n\n", out)
    return out.strip()


# --------------------------------------------------------------------------------------------------------
# HTML

_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
                   "source", "track", "wbr"})
_CONTAINER_CLASSES = frozenset({"gmail_quote", "gmail_quote_container", "yahoo_quoted", "moz-cite-prefix",
                                "protonmail_quote", "zmail_extra"})
_BORDER_TOP = re.compile(r"border-top(?:-style)?\s*:\s*[^;]{0,40}?\bsolid\b|border-top\s*:\s*[^;]{0,20}?\d",
                         re.IGNORECASE)
_PEEK_CHARS = 600  # text looked at to judge a container: an attribution or a header block fits


def _attrs(attrs: list[tuple[str, str | None]]) -> dict[str, str]:
    return {k.lower(): (v or "") for k, v in attrs}


def _looks_attributed(text: str) -> bool:
    """Whether text just before a quote ends with an attribution ("On ..., X wrote:")."""
    tail = " ".join(text[-_MAX_LINE:].split())
    if not tail:
        return False
    cut = max(tail.rfind(". "), tail.rfind("! "), tail.rfind("? "))
    return _attribution(tail[cut + 2 if cut >= 0 else 0:], True, wrapped=False) or \
        _attribution(tail, True, wrapped=True)


def _starts_with_header_block(text: str) -> bool:
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    return bool(lines) and _header_block(lines, 0) is not None


def _ends_with_forward(text: str) -> bool:
    """Whether text ends with a forward marker ("Begin forwarded message:" above Apple Mail's quote)."""
    last = next((line.strip() for line in reversed(text[-_MAX_LINE:].split("\n")) if line.strip()), "")
    return bool(last) and _is_forward(last)


def _starts_with_forward(text: str) -> bool:
    first = next((line.strip() for line in text.split("\n") if line.strip()), "")
    return bool(first) and _is_forward(first)


def _container_kind(tag: str, values: dict[str, str]) -> str | None:
    """What an element may be: "history" (a client's quote container), "blockquote" (Gmail's quote,
    history only when an attribution introduces it), "plain" (any other blockquote: history when an
    attribution introduces it or when it is the last quote of the mail), "divider" (a bordered div,
    history when a header block starts it), or None."""
    ident = values.get("id", "").lower()
    classes = values.get("class", "").lower().split()
    if tag == "blockquote":
        if values.get("type", "").lower() == "cite":
            return "history"  # Apple Mail, Thunderbird
        return "blockquote" if "gmail_quote" in classes else "plain"
    if any(c in _CONTAINER_CLASSES for c in classes) or ident == "mail-editor-reference-message-container" \
            or (ident.startswith("yiv") and "quoted" in ident):
        return "history"
    if tag == "div" and _BORDER_TOP.search(values.get("style", "")):
        return "divider"  # Outlook's and Windows Mail's line above their From/Sent/To block
    return None


class _QuoteStripper(HTMLParser):
    """Re-emits HTML verbatim except the history: quote containers are held back until their text shows
    what they are, and an Outlook header block cuts everything from it to the end."""

    def __init__(self, forwarded: bool) -> None:
        super().__init__(convert_charrefs=False)
        self.out: list[str] = []
        self._forwarded = forwarded
        self._stop = False
        # A container being judged: its tag, nesting depth, what it is, and its markup and text so far.
        self._held: tuple[str, int, str] | None = None
        self._held_markup: list[str] = []
        self._held_text: list[str] = []
        self._held_chars = 0
        self.visible = False  # whether any text outside the history was emitted
        self._pending: tuple[int, str] | None = None  # a blockquote that is history if no quote follows
        self._recent: list[str] = []  # visible text emitted lately (for "is this quote attributed?")
        self._recent_chars = 0

    # -- output

    def _emit(self, markup: str, text: str = "") -> None:
        if self._stop:
            return
        if self._held is not None:
            self._held_markup.append(markup)
            if text and self._held_chars < _PEEK_CHARS:
                self._held_text.append(text)
                self._held_chars += len(text)
            return
        self.out.append(markup)
        if text:
            self.visible = self.visible or not text.isspace()
            self._note(text)

    def _note(self, text: str) -> None:
        """Remember text as what came last before the next quote (for "is this quote attributed?")."""
        self._recent.append(text)
        self._recent_chars += len(text)
        if self._recent_chars > 4 * _MAX_LINE:
            joined = "".join(self._recent)[-_MAX_LINE:]
            self._recent, self._recent_chars = [joined], len(joined)

    def _keep_pending(self) -> None:
        """History comes after the pending blockquote: that one was the sender's."""
        if self._pending is not None:
            index, content = self._pending
            self.out[index] = content
            self.visible = True
            self._pending = None

    def _cut_rest(self) -> None:
        """An Outlook header block: it and everything below it are history."""
        self._keep_pending()
        self._stop = True

    def _hold(self, tag: str, kind: str, markup: str) -> None:
        if kind in ("history", "blockquote", "plain"):
            self._keep_pending()
        self._held = (tag, 1, kind)
        self._held_markup = [markup]
        self._held_text = []
        self._held_chars = 0

    def _release(self, closed: bool = True) -> None:
        """The held container is closed (or the mail ended inside it): decide what it was."""
        assert self._held is not None
        _tag, _depth, kind = self._held
        text = "".join(self._held_text)
        markup = self._held_markup
        inner = "".join(markup[1:-1] if closed else markup[1:])
        self._held = None
        if self._forwarded or _starts_with_forward(text) or _ends_with_forward("".join(self._recent)):
            self._emit("".join(markup), text)  # a forwarded message is content
            return
        if kind == "divider":
            if _starts_with_header_block(text):
                self._cut_rest()  # Outlook / Windows Mail: the header block and all below are history
            else:
                self._emit("".join(markup), text)
            return
        if kind in ("blockquote", "plain") and not _looks_attributed("".join(self._recent)):
            # Emitted as a plain block so that the text stage does not take it for a quote either.
            as_content = "<div>" + inner + "</div>"
            if kind == "blockquote":
                # Gmail's "Quote" button: a quote in the sender's own text, not history.
                self._emit(as_content, text)
            elif not self._stop:
                # Another blockquote: history if it is the mail's last quote (the reply's history is
                # always last), content if another quote follows it. Its place is kept until then.
                self._pending = (len(self.out), as_content)
                self.out.append("")
                self._note(text)
            return
        # history: dropped

    # -- parser callbacks

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._stop:
            return
        markup = self.get_starttag_text() or ""
        if self._held is not None:
            held_tag, depth, held_kind = self._held
            if tag == held_tag and tag not in _VOID:
                self._held = (held_tag, depth + 1, held_kind)
            self._emit(markup, "\n" if tag in ("br", "p", "div", "li", "tr") else "")
            return
        values = _attrs(attrs)
        ident = values.get("id", "").lower()
        if ident in ("divrplyfwdmsg", "appendonsend") and not self._forwarded:
            self._cut_rest()  # Outlook's header block is a sibling of the quoted body, not its container
            return
        if tag in _VOID:
            self._emit(markup, "\n" if tag == "br" else "")
            return
        kind = _container_kind(tag, values)
        if kind is not None:
            self._hold(tag, kind, markup)
            return
        self._emit(markup, "\n" if tag in ("p", "div", "li", "tr") else "")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._emit(self.get_starttag_text() or "", "\n" if tag == "br" else "")

    def handle_endtag(self, tag: str) -> None:
        if self._stop:
            return
        if self._held is not None:
            held_tag, depth, held_kind = self._held
            self._held_markup.append(f"</{tag}>")
            if tag == held_tag:
                depth -= 1
                self._held = (held_tag, depth, held_kind)
                if depth == 0:
                    self._release()
            return
        self._emit(f"</{tag}>", "\n" if tag in ("p", "div", "br", "li", "tr") else "")

    def handle_data(self, data: str) -> None:
        self._emit(data, data)

    def handle_entityref(self, name: str) -> None:
        self._emit(f"&{name};", html.unescape(f"&{name};").replace("\u00a0", " "))

    def handle_charref(self, name: str) -> None:
        self._emit(f"&#{name};", html.unescape(f"&#{name};").replace("\u00a0", " "))

    def handle_comment(self, data: str) -> None:
        self._emit(f"<!--{data}-->")

    def handle_decl(self, decl: str) -> None:
        self._emit(f"<!{decl}>")

    def unknown_decl(self, data: str) -> None:
        self._emit(f"<![{data}]>")

    def handle_pi(self, data: str) -> None:
        self._emit(f"<?{data}>")

    def finish(self) -> str:
        if self._held is not None:  # never closed: judge what arrived
            self._release(closed=False)
        return "".join(self.out)


def cut_html_quotes(markup: str, *, forwarded: bool = False) -> str:
    """HTML without the quoted history that mail clients mark; unchanged if parsing fails.

    ``forwarded``: the subject says the mail forwards another; its quote containers are then the
    forwarded message, and stay.
    """
    stripper = _QuoteStripper(forwarded)
    try:
        stripper.feed(markup)
        stripper.close()
        out = stripper.finish()
    except Exception:
        log.debug("HTML quote stripping failed", exc_info=True)
        return markup
    # A mail that is all quote (a reply typed inside the quote, a client that quotes everything) would
    # come out empty: nothing is cut then, as in plain text.
    return out if stripper.visible else markup
