"""Address syntax (RFC 5322 section 3.4): the one strict reading of ``From``, and what counts as an address.

``From`` names the author, and the author gets a user's rights, so the sender must be exactly the mailbox a
receiving server checks: DMARC binds to the domain of From's addr-spec (RFC 7489 section 3.1), and so does
``mailintake.authentication``. A lenient reader (the stdlib's ``getaddresses``, or a search for anything
that looks like an address) takes an address out of a display name in shapes such as
``boss@example.org <intern@example.org>`` or ``<boss@example.org> intern@example.org``: the server checked
the intern, and the mail was filed as the boss's. So :func:`parse_mailbox` accepts exactly one mailbox::

    mailbox      = [display-name] "<" addr-spec ">"  /  addr-spec
    display-name = words: atoms, quoted strings, encoded words (RFC 2047), and "." (obs-phrase)
    addr-spec    = local-part "@" domain      (dot-atoms; a quoted local part only when it needs no quotes)

with comments and folding white space anywhere between tokens, and answers ``None`` ("no valid sender")
for everything else: several mailboxes, a group, a phrase without an angle-addr, text after the angle-addr,
an ``@`` or ``<`` in the display name outside a quoted string or encoded word, unterminated quotes,
comments, brackets or angle-addrs, a domain literal, an obsolete source route, an encoded word or a control
or format character inside the address. The display name is returned raw (quotes removed, encoded words
left as they are) for the caller to decode: it is a name to show, never a source of an address.

Three forms that mail systems write are read as a mailbox *without* an address (``addr_spec == ""``), so
that a bounce keeps its name for ``mailintake.automail``: the null sender ``MAILER-DAEMON <>``, and a bare
local part with or without angle brackets, ``Mail Delivery Subsystem <MAILER-DAEMON>`` or ``mailer-daemon``
(kept as ``local_part``). None of them names anybody who could be a user.

``To``, ``Cc`` and ``Reply-To`` are read leniently by ``mailintake.parsing`` (they only add readers and
editors, or pick where a reply goes), but :func:`is_address` keeps anything that is not a plain addr-spec
from becoming a user there too.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# RFC 5322 specials, which end an atom; "." is one too, so that dot-atoms are read as atoms and dots.
_SPECIALS = frozenset('()<>[]:;@\\,."')
# An RFC 2047 encoded word, read as one word of a display name whatever it holds: broken mailers leave
# commas and "@" unencoded inside one ("=?utf-8?q?Doe,_John?="), which would otherwise split the mailbox.
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[qQbB]\?[^?\s]*\?=")
# atext and dots (Unicode letters included, RFC 6532): what a dot-atom may hold, and a plain addr-spec.
_ATEXT = r"[^\s\"(),:;<>@\[\\\]]+"
_LOCAL_CHARS = re.compile(_ATEXT)
_PLAIN_ADDRESS = re.compile(f"{_ATEXT}@{_ATEXT}")
# A host name's label (RFC 5321 sub-domain, with Unicode letters for internationalised names).
_LABEL = re.compile(r"[^\W_](?:(?:[^\W_]|-)*[^\W_])?")


@dataclass(frozen=True)
class Mailbox:
    addr_spec: str  # "local@domain" as written (not lower-cased), "" for the null sender or a bare local part
    display_name: str = ""  # raw: quoted strings unquoted, encoded words not decoded; "" when none
    comment: str = ""  # the comments' text ("ada@example.org (Ada)"), a name for an addr-spec written alone
    local_part: str = ""  # of a mailbox without an address: "MAILER-DAEMON" of "<MAILER-DAEMON>"


class _Invalid(Exception):
    """The value is not exactly one mailbox."""


@dataclass(frozen=True)
class _Token:
    kind: str  # "atom", "quoted", "literal" (a domain literal) or the special character itself
    text: str
    space_before: bool = False
    encoded: bool = False  # an atom that is an encoded word


def _allowed(char: str) -> bool:
    """In an address: no control, format (bidi, zero-width), surrogate (undecodable 8-bit), private-use or
    unassigned character. A display name may hold all but controls (raw 8-bit names, emoji with joiners)."""
    return unicodedata.category(char) not in ("Cc", "Cf", "Cs", "Co", "Cn")


def comment_end(value: str, i: int) -> int | None:
    """Where the comment whose "(" is at ``i`` ends (just past its ")"), or None when it never closes.
    Comments nest and hold quoted pairs (RFC 5322 3.2.2); header fields that carry them share this."""
    depth, n = 0, len(value)
    while i < n:
        if value[i] == "\\":
            i += 1
        elif value[i] == "(":
            depth += 1
        elif value[i] == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _comment(value: str, i: int) -> tuple[str, int]:
    """The text of the comment whose "(" is at ``i``, and where it ends."""
    end = comment_end(value, i)
    if end is None:
        raise _Invalid("unterminated comment")
    return value[i + 1:end - 1], end


def _quoted(value: str, i: int) -> tuple[str, int]:
    """The content of the quoted string whose '"' is at ``i``, unescaped, and where it ends."""
    text: list[str] = []
    i, n = i + 1, len(value)
    while True:
        if i >= n:
            raise _Invalid("unterminated quoted string")
        if value[i] == '"':
            return "".join(text), i + 1
        if value[i] == "\\":
            i += 1
            if i >= n:
                raise _Invalid("unterminated quoted string")
        if value[i] in "\r\n":
            raise _Invalid("line break in a quoted string")
        text.append(value[i])
        i += 1


def _atom(value: str, i: int, space: bool) -> tuple[_Token, int]:
    """The atom (or encoded word) that starts at ``i``, and where it ends."""
    word = _ENCODED_WORD.match(value, i)
    if word is not None:
        return _Token("atom", word.group(0), space, encoded=True), word.end()
    start, n = i, len(value)
    while i < n and value[i] not in _SPECIALS and value[i] not in " \t" and value[i] not in "\"(":
        if unicodedata.category(value[i]) == "Cc":
            raise _Invalid(f"control character U+{ord(value[i]):04X}")
        i += 1
    return _Token("atom", value[start:i], space), i


def _tokens(value: str) -> tuple[list[_Token], list[str]]:
    """The tokens of a header value and the text of its comments; :class:`_Invalid` on broken syntax."""
    tokens: list[_Token] = []
    comments: list[str] = []
    i, n, space = 0, len(value), False
    while i < n:
        char = value[i]
        if char in " \t":
            space, i = True, i + 1
            continue
        if char == "(":
            comment, i = _comment(value, i)
            comments.append(comment)
            space = True
            continue
        if char == '"':
            text, i = _quoted(value, i)
            token = _Token("quoted", text, space)
        elif char == "[":
            end = value.find("]", i)
            if end < 0:
                raise _Invalid("unterminated domain literal")
            token, i = _Token("literal", value[i + 1:end], space), end + 1
        elif char in _SPECIALS:
            if char in ")]\\":
                raise _Invalid(f"stray {char!r}")
            token, i = _Token(char, char, space), i + 1
        else:
            token, i = _atom(value, i, space)
        tokens.append(token)
        space = False
    return tokens, comments


def _local_part(tokens: list[_Token]) -> str:
    """``word *("." word)``; a quoted word only when its content could be written without quotes."""
    parts: list[str] = []
    for position, token in enumerate(tokens):
        if position % 2 == 1:
            if token.kind != ".":
                raise _Invalid("words of a local part not joined by dots")
            continue
        plain = token.kind == "atom" and not token.encoded
        if not plain and not (token.kind == "quoted" and _LOCAL_CHARS.fullmatch(token.text)):
            raise _Invalid("not a local part")
        parts.append(token.text)
    if not parts or len(tokens) % 2 == 0:
        raise _Invalid("empty local part, or a dot at its end")
    local = ".".join(parts)
    if local.startswith(".") or ".." in local or local.endswith("."):
        raise _Invalid("empty word in the local part")
    return local


def _domain(tokens: list[_Token]) -> str:
    """A dot-atom; a domain literal (``[192.0.2.1]``) names no domain anyone could authenticate."""
    if not tokens or len(tokens) % 2 == 0:
        raise _Invalid("empty domain, or a dot at its end")
    labels = []
    for position, token in enumerate(tokens):
        expected = "." if position % 2 else "atom"
        if token.kind != expected or token.encoded:
            raise _Invalid("not a dot-atom domain")
        if expected == "atom":
            labels.append(token.text)
    return ".".join(labels)


def _addr_spec(tokens: list[_Token]) -> str:
    ats = [i for i, token in enumerate(tokens) if token.kind == "@"]
    if len(ats) != 1:
        raise _Invalid("not exactly one @")
    address = f"{_local_part(tokens[:ats[0]])}@{_domain(tokens[ats[0] + 1:])}"
    if not is_address(address):  # an encoded word (a display name's trick), a format or 8-bit character
        raise _Invalid("not a plain address")
    return address


def _phrase(tokens: list[_Token]) -> str:
    """A display name's words as written, joined by the white space that separated them."""
    out: list[str] = []
    for token in tokens:
        if token.kind not in ("atom", "quoted", "."):
            raise _Invalid(f"{token.kind!r} in the display name")
        if out and token.space_before:
            out.append(" ")
        out.append(token.text)
    return "".join(out)


