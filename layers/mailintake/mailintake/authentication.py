"""Whether the receiving mail server authenticated the From address, as its Authentication-Results say.

Anyone can write any From address, so a "known sender" is only as good as the proof that the mail came
from the owner of the address. The receiving server checks SPF, DKIM and DMARC and writes what it found
into an ``Authentication-Results`` header (RFC 8601), above the message's own headers. A sender can
forge such headers too, so only a header from a server we trust (its authserv-id, the first word of
the value) counts, and of those only the topmost: the receiving server prepends its own, a forged one
sits below it. RFC 8601 section 5 also asks the border server to remove (or rename) headers that carry
its own authserv-id before adding its own; not every server does, which is why the topmost rule stands
on its own.

The From address judged is the one addr-spec that ``mailintake.addresses`` reads strictly out of From; a
From that is not exactly one mailbox has no domain, and nothing authenticates it. Pass is bound to that
exact domain:

* ``dmarc=pass`` (the server's own verdict) only with ``header.from`` equal to the From domain: a pass
  without ``header.from``, or naming another domain (a subdomain or parent included), proves nothing
  about this From;
* ``spf=pass`` only for an ``smtp.mailfrom`` domain aligned with the From domain (a HELO-only pass, or
  a mail-from of another domain, counts for nothing);
* ``dkim=pass`` only for a signing domain (``header.d``, else the domain of ``header.i``) aligned with it.

Aligned (:func:`aligned`) is DMARC's relaxed alignment without the public-suffix list: the same domain,
or one a subdomain of the other, never a bare top-level domain. An explicit ``dmarc=fail`` is final: the
domain's owner may ask for strict alignment, which the server applied and we do not know.

The parser is our own, not the ``authres`` package: authres rejects the whole header when the
authserv-id is missing (Microsoft 365 writes it so) and on any syntax it does not expect, and it loses a
quoted value that is followed by another property. Which header counts must not depend on a strict
parser accepting all of it (a rejected real header would let a forged one below it count), so this one
reads what it can and never raises.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mailintake.addresses import comment_end

# What may not be part of an unquoted word: white space, comments, quoted strings and the separators.
_SPECIALS = frozenset('()";=')


@dataclass(frozen=True)
class MethodResult:
    method: str  # lower-cased: dkim, spf, dmarc, ...
    result: str  # lower-cased: pass, fail, none, ...
    properties: tuple[tuple[str, str], ...] = ()  # ("header.d", "example.org"): name lower-cased

    def get(self, name: str) -> str:
        """The first value of property ``name`` (``ptype.property``), or ""."""
        return next((value for key, value in self.properties if key == name), "")


@dataclass(frozen=True)
class AuthenticationResults:
    authserv_id: str | None  # lower-cased; None when the header names no server
    results: tuple[MethodResult, ...] = ()


@dataclass(frozen=True)
class Verdict:
    passed: bool
    detail: str  # for the ledger: which server said what, e.g. "mx.example.net: dmarc=pass"


def _after_comment(value: str, i: int) -> int:
    """Where the comment whose "(" is at ``i`` ends; an unclosed one runs to the end."""
    end = comment_end(value, i)
    return len(value) if end is None else end


def _unquoted(value: str, i: int) -> tuple[str, int]:
    """The content of the quoted string whose '"' is at ``i`` (an unclosed one runs to the end), and where
    it ends."""
    text: list[str] = []
    i, n = i + 1, len(value)
    while i < n and value[i] != '"':
        if value[i] == "\\" and i + 1 < n:
            i += 1
        text.append(value[i])
        i += 1
    return "".join(text), i + 1


def _tokens(value: str) -> list[str]:
    """Words, ``;`` and ``=``; comments dropped, quoted strings unquoted and joined to the word they
    touch (``"a b"@example.org`` is one word)."""
    tokens: list[str] = []
    word: list[str] | None = None
    i, n = 0, len(value)

    def end_word() -> None:
        nonlocal word
        if word is not None:
            tokens.append("".join(word))
            word = None

    while i < n:
        char = value[i]
        if char == "(":
            end_word()
            i = _after_comment(value, i)
        elif char == '"':
            text, i = _unquoted(value, i)
            word = (word or []) + [text]
        elif char in ";=":
            end_word()
            tokens.append(char)
            i += 1
        elif char.isspace():
            end_word()
            i += 1
        else:
            start = i
            while i < n and not value[i].isspace() and value[i] not in _SPECIALS:
                i += 1
            word = (word or []) + [value[start:i]]
            if i < n and value[i] == ")":  # a stray closing parenthesis: skip it, do not loop on it
                end_word()
                i += 1
    end_word()
    return tokens


def _pairs(segment: list[str]) -> list[tuple[str, str]]:
    """``name=value`` pairs of one resinfo; anything else in it is skipped."""
    pairs = []
    i = 0
    while i < len(segment):
        if i + 2 < len(segment) and segment[i] not in ";=" and segment[i + 1] == "=" and segment[i + 2] != "=":
            pairs.append((segment[i], segment[i + 2]))
            i += 3
        else:
            i += 1
    return pairs


def parse(value: str) -> AuthenticationResults:
    """One header value; never raises. Results that do not read as ``method=result`` are left out."""
    segments: list[list[str]] = [[]]
    for token in _tokens(value):
        if token == ";":
            segments.append([])
        else:
            segments[-1].append(token)
    head, rest = segments[0], segments[1:]
    authserv_id: str | None = None
    if head and head[0] != "=" and (len(head) == 1 or head[1] != "="):
        # A version number may follow (or, in Yahoo's old form, "from=domain"); neither changes anything.
        authserv_id = head[0].lower() or None
    elif "=" in head:
        rest = segments  # no authserv-id: the value starts with a result (Microsoft 365's form)
    results = []
    for segment in rest:
        pairs = _pairs(segment)
        if not pairs:
            continue  # "none", or a stray word
        method, result = pairs[0]
        properties = tuple((k.lower(), v) for k, v in pairs[1:] if "." in k)
        results.append(MethodResult(method.split("/", 1)[0].lower(), result.lower(), properties))
    return AuthenticationResults(authserv_id, tuple(results))


def _domain(value: str) -> str:
    """The domain of an address, ``@domain`` or bare domain, lower-cased, without a trailing dot."""
    return value.rpartition("@")[2].strip().lower().rstrip(".")


def aligned(one: str, other: str) -> bool:
    """Relaxed alignment without the public-suffix list: equal, or one a subdomain of the other.

    The parent must have a dot: a bare top-level domain (``org``) would align every domain under it. A
    public suffix with a dot (``co.uk``) still aligns with its children, but a pass for it needs its SPF
    record or DKIM key, which only the registry controls. Siblings (``a.example.org`` and
    ``b.example.org``) do not align here although DMARC's organisational domains would; the server's
    own ``dmarc=pass`` covers them. Without the list, a parent and a child cannot be told from two
    registrants under a public suffix with a dot, so exact-or-subdomain is the widest safe rule. As in
    DMARC's relaxed mode, a subdomain whose DNS the owner handed to someone else (an ESP's return-path
    domain, a customer's subdomain) vouches for its parent; a domain that must not allow it publishes
    strict alignment (``adkim=s``/``aspf=s``), and the server's ``dmarc=fail`` then overrules.
    """
    one, other = _domain(one), _domain(other)
    if not one or not other:
        return False
    if one == other:
        return True
    shorter, longer = sorted((one, other), key=len)
    return "." in shorter and longer.endswith("." + shorter)


def judge(results: AuthenticationResults, from_domain: str) -> Verdict:
    """Whether one header shows ``from_domain`` authenticated."""
    server = results.authserv_id or "(no authserv-id)"
    said: list[str] = []
    dmarc_failed = False
    passed = False
    for result in results.results:
        if result.method == "dmarc":
            # The server's verdict is about the domain it read From as; it counts only when it names that
            # domain and it is ours. Without header.from it may have judged another From (a second From
            # header, another reading of a broken one), so a pass then proves nothing about this one.
            checked = {_domain(value) for key, value in result.properties if key == "header.from"}
            if result.result == "pass" and not checked:
                said.append("dmarc=pass without header.from")
            elif result.result == "pass" and checked != {from_domain}:
                said.append(f"dmarc=pass for {', '.join(sorted(checked - {from_domain}))}, not {from_domain}")
            else:
                said.append(f"dmarc={result.result}")
                dmarc_failed |= result.result == "fail"
                passed |= result.result == "pass"
        elif result.method == "spf":
            mailfrom = _domain(result.get("smtp.mailfrom"))
            ok = result.result == "pass" and aligned(mailfrom, from_domain)
            said.append(_describe(result, mailfrom, ok, from_domain))
            passed |= ok
        elif result.method == "dkim":
            signer = _domain(result.get("header.d") or result.get("header.i"))
            ok = result.result == "pass" and aligned(signer, from_domain)
            said.append(_describe(result, signer, ok, from_domain))
            passed |= ok
    if dmarc_failed:
        passed = False
    return Verdict(passed, f"{server}: {'; '.join(said) or 'no dmarc, spf or dkim result'}")


def _describe(result: MethodResult, domain: str, ok: bool, from_domain: str) -> str:
    text = f"{result.method}={result.result}"
    if result.result == "pass":
        text += f" for {domain or '(no domain)'}" + ("" if ok else f", not aligned with {from_domain}")
    return text


def verify(headers: Sequence[str], from_address: str, trusted: Iterable[str]) -> Verdict:
    """Judge the topmost of ``headers`` (top of the message first) whose authserv-id is ``trusted``."""
    ids = {t.strip().lower().rstrip(".") for t in trusted if t.strip()}
    from_domain = _domain(from_address) if "@" in from_address else ""
    for value in headers:
        results = parse(value)
        if results.authserv_id is not None and results.authserv_id.rstrip(".") in ids:
            if not from_domain:
                return Verdict(False, "no From domain to authenticate")
            return judge(results, from_domain)
    return Verdict(False, f"no Authentication-Results from {', '.join(sorted(ids))}")
