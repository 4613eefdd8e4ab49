"""Telling machine-made mail apart, and what may happen to it.

Two verdicts, because a discarded customer mail is the worst failure this product can have (nobody sees
it, nobody answers it):

* **discard** (``bounce``, ``auto-reply``): delivery failures, delivery/disposition/abuse reports and real
  automatic replies. They carry nothing a tracker should file, and answering them makes loops.
* **accept, never answer automatically** (``list``, ``bulk``, ``auto-generated``, ``rule-forward``,
  ``automated-sender``): mailing-list posts, newsletters, cron, monitoring and
  ticket-system notifications, mail forwarded by someone's inbox rule, no-reply senders. People (or the
  systems a tracker exists to hear from) wrote them; they become items, but no acknowledgement or
  rejection reply ever goes back, so two automatic systems cannot talk to each other.

A mail is discarded only on evidence that a machine sent it: the message's own structure (a top-level
``multipart/report``), a sender only mail systems use, the null return path of RFC 5321 notifications, or
an explicit automatic-reply declaration (RFC 3834 ``Auto-Submitted: auto-replied``, the vendors' vacation
headers). Weak signals (a subject, flufl.bounce's body heuristics, a report part inside a mail a person
forwarded) count only together with an independent one. A subject alone never discards.

The verdict uses only what :func:`mailintake.parsing.parse_message` collected: decoded headers, the MIME
types of the message's own parts (an attached message is not walked), the top-level ``report-type`` and
the failed recipients flufl.bounce found. Every verdict names the signals that decided it, for the ledger.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from mailintake.markers import is_own_message_id
from mailintake.message import ParsedMessage

Kind = Literal["bounce", "auto-reply", "list", "bulk", "auto-generated", "rule-forward", "automated-sender"]
DISCARD_KINDS: frozenset[str] = frozenset({"bounce", "auto-reply"})

# What each kind is called in ledger lines and reply refusals.
DESCRIPTIONS: dict[str, str] = {
    "bounce": "bounce",
    "auto-reply": "auto-reply",
    "list": "mailing-list mail",
    "bulk": "bulk mail",
    "auto-generated": "automatically generated mail",
    "rule-forward": "mail forwarded by an inbox rule",
    "automated-sender": "mail from an automated sender",
}


@dataclass(frozen=True)
class AutomailVerdict:
    kind: Kind
    reason: str
    signals: tuple[str, ...] = ()  # the evidence, each as the header or structure it was read from

    @property
    def discard(self) -> bool:
        """Discard without reply (True), or accept and never answer automatically (False)."""
        return self.kind in DISCARD_KINDS

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self.kind]


_REPORTS = {
    "delivery-status": "delivery status notification (RFC 3464)",
    "global-delivery-status": "delivery status notification (RFC 6533)",
    "feedback-report": "abuse/feedback report (ARF, RFC 5965)",
    "disposition-notification": "message disposition notification (RFC 8098)",
    "global-disposition-notification": "message disposition notification (RFC 6533)",
}

# Local parts (or display names) that only mail systems use.
_DAEMON = re.compile(r"^(mailer[-_]?daemon|mail[-_]?daemon|mail delivery (subsystem|system)|mmdf)$", re.I)
_SYSTEM = re.compile(
    r"^(post[-_]?master|post[-_]?office|mailer|mail[-_]?admin|mail[-_]?system|smtp[-_]?gw|"
    r"no[-_.]?reply|do[-_.]?not[-_.]?reply|bounces?|[^@]*[-_]errors?|[^@]*[-_]bounces?)$",
    re.I,
)
# Senders that are programs rather than people (no-reply relays, cron, monitoring): their mail is filed,
# never answered.
_AUTOMATED = re.compile(
    r"^(no[-_.]?reply|do[-_.]?not[-_.]?reply|noreply[-_.].*|.*[-_.]no[-_.]?reply|root|cron|daemon|"
    r"nagios|icinga|zabbix|alertmanager|prometheus|grafana|monitoring|monitor|alerts?|jenkins|"
    r"notifications?|notify)$",
    re.I,
)

# Subjects of delivery failures and delays, as real MTAs write them (anchored: a human's "Re: ..." or
# "Fwd: ..." about a bounce is not one). Only ever one signal among two.
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(?:\[[^\]]{0,80}\]\s*)?(?:"
    r"undeliver(?:able|ed)|undelivered mail|delivery status notification|"
    r"(?:e-?mail )?delivery (?:failure|failed)|(?:e-?)?mail error|"
    r"mail delivery (?:failed|failure|status|problem|error)|message delivery failure|"
    r"returned mail|failure notice|non[- ]?delivery|delivery notification|"
    r"mail system error|could not (?:be )?deliver|delivery has failed|message not delivered|"
    r"delayed mail|warning: (?:could not send|message .{0,200} delayed)|delivery (?:delayed|report)|"
    r"there was an error sending your mail|email bounce|bounced? mail|"
    r"unzustellbar|nicht zustellbar|non remis|non distribuable|no se puede entregar|"
    r"mail could not be delivered|error sending message|"
    r"メッセージを配信できません|配信エラー|送信エラー|メールエラー)",
    re.I,
)

# The subject prefixes mail clients and servers put before the original subject of an automatic reply
# ("Automatic reply: <subject>"), in the languages they ship. A prefix, colon included: a person's
# "Automatic reply settings missing in webmail" or "Out of office message shows the wrong dates" is not one.
_AUTO_REPLY_PREFIX = re.compile(
    r"^\s*(?:"
    r"automatic reply|auto[- ]?reply|autoreply|auto[- ]?response|autoresponse|"
    r"out of (?:the )?office(?: auto ?reply)?|ooo|vacation reply|away from (?:the|my) office|"
    r"abwesenheitsnotiz|abwesend|automatische antwort|réponse automatique|absence|"
    r"respuesta automática|risposta automatica|automatisch antwoord|afwezig|autosvar|automatisk svar|"
    r"automatisk besked|automaattinen vastaus|odpowiedź automatyczna|automatyczna odpowiedź|"
    r"automatická odpověď|"
    r"automatikus válasz|resposta automática|otomatik yanıt|автоматический ответ|автоответ|"
    r"自動回覆|自动回复|自動応答|自動返信|자동 회신"
    r")\s*:",
    re.I,
)
# Subjects that open the way automatic replies do, without the prefix shape ("Out of office until 3 May",
# "Jane Doe is out of the office"): one signal among two, never alone.
_AUTO_REPLY_OPENING = re.compile(
    r"^\s*(?:out of (?:the )?office|automatic reply|auto[- ]?reply|on vacation|away until|"
    r"i am (?:currently )?(?:out of|away)|abwesenheitsnotiz|ich bin (?:bis|vom)|je suis absent)"
    r"|\bis out of (?:the )?office\b",
    re.I,
)

# An SMTP failure reply quoted in a body ("550 5.1.1 <x@y>... User unknown", "550 - Requested action not
# taken: no such user here"): what a mail system's notice says and a person rarely writes. Bounded windows.
_SMTP_FAILURE = re.compile(
    r"(?m)^[ \t>]{0,8}.{0,40}?\b[45][0-5]\d[ -](?:[ \t]{0,3}[45]\.\d{1,3}\.\d{1,3}\b|.{0,80}?(?:user unknown|"
    r"no such (?:user|recipient|mailbox)|mailbox (?:unavailable|full|not found|is full)|requested action not "
    r"taken|recipient (?:address )?rejected|relay(?:ing)? (?:denied|not permitted)|does not exist))",
    re.I,
)
_BODY_SCAN_CHARS = 20_000

_LIST_ADMIN = re.compile(r"^.+[-_](admin|owner|request|bounces?)$|^owner-.+$", re.I)
_LIST_HEADERS = ("list-id", "list-post", "mailing-list", "x-mailman-version", "x-mlserver", "x-ml-name",
                 "x-sympa-to", "x-list-administrivia", "x-google-group-id", "x-loop-list")
_RULE_FORWARD_HEADERS = ("x-ms-exchange-inbox-rules-loop", "x-ms-exchange-generated-message-source")
_AUTO_REPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-autoresponder", "x-auto-reply")
_NO = ("no", "false", "0")


def _local_part(addr: str) -> str:
    return addr.split("@", 1)[0] if "@" in addr else addr


def _first_token(value: str) -> str:
    # "auto-replied (zimbra; vacation)", "auto-generated; owner-email=...": the keyword before any comment
    # or parameter.
    match = re.match(r"\s*([\w-]+)", value)
    return match.group(1).lower() if match else ""


@dataclass(frozen=True)
class _Evidence:
    """The signals of one message, each read once."""

    auto_submitted: str  # the keyword, lower-cased; "" when absent or "no"
    precedence: str  # Precedence or X-Precedence, lower-cased
    null_return_path: bool
    null_from: bool  # "From: <>": the null sender written into the header, as some MTAs do
    daemon: bool
    system: bool
    sender_signal: str  # "From: ..." when the sender is a mail system's, else ""
    bounce_subject: bool
    auto_reply_prefix: bool
    auto_reply_opening: bool
    answers_our_mail: str  # the id of our mail it answers, or ""
    has_original: bool
    report_parts: tuple[str, ...]  # report parts in the message's own tree

    @classmethod
    def of(cls, msg: ParsedMessage) -> _Evidence:
        h = msg.headers
        auto = _first_token(h.get("auto-submitted", ""))
        rp = h.get("return-path")
        local = _local_part(msg.sender.email)
        daemon = bool(_DAEMON.match(local) or _DAEMON.match(msg.sender.name.strip()))
        system = daemon or bool(_SYSTEM.match(local))
        ours = next((i for i in (*msg.in_reply_to, *msg.references) if is_own_message_id(i)), "")
        return cls(
            auto_submitted="" if auto == "no" else auto,
            precedence=(h.get("precedence") or h.get("x-precedence") or "").strip().lower(),
            null_return_path=rp is not None and rp.strip() in ("<>", ""),
            null_from=h.get("from", "").strip() == "<>",
            daemon=daemon,
            system=system,
            sender_signal=f"From: {msg.sender.email or msg.sender.name}" if system else "",
            bounce_subject=bool(_BOUNCE_SUBJECT.match(msg.subject)),
            auto_reply_prefix=bool(_AUTO_REPLY_PREFIX.match(msg.subject)),
            auto_reply_opening=bool(_AUTO_REPLY_OPENING.search(msg.subject[:300])),
            answers_our_mail=ours,
            has_original=any(t in ("message/rfc822", "text/rfc822-headers") for t in msg.content_types),
            report_parts=tuple(t for t in msg.content_types if t.split("/", 1)[-1] in _REPORTS
                               and t.startswith("message/")),
        )

    def machine_origin(self) -> list[str]:
        """Signals that a mail system, not a person's client, sent the message (the envelope and headers)."""
        found = [self.sender_signal] if self.system else []
        if self.null_return_path:
            found.append("Return-Path: <>")
        if self.null_from:
            found.append("From: <>")
        if self.auto_submitted:
            found.append(f"Auto-Submitted: {self.auto_submitted}")
        return found


