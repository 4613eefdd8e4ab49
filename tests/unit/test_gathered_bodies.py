"""Bodies gathered as bytes beside the feed parser (parsing._Gatherer) read exactly as the parser reads them."""

from __future__ import annotations

import io
import random

import pytest

from mailintake import parsing
from mailintake.bounds import MAX_MIME_DEPTH


def _body(rng: random.Random, nl: str) -> str:
    lines = []
    for _ in range(rng.randint(0, 12)):
        kind = rng.random()
        if kind < 0.15:  # boundary-like lines, of the parts around and not
            lines.append(f"--b{rng.randint(0, 6)}" + rng.choice(["", "--", " ", "x", "0"]))
        elif kind < 0.25:
            lines.append("")
        elif kind < 0.3:
            lines.append("caf\xe9 " * rng.randint(1, 3))
        else:
            lines.append(f"text {rng.randint(0, 99)}")
    return nl.join(lines) + rng.choice(["", nl, nl + nl])


def _part(rng: random.Random, depth: int, nl: str, counter: list[int]) -> str:
    r = rng.random()
    if depth > 0 and r < 0.45:
        counter[0] += 1
        b = f"b{counter[0] % 7}"
        out = (f"Content-Type: multipart/{rng.choice(['mixed', 'alternative'])}; boundary=\"{b}\"{nl}{nl}"
               + rng.choice(["", "preamble" + nl]))
        for _ in range(rng.randint(1, 3)):
            out += f"--{b}{nl}" + _part(rng, depth - 1, nl, counter) + nl
        if rng.random() < 0.8:
            out += f"--{b}--{nl}" + rng.choice(["", "epilogue" + nl])
        return out
    if depth > 0 and r < 0.6:
        return f"Content-Type: message/rfc822{nl}{nl}From: x@y.z{nl}Subject: inner{nl}" + _part(rng, depth - 1, nl,
                                                                                                 counter)
    ctype = rng.choice(["text/plain", "text/html", "application/octet-stream", "text/plain; charset=latin-1"])
    return f"Content-Type: {ctype}{nl}{nl}" + _body(rng, nl)


def _mail(seed: int) -> bytes:
    rng = random.Random(seed)
    nl = rng.choice(["\r\n", "\n", "\r\n", "\r"])
    head = f"From: a@b.c{nl}Subject: mail {seed}{nl}Message-ID: <{seed}@x>{nl}"
    return (head + _part(rng, rng.randint(0, MAX_MIME_DEPTH + 10), nl, [0])).encode("latin-1")


def _deep(levels: int, closed: bool) -> bytes:
    """multipart nesting past the bound, the innermost part long; its boundaries closed at the end or not."""
    out = b"From: a@b.c\r\nSubject: deep\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n--b0\r\n"
    for i in range(1, levels):
        out += b"Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n" % (i, i)
    out += b"Content-Type: text/plain\r\n\r\n" + b"--b1x line\r\n--b10000\r\n" * 20_000
    if closed:
        out += b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(levels)))
    return out


def _parse(raw: bytes, gather: bool, chunk: int, monkeypatch: pytest.MonkeyPatch) -> parsing.ParsedMessage:
    with monkeypatch.context() as m:
        m.setattr(parsing, "_CHUNK", chunk)
        if not gather:
            m.setattr(parsing._Gatherer, "watch_for", staticmethod(lambda part: None))
        return parsing.parse_message(io.BytesIO(raw))


@pytest.mark.parametrize("chunk", [7, 64, 65536])
def test_random_nesting_reads_the_same_gathered_or_not(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    for seed in range(400):
        raw = _mail(seed)
        assert _parse(raw, True, chunk, monkeypatch) == _parse(raw, False, chunk, monkeypatch), seed


@pytest.mark.parametrize("closed", [True, False])
@pytest.mark.parametrize("chunk", [1000, 65536])
def test_a_long_part_past_the_depth_bound_reads_the_same_gathered_or_not(
        closed: bool, chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _deep(MAX_MIME_DEPTH + 5, closed)
    gathered = _parse(raw, True, chunk, monkeypatch)
    assert gathered == _parse(raw, False, chunk, monkeypatch)
    assert any(len(a.data) > 400_000 for a in gathered.attachments)


@pytest.mark.parametrize("raw", [
    b"From: a@b.c\r\nSubject: q\r\n\r\n" + b"caf\xe9 line\r\n" * 50_000,
    b"From: a@b.c\rSubject: q\r\r" + b"body\rmore\r" * 20_000,
    b"From: a@b.c\nSubject: q\nContent-Transfer-Encoding: quoted-printable\n\n" + b"caf=E9 =\nsoft\n" * 20_000,
    b"From: a@b.c\r\nSubject: q\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b"Y2Fmw6k=\r\n" * 20_000,
    b"From: a@b.c\r\nSubject: q\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b"Y2Fm\xe9w==\r\n" * 20_000,
    b"From: a@b.c\r\nSubject: q\r\nContent-Type: message/rfc822\r\n\r\nFrom: b@c.d\r\nSubject: inner\r\n\r\n"
    + b"inner line\r\n" * 50_000,
])
def test_single_part_bodies_read_the_same_gathered_or_not(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _parse(raw, True, 4096, monkeypatch) == _parse(raw, False, 4096, monkeypatch)


def test_an_embedded_message_is_written_the_same_when_its_text_holds_the_mark(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The long body is put in at a mark after the rest is written; a mail holding the mark (it is random
    # per process, so only a test can know it) is written directly instead.
    raw = (b"From: a@b.c\r\nSubject: q\r\nContent-Type: message/rfc822\r\n\r\nFrom: b@c.d\r\nSubject: MARK\r\n\r\n"
           + b"inner line\r\n" * 50_000)
    expected = _parse(raw, False, 4096, monkeypatch)
    assert _parse(raw, True, 4096, monkeypatch) == expected
    monkeypatch.setattr(parsing._Generator, "MARK", b"MARK")
    assert _parse(raw, True, 4096, monkeypatch) == expected
