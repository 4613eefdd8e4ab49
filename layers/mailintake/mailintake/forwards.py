"""Forwarded mail: who wrote a mail that a person forwarded, and where the forwarder's own note ends.

A forward shows the original sender in one of two ways:

* **inline**, quoted in the body under a marker and a header block, as mail clients write it:

  - Gmail: ``---------- Forwarded message ---------`` (``Weitergeleitete Nachricht``, ``Mensaje reenviado``,
    ``Message transféré``, ``Doorgestuurd bericht``, ``Messaggio inoltrato``, ``Mensagem encaminhada``, ...),
    then ``From: Name <address>``, ``Date:``, ``Subject:``, ``To:``;
  - Apple Mail: ``Begin forwarded message:`` (``Anfang der weitergeleiteten Nachricht:``, ``Début du message
    réexpédié :``, ``Inicio del mensaje reenviado:``, ...), a blank line, then the header block;
  - Thunderbird: ``-------- Forwarded Message --------`` with ``Subject:``/``Betreff:``/``Sujet :`` first;
  - Outlook (desktop and on the web): a rule of underscores, or ``-----Original Message-----``
    (``Ursprüngliche Nachricht``, ``Message d'origine``, ...), then ``From:``/``Von:``/``De :``/``Van:``/
    ``Da:`` with ``Sent:``/``Gesendet:``/``Envoyé :``/``Enviado:``/``Verzonden:``/``Inviato:``, ``To:`` and
    ``Subject:``; the address as ``Name <address>``, ``Name [mailto:address]`` or ``Name <mailto:address>``.

  A forward marker is enough by itself. An "Original Message" line, a rule or a bare header block is what
  a *reply* quotes too, so they count only when the subject says the mail is a forward (``Fwd:``, ``WG:``,
  ``TR:``, ``RV:``, ``Doorst:``, ``I:``..., see :func:`mailintake.quoting.is_forward_subject`). The
  vocabulary is :mod:`mailintake.quoting`'s (marker phrases and header labels in some twenty languages),
  the same that talon, mail-parser-reply and Zammad's own reply cutting use to find such blocks.
* **attached**, as a ``message/rfc822`` part ("forward as attachment"): :mod:`mailintake.parsing` reads the
  attached message's header and text and hands them to :func:`attached`.

Only the first, outermost forward counts: the customer's own mail may quote or forward others, and that
is its content. A header block whose From shows no address (Exchange writes ``From: Miller, Anna`` for
people of its own organisation) names nobody, and the mail stays an ordinary mail.

Pure: text in, a :class:`~mailintake.message.Forwarded` out. Whether a forward is believed (who may forward
on someone's behalf) is the intake rules' decision (:func:`mailintake.intake.take_forward`).
"""

from __future__ import annotations

import re

from mailintake import quoting
from mailintake.addresses import is_address
from mailintake.message import Address, Forwarded

# A forward's marker stands near the top (under a short note and a signature): only this much of the body
# is searched for it, so that the work does not grow with the mail.
SCAN_CHARS = 64 * 1024
SCAN_LINES = 400
# Header labels of the original subject, in the languages of the clients above.
_SUBJECT_KEYS = frozenset({
    "subject", "betreff", "objet", "sujet", "asunto", "oggetto", "onderwerp", "assunto", "emne", "ämne",
    "aihe", "temat", "předmět", "predmet", "tárgy", "тема", "konu", "θέμα", "subiect", "件名", "主题", "主旨", "제목",
})
_KEY = re.compile(r"[*_]{0,2}[ \t]*([^\W\d_][^:：\n]{0,24}?)[ \t]*[*_]{0,2}[ \t]*[:：][ \t]*[*_]{0,2}")
_ADDRESS = re.compile(r"[\w.!#$%&'+/=?^`{|}~-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+")


def _value(line: str) -> tuple[str, str]:
    """The lower-cased label and the value of a "Key: value" line (markdown emphasis removed)."""
    match = _KEY.match(line)
    if match is None:
        return "", line
    return " ".join(match.group(1).lower().split()), line[match.end():].strip().strip("*_ \t")