def corroborated(msg: ParsedMessage) -> bool:
    """A signal, independent of flufl.bounce's heuristics, that the mail may come from a mail system.

    The parser runs flufl.bounce (which scans every text part with many patterns) only when this holds,
    since its findings count for nothing without it.
    """
    evidence = _Evidence.of(msg)
    return bool(evidence.machine_origin() or evidence.bounce_subject)


def classify(msg: ParsedMessage) -> AutomailVerdict | None:
    """What kind of machine-made mail ``msg`` is, with the signals; None for ordinary mail a person wrote."""
    evidence = _Evidence.of(msg)
    return _discard(msg, evidence) or _no_answer(msg, evidence)


def _discard(msg: ParsedMessage, ev: _Evidence) -> AutomailVerdict | None:
    """Bounces, reports and auto-replies: each rule names its evidence. The rules run in order, the first
    that matches decides."""
    return _report(msg, ev) or _notice(msg, ev)


def _report(msg: ParsedMessage, ev: _Evidence) -> AutomailVerdict | None:
    """Rules 1 to 5: reports by their structure, mail systems by their address, unsubscribe requests."""
    h = msg.headers
    subject = msg.subject
    origin = ev.machine_origin()
    subject_signal = f"Subject: {subject[:80]}"

    # 1. Structure: a message that is itself a machine-readable report.
    if msg.report_type in _REPORTS:
        return AutomailVerdict("bounce", _REPORTS[msg.report_type],
                               (f"Content-Type: multipart/report; report-type={msg.report_type}", *origin))
    # A report part inside a mail: a mail system's own (with a machine sender), or a person forwarding a
    # bounce to ask about it (kept).
    if ev.report_parts and (origin or ev.bounce_subject):
        sub = ev.report_parts[0].split("/", 1)[1]
        extra = [] if origin else [subject_signal]
        return AutomailVerdict("bounce", f"{_REPORTS[sub]} ({ev.report_parts[0]} part)",
                               (f"{ev.report_parts[0]} part", *origin, *extra))

    # 2. Senders that only mail systems use.
    if ev.daemon:
        return AutomailVerdict("bounce", f"sent by the mail system ({msg.sender.email or msg.sender.name})",
                               tuple(origin))

    # 3. flufl.bounce found failed recipients; its heuristics need a second, independent signal.
    if msg.bounced_recipients and (origin or ev.bounce_subject):
        extra = [] if origin else [subject_signal]
        return AutomailVerdict("bounce", "delivery failure report (flufl.bounce found failed recipients)",
                               ("failed recipients: " + ", ".join(msg.bounced_recipients[:5]), *origin, *extra))

    # 4. Unsubscribe requests that mail clients generate (RFC 2369 mailto: List-Unsubscribe).
    if h.get("x-apple-unsubscribe", "").strip().lower() == "true":
        return AutomailVerdict("bounce", "list unsubscribe request generated by a mail client",
                               ("X-Apple-Unsubscribe: true",))
    if ev.auto_submitted and subject.strip().lower() == "unsubscribe":
        return AutomailVerdict("bounce", "list unsubscribe request generated by a mail client",
                               (f"Auto-Submitted: {ev.auto_submitted}", "Subject: unsubscribe"))

    # 5. A returned original from a system address with the null sender of RFC 5321 notifications,
    # whatever the (often localised or bland) subject says.
    if ev.has_original and ev.null_return_path and ev.system:
        return AutomailVerdict("bounce", "returned message from a system address with a null return path",
                               ("message/rfc822 part", *origin))

    return None


