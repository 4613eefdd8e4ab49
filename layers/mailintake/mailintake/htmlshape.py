"""HTML read in one linear pass: how deep it nests, the same HTML with its nesting bounded, its text.

The HTML parsers that turn mail HTML into text and safe HTML are not linear on every input: html5ever (nh3)
checks the stack of open elements at each tag, so deep nesting costs the square of the depth; Python's
``html.parser`` (under html2text and quoting's quote stripper) rescans the rest of the input at each tag or
comment that never ends. This module reads HTML without either weakness, so that they only ever get input
they handle in linear time:

* :func:`terminated` cuts HTML at its first construct that never ends (what html.parser rescans);
* :func:`bound_depth` drops the elements opened deeper than a bound (their text stays; a block element
  becomes a line break), which bounds the nesting html5ever and html2text see;
* :func:`to_text` is a plain tag stripper for HTML too long for html2text;
* :func:`has_text` says whether HTML shows anything (text or an image).

The scanner is an approximation of the HTML tokenizer, good enough to measure and to bound: a ``>`` inside
a quoted attribute value ends the tag early, and only the few elements whose end tag is optional are closed
implicitly. Every search moves forward, and output is written to one growing buffer (``io.StringIO``), not
kept as millions of small strings: time and memory are linear in the length of the HTML. Pure: no I/O.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

# What starts a construct: a tag, end tag, declaration, processing instruction, comment or marked section.
_CONSTRUCT = re.compile(r"<[A-Za-z/!?]")
_MS_SECTION = re.compile(r"<!\[(?:if|else|endif)\b", re.IGNORECASE)
# One construct, ended exactly where _markup_end ends it (so the two never disagree about what is inside
# a construct): a comment at the next "-->", Outlook's <![if ...]> at the next "]>", other marked sections
# at the next "]]>", anything else at the next ">". Group 1 is "/" for an end tag ("!" or "?" otherwise),
# group 2 the tag's name. Applied only before _markup_end's position, where each of these closers exists,
# every match attempt that starts succeeds at the nearest one: none scans further than the token it finds.
_TOKEN = re.compile(r"<!--.*?-->|<!\[(?i:if|else|endif)\b.*?\]>|<!\[.*?\]\]>"
                    r"|<(?=[A-Za-z/!?])([/!?]?)([A-Za-z][^\s/>]{0,63})?[^>]*>", re.DOTALL)
# Elements whose content is text, not markup, to their end tag.
_RAW_TEXT = frozenset({"script", "style", "title", "textarea", "xmp", "iframe", "noembed", "noframes"})
_RAW_END = {name: re.compile(rf"</{name}[\s/>]", re.IGNORECASE) for name in _RAW_TEXT}
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
                   "track", "wbr", "basefont", "bgsound", "frame", "keygen"})
# Elements a sibling of the same kind closes (their end tag is optional), and what a new block closes.
_SELF_CLOSING_SIBLINGS = frozenset({"p", "li", "dt", "dd", "tr", "td", "th", "option", "optgroup", "thead",
                                    "tbody", "tfoot", "rb", "rt", "rp"})
_BLOCK = frozenset({"address", "article", "aside", "blockquote", "center", "details", "dir", "div", "dl",
                    "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
                    "header", "hr", "li", "main", "menu", "nav", "ol", "p", "pre", "section", "table", "tr",
                    "ul", "dd", "dt", "tbody", "thead", "tfoot", "caption", "br", "td", "th"})
# An end tag closes the element it names when that element is this near the top of the stack (misnested
# inline elements, unclosed <span>s); further down it is ignored, so matching an end tag costs O(1).
_END_TAG_REACH = 8


def _markup_end(markup: str) -> int:
    """Where the first construct that never ends starts (``len(markup)`` when every one ends): a tag,
    declaration or processing instruction without a ">" after it, a comment without "-->", a marked section
    without its "]]>" (Outlook's ``<![if ...]>``: "]>").

    Forward only: each closer is searched for once, from the last one found, so the scan is linear.
    Without marked sections and with every comment closed (nearly all HTML), only what follows the last
    ">" can be unterminated, which three searches in C find.
    """
    last_comment_end = markup.rfind("-->")
    if "<![" not in markup and markup.find("<!--", max(last_comment_end - 3, 0) if last_comment_end >= 0 else 0) < 0:
        match = _CONSTRUCT.search(markup, markup.rfind(">") + 1)
        return match.start() if match else len(markup)
    return _scan_end(markup)


def _scan_end(markup: str) -> int:
    """_markup_end's answer, construct by construct."""
    n = len(markup)
    pos = 0
    next_gt = next_comment = next_section = next_ms_section = -1
    while True:
        match = _CONSTRUCT.search(markup, pos)
        if match is None:
            return n
        lt = match.start()
        if markup.startswith("<!--", lt):
            if next_comment < lt + 4:
                next_comment = markup.find("-->", lt + 4)
            if next_comment < 0:
                return lt
            pos = next_comment + 3
        elif markup.startswith("<![", lt):
            if _MS_SECTION.match(markup, lt):
                if next_ms_section < lt:
                    next_ms_section = markup.find("]>", lt)
                closer, width = next_ms_section, 2
            else:
                if next_section < lt:
                    next_section = markup.find("]]>", lt)
                closer, width = next_section, 3
            if closer < 0:
                return lt
            pos = closer + width
        else:
            if next_gt <= lt:
                next_gt = markup.find(">", lt + 1)
            if next_gt < 0:
                return lt
            pos = next_gt + 1


def terminated(markup: str) -> str:
    """``markup`` up to its first construct that never ends (see :func:`_markup_end`).

    What is cut shows nothing in a browser (an unclosed comment hides the rest, a tag cut off by the end of
    the document is dropped), but Python's ``html.parser`` rescans the rest of the input at every such
    construct (quadratic: 120 KB of "<a " took 244 s). Handing it only this part keeps it linear.
    """
    end = _markup_end(markup)
    return markup if end == len(markup) else markup[:end]


class _Token(NamedTuple):
    start: int
    end: int
    name: str  # lower-cased tag name; "" for a comment, declaration, processing instruction or section
    closing: bool
    raw_end: int = -1  # for a raw-text element: where its content ends (its end tag starts)


def _tokens(markup: str, end: int) -> Iterator[_Token]:
    """The tags of ``markup[:end]`` in order (``end`` from :func:`_markup_end`); text is what lies between
    them. Linear in ``len(markup)``."""
    search = _TOKEN.search
    pos = 0
    while True:
        match = search(markup, pos, end)
        if match is None:
            return
        prefix, name = match.group(1, 2)
        if name is None or prefix in ("!", "?"):
            yield _Token(match.start(), match.end(), "", False)
            pos = match.end()
            continue
        name = name.lower()
        closing = prefix == "/"
        if not closing and name in _RAW_TEXT:
            found = _RAW_END[name].search(markup, match.end(), end)
            raw_end = found.start() if found else end
            yield _Token(match.start(), match.end(), name, False, raw_end)
            if raw_end >= end:
                return
            pos = raw_end
            continue
        yield _Token(match.start(), match.end(), name, closing)
        pos = match.end()


@dataclass(frozen=True)
class Bounded:
    html: str  # the HTML, or the same with elements past the bound dropped
    depth: int  # the deepest nesting seen (approximate, see the module docstring)
    dropped: int  # elements dropped for being deeper than the bound


def bound_depth(markup: str, max_depth: int) -> Bounded:  # noqa: C901 (one hot loop, written out; see below)
    """``markup`` with no element nested deeper than ``max_depth``; unchanged (the same string) when none is.

    Elements opened past the bound are dropped with their end tags; their content stays where it was, and a
    dropped block element with text before it leaves a ``<br>``, so that its text does not run into its
    neighbour's.
    """
    stack: list[str] = []
    dropped_open = 0  # dropped elements still open, to drop their end tags too
    dropped = 0
    deepest = 0
    out: io.StringIO | None = None  # made at the first dropped element
    kept_from = 0  # markup[kept_from:] is not yet in out
    text_since_break = False  # whether text was kept since the last line break put in for a dropped block
    end = _markup_end(markup)
    search = _TOKEN.search
    pos = 0
    # The loop of _tokens, written out: it runs on every HTML part, and a generator of tuples costs twice
    # as much per tag.
    while True:
        match = search(markup, pos, end)
        if match is None:
            break
        pos = match.end()
        prefix, name = match.group(1, 2)
        if name is None or prefix in ("!", "?"):
            continue
        name = name.lower()
        if name in _VOID:
            continue
        if name in _RAW_TEXT:  # its content is text, so it holds no elements: it never deepens the nesting
            if not prefix:
                found = _RAW_END[name].search(markup, pos, end)
                if found is None:
                    break
                pos = found.start()
            continue
        if prefix:  # an end tag
            if not dropped_open:
                for k in range(len(stack) - 1, max(-1, len(stack) - 1 - _END_TAG_REACH), -1):
                    if stack[k] == name:
                        del stack[k:]
                        break
                continue
            dropped_open -= 1
        else:
            if stack and ((stack[-1] == name and name in _SELF_CLOSING_SIBLINGS)
                          or (stack[-1] == "p" and name in _BLOCK)):
                stack.pop()  # "<li>a<li>b", "<p>a<div>": the open one ends here
            if len(stack) < max_depth:
                stack.append(name)
                if len(stack) > deepest:
                    deepest = len(stack)
                continue
            dropped_open += 1
            dropped += 1
            deepest = max(deepest, len(stack) + dropped_open)
        # Drop this tag: keep what came before it, and a line break for a block element after text.
        if out is None:
            out = io.StringIO()
        kept = markup[kept_from:match.start()]
        out.write(kept)
        text_since_break = text_since_break or (kept != "" and not kept.isspace())
        if name in _BLOCK and text_since_break:
            out.write("<br>")
            text_since_break = False
        kept_from = pos
    if out is None:
        return Bounded(markup, deepest, 0)
    out.write(markup[kept_from:])
    return Bounded(out.getvalue(), deepest, dropped)


_SKIPPED = frozenset({"script", "style", "title"})
_LINE_BREAK = _BLOCK | {"br"}
_PIECE = 1 << 16  # text is normalised in slices of about this many characters, cut at white space


def _text_segments(markup: str) -> Iterator[tuple[str, str]]:
    """("text", s) for the text outside skipped elements and ("tag", name or "/name") for each tag, in order."""
    end = _markup_end(markup)  # a construct that never ends, and what follows it, shows nothing
    pos = 0
    in_head = False  # the head's content is not shown
    for tok in _tokens(markup, end):
        if tok.start > pos and not in_head:
            yield "text", markup[pos:tok.start]
        if tok.raw_end >= 0:
            if tok.name not in _SKIPPED and not in_head:
                yield "text", markup[tok.end:tok.raw_end]  # <textarea>, <xmp>: their text shows
            pos = tok.raw_end
        else:
            pos = tok.end
        if tok.name == "head":
            in_head = not tok.closing
        elif tok.name == "body":
            in_head = False
        if tok.name and not in_head:
            yield "tag", ("/" if tok.closing else "") + tok.name
    if pos < end and not in_head:
        yield "text", markup[pos:end]


def _slices(text: str) -> Iterator[str]:
    """``text`` in slices of about _PIECE characters, each cut after white space (entities hold none)."""
    start = 0
    while len(text) - start > _PIECE:
        cut = max(text.rfind(" ", start, start + _PIECE), text.rfind("\n", start, start + _PIECE))
        cut = cut + 1 if cut > start else start + _PIECE
        yield text[start:cut]
        start = cut
    yield text[start:]


def has_text(markup: str) -> bool:
    """Whether the HTML shows something: text outside scripts, styles and the head, or an image."""
    for kind, value in _text_segments(markup):
        if kind == "tag":
            if value == "img":
                return True
        elif any(html.unescape(piece).split() for piece in _slices(value)):
            return True
    return False


class _TextWriter:
    """Text with its white space collapsed as a browser does (runs of spaces and source line breaks are
    one space), line breaks only where the markup makes them, at most one blank line in a row."""

    def __init__(self) -> None:
        self.out = io.StringIO()
        self.breaks = 2  # line breaks at the end of what was written (2 at the start: nothing to separate)
        self.after_word = False  # the last thing written was a word (so white space before text counts)
        self.space = False  # white space came since the last word written

    def text(self, segment: str) -> None:
        for piece in _slices(segment):
            piece = html.unescape(piece) if "&" in piece else piece
            words = piece.split()  # str.split: every Unicode space, the no-break space too
            if not words:
                self.space = self.space or piece != ""
                continue
            if self.after_word and (self.space or piece[0].isspace()):
                self.out.write(" ")
            self.out.write(" ".join(words))
            self.breaks = 0
            self.after_word = True
            self.space = piece[-1].isspace()

    def line(self, then: str = "") -> None:
        if self.breaks < 2:
            self.out.write("\n")
            self.breaks += 1
        self.after_word = self.space = False
        if then:
            self.out.write(then)
            self.breaks = 0


def to_text(markup: str) -> str:
    """The text of HTML without layout: block elements and ``<br>`` end lines, list items start with "- ".

    For HTML too long for html2text: linear in time and memory, no links, tables or quote marks.
    """
    writer = _TextWriter()
    for kind, value in _text_segments(markup):
        if kind == "text":
            writer.text(value)
        elif value == "li":
            writer.line("- ")
        elif value.lstrip("/") in _LINE_BREAK:
            writer.line()
    return writer.out.getvalue().strip()