def original_sender(value: str) -> Address | None:
    """The one address a forwarded From value names ("Ann <ann@x>", "Ann [mailto:ann@x]", "ann@x",
    "Ann <mailto:ann@x>", a markdown link), with its display name; None when it names none or several."""
    found = list(dict.fromkeys(a.lower().rstrip(".") for a in _ADDRESS.findall(value[:400])))
    if len(found) != 1 or not is_address(found[0]):
        return None
    cut = min((i for i in (value.find("<"), value.find("["), value.lower().find(found[0])) if i >= 0),
              default=len(value))
    name = value[:cut].strip().strip("\"'*_ \t")
    return Address(found[0], "" if name.lower() == found[0] else name[:200])


def _marker(lines: list[str], forwarded_subject: bool) -> tuple[int, int, str] | None:
    """(marker line, first header line, how recognised) of the first forward in ``lines`` (stripped)."""
    for i, line in enumerate(lines[:SCAN_LINES]):
        if not line:
            continue
        if quoting.is_forward_marker(line):
            kind = "forward marker"
        elif forwarded_subject and quoting.is_original_marker(line):
            kind = "original-message line"
        elif forwarded_subject and quoting.is_separator(line):
            kind = "rule above a header block"
        elif forwarded_subject and quoting.header_role(line) == "from" and quoting.header_block_end(lines, i):
            return i, i, "header block"
        else:
            continue
        start = next((j for j in range(i + 1, min(i + 4, len(lines))) if lines[j]), None)
        if start is not None and quoting.header_block_end(lines, start) is not None:
            return i, start, kind
        if kind == "forward marker":
            return None  # a forward with no header block under it names nobody
    return None


def inline(text: str, subject: str) -> Forwarded | None:
    """The forward quoted in ``text`` (the body as plain text), when there is one that names its sender."""
    head = text[:SCAN_CHARS]
    raw_lines = head.split("\n")
    lines = [line.strip() for line in raw_lines]
    found = _marker(lines, quoting.is_forward_subject(subject))
    if found is None:
        return None
    marker, start, kind = found
    end = quoting.header_block_end(lines, start)
    if end is None:
        return None
    sender: Address | None = None
    date = original_subject = ""
    for line in lines[start:end]:
        label, value = _value(line)
        role = quoting.header_role(line)
        if role == "from" and sender is None:
            sender = original_sender(value)
            if sender is None:
                return None  # "From: Miller, Anna": nobody to name
        elif role == "date" and not date:
            date = value[:200]
        elif label in _SUBJECT_KEYS and not original_subject:
            original_subject = value[:998]
    if sender is None:
        return None
    note = "\n".join(raw_lines[:marker]).strip()
    return Forwarded(sender=sender, subject=original_subject, date=date, note=note, kind="inline", client=kind)


def attached(note: str, sender: Address, subject: str, date: str, text: str) -> Forwarded | None:
    """An attached message as the forwarded one: ``note`` is the forwarding mail's own text; the rest is the
    attached message's (its sender as :mod:`mailintake.parsing` read it). None when it names no sender."""
    if not sender.email or not is_address(sender.email):
        return None
    return Forwarded(sender=sender, subject=subject, date=date[:200], note=note.strip(), kind="attached",
                     client="attached message", text=text)


def strip_forward_prefix(subject: str) -> str:
    """The subject without its leading forward and reply prefixes ("Fwd: RE: Printer" -> "Printer")."""
    rest = subject.strip()
    for _ in range(10):
        if not quoting.is_forward_subject(rest) and not re.match(r"(?i)(re|aw|sv|vs|antw)\s*:", rest):
            break
        rest = re.split(r"[:：]", rest, maxsplit=1)[1].strip()
    return rest or subject


def description(forwarded: Forwarded, text: str) -> str:
    """The item's description: the forwarder's note, then the forwarded message under a header that says
    whose it is. An inline forward is that already (``text``, the body); an attached one is assembled."""
    if forwarded.kind == "inline":
        return text
    header = [f"From: {forwarded.sender.name} <{forwarded.sender.email}>" if forwarded.sender.name
              else f"From: {forwarded.sender.email}"]
    if forwarded.date:
        header.append(f"Date: {forwarded.date}")
    if forwarded.subject:
        header.append(f"Subject: {forwarded.subject}")
    parts = [forwarded.note] if forwarded.note else []
    parts.append("---------- Forwarded message ----------\n" + "\n".join(header))
    if forwarded.text:
        parts.append(forwarded.text)
    return "\n\n".join(parts)