def _notice(msg: ParsedMessage, ev: _Evidence) -> AutomailVerdict | None:
    """Rules 6 to 11: list managers' and mail systems' notices, complaints and automatic replies."""
    h = msg.headers
    subject = msg.subject
    origin = ev.machine_origin()
    subject_signal = f"Subject: {subject[:80]}"

    # 6. Mailing-list managers (ezmlm, fml, Mailman, Sympa) answer posts from administrative addresses;
    # list posts themselves carry the author's (or the list's posting) address instead.
    list_header = next((k for k in _LIST_HEADERS if k in h), None)
    if _LIST_ADMIN.match(_local_part(msg.sender.email)) and list_header is not None:
        return AutomailVerdict("bounce", "mailing-list manager notice",
                               (f"From: {msg.sender.email}", f"{list_header.title()}: {h[list_header][:80]}"))

    # 7. Hotmail/Outlook.com JMRP complaints predate ARF and have no report structure.
    if ev.has_original and re.match(r"^\s*complaint about message from ", subject, re.I):
        return AutomailVerdict("bounce", "abuse complaint (Microsoft JMRP)", ("message/rfc822 part", subject_signal))

    # 8. Automatic replies declared as such (RFC 3834 and the vendors' vacation headers); before the
    # subject rule, since a postmaster's "auto-replied" notice declares what it is.
    declared = _declared_auto_reply(h, ev)
    if declared is not None:
        return AutomailVerdict("auto-reply", declared, (declared,))

    # 9. A failure subject from a mail system's address or with the null return path.
    if ev.bounce_subject and (ev.system or ev.null_return_path or ev.null_from):
        return AutomailVerdict("bounce", f"delivery failure notice (subject {subject[:60]!r})",
                               (subject_signal, *origin))
    # 10. A mail system's address quoting an SMTP failure reply, whatever the subject.
    if ev.system:
        failure = _SMTP_FAILURE.search(msg.text[:_BODY_SCAN_CHARS])
        if failure is not None:
            return AutomailVerdict("bounce", "delivery failure notice (an SMTP failure reply in the text)",
                                   (*origin, f"text: {failure.group(0).strip()[:80]}"))

    # 11. An automatic reply's subject counts together with an independent signal: other RFC 3834
    # headers, a Precedence, the vendors' auto-reply markers, the null return path, or an answer to mail
    # this system sent.
    if ev.auto_reply_prefix or ev.auto_reply_opening:
        second = _auto_reply_corroboration(h, ev)
        if second:
            return AutomailVerdict("auto-reply", f"automatic reply (subject {subject[:60]!r}, {second[0]})",
                                   (subject_signal, *second))
    return None