def parse_mailbox(value: str) -> Mailbox | None:
    """Exactly one RFC 5322 mailbox, or None; never raises. See the module docstring for what is refused."""
    value = re.sub(r"\r?\n(?=[ \t])", "", value)  # unfold; a line break left over is broken syntax
    try:
        tokens, comments = _tokens(value)
        if any(token.kind in (",", ";", ":") for token in tokens):
            raise _Invalid("several mailboxes, a group or a source route")
        opening = [i for i, token in enumerate(tokens) if token.kind == "<"]
        closing = [i for i, token in enumerate(tokens) if token.kind == ">"]
        comment = " ".join(" ".join(c.split()) for c in comments if c.strip())
        if not opening and not closing:
            if len(tokens) == 1 and tokens[0].kind == "atom" and not tokens[0].encoded:
                return Mailbox("", "", comment, tokens[0].text)  # a bare local part, "mailer-daemon"
            return Mailbox(_addr_spec(tokens), "", comment)
        if len(opening) != 1 or closing != [len(tokens) - 1] or opening[0] > closing[0]:
            raise _Invalid("not one angle-addr at the end")
        name = _phrase(tokens[:opening[0]])
        inside = tokens[opening[0] + 1:-1]
        if not inside:
            return Mailbox("", name, comment)  # the null sender, "MAILER-DAEMON <>"
        if len(inside) == 1 and inside[0].kind == "atom" and not inside[0].encoded:
            # A bare local part, "Mail Delivery Subsystem <MAILER-DAEMON>".
            return Mailbox("", name, comment, inside[0].text)
        return Mailbox(_addr_spec(inside), name, comment)
    except _Invalid:
        return None


def is_address(address: str) -> bool:
    """Whether ``address`` is a plain addr-spec that may name a user: a dot-atom local part of at most 64
    characters and a host name (labels of letters, digits and inner hyphens, Unicode letters included) as
    the domain, at most 254 characters in all (RFC 5321's limits on a path)."""
    if len(address) > MAX_PATH_CHARS or not _PLAIN_ADDRESS.fullmatch(address) or not all(map(_allowed, address)) \
            or _ENCODED_WORD.search(address):
        return False
    local, _, domain = address.partition("@")
    return (len(local) <= MAX_LOCAL_PART_CHARS and not local.startswith(".") and not local.endswith(".")
            and ".." not in local and all(_LABEL.fullmatch(label) for label in domain.split(".")))


# RFC 5321, 4.5.3.1: a local part of 64 octets, a path of 256 with its angle brackets.
MAX_LOCAL_PART_CHARS = 64
MAX_PATH_CHARS = 254