def _declared_auto_reply(h: dict[str, str], ev: _Evidence) -> str | None:
    if ev.auto_submitted == "auto-replied":
        return "Auto-Submitted: auto-replied"
    for name in _AUTO_REPLY_HEADERS:
        value = h.get(name, "").strip().lower()
        if name in h and value not in _NO:
            return f"{name.title()}: {value or '(present)'}"
    if h.get("x-apple-action", "").strip().upper() == "VACATION":
        return "X-Apple-Action: VACATION"
    if ev.precedence in ("auto_reply", "auto-reply"):
        return f"Precedence: {ev.precedence}"
    if h.get("x-autogenerated", "").strip().lower() == "reply":
        return "X-AutoGenerated: Reply"
    return None


def _auto_reply_corroboration(h: dict[str, str], ev: _Evidence) -> list[str]:
    found = ev.machine_origin()
    if ev.precedence in ("bulk", "junk", "list"):
        found.append(f"Precedence: {ev.precedence}")
    if ev.answers_our_mail:
        found.append(f"In-Reply-To: <{ev.answers_our_mail}> (a mail this system sent)")
    # Exchange puts this on its automatic replies; Outlook also on ordinary mail, which is why it counts
    # only beside an automatic reply's subject prefix ("Automatic reply: ..."), never beside a sentence
    # that merely opens with the words ("Automatic reply settings missing in webmail").
    if "x-auto-response-suppress" in h and ev.auto_reply_prefix:
        found.append(f"X-Auto-Response-Suppress: {h['x-auto-response-suppress'][:40]}")
    return found


def _no_answer(msg: ParsedMessage, ev: _Evidence) -> AutomailVerdict | None:
    """Mail to file but never to answer automatically; None for a person's ordinary mail."""
    h = msg.headers
    if ev.auto_submitted:
        return AutomailVerdict("auto-generated", f"Auto-Submitted: {ev.auto_submitted}",
                               (f"Auto-Submitted: {ev.auto_submitted}",))
    rule = next((k for k in _RULE_FORWARD_HEADERS if k in h), None)
    if rule is None and h.get("x-autogenerated", "").strip().lower() in ("forward", "mirror"):
        rule = "x-autogenerated"
    if rule is not None:
        signal = f"{rule.title()}: {h[rule][:80]}"
        return AutomailVerdict("rule-forward", signal, (signal,))
    list_header = next((k for k in _LIST_HEADERS if k in h), None)
    if list_header is not None or ev.precedence == "list":
        signal = f"{list_header.title()}: {h[list_header][:80]}" if list_header else "Precedence: list"
        return AutomailVerdict("list", signal, (signal,))
    if ev.precedence in ("bulk", "junk"):
        return AutomailVerdict("bulk", f"Precedence: {ev.precedence}", (f"Precedence: {ev.precedence}",))
    if "list-unsubscribe" in h:
        signal = f"List-Unsubscribe: {h['list-unsubscribe'][:80]}"
        return AutomailVerdict("bulk", signal, (signal,))
    if ev.system or _AUTOMATED.match(_local_part(msg.sender.email)):
        return AutomailVerdict("automated-sender", f"From: {msg.sender.email}", (f"From: {msg.sender.email}",))
    return None
