"""Spotting machine-generated mail (bounces, reports, auto-replies) that must be discarded without reply.

Answering such mail creates loops and tickets nobody wrote. The verdict uses only what
:func:`mailintake.parsing.parse_message` collected: decoded headers, the MIME types of all parts, the
top-level ``report-type`` and the failed recipients flufl.bounce found in the MIME tree.

Precision matters more than recall: a real customer message flagged here is lost silently. So weak
signals (a bounce-like subject, flufl.bounce's heuristics) only count together with a second one, and
headers that ordinary clients add (Outlook's ``X-Auto-Response-Suppress``) are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # parsing asks `corroborated` before it runs flufl.bounce, so no import cycle
    from mailintake.parsing import ParsedMessage

Kind = Literal["bounce", "auto-reply"]


@dataclass(frozen=True)
class AutomailVerdict:
    kind: Kind
    reason: str


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
    r"^(postmaster|post[-_]?office|mailer|mail[-_]?admin|mail[-_]?system|smtp[-_]?gw|sysadmin|root|"
    r"no[-_.]?reply|do[-_.]?not[-_.]?reply|bounces?|.*[-_]admin|.*[-_]errors?|.*[-_]bounces?)$",
    re.I,
)

# Subjects of delivery failures and delays, as real MTAs write them (anchored: a human's "Re: ..." or
# "Fwd: ..." about a bounce is not one).
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(?:\[[^\]]*\]\s*)?(?:"
    r"undeliver(?:able|ed)|undelivered mail|delivery status notification|"
    r"(?:mail )?delivery (?:failure|failed)|"
    r"mail delivery (?:failed|failure|status|problem|error)|message delivery failure|"
    r"returned mail|returned mail:|failure notice|non[- ]?delivery|delivery notification|"
    r"mail system error|could not (?:be )?deliver|delivery has failed|message not delivered|"
    r"delayed mail|warning: (?:could not send|message .* delayed)|delivery (?:delayed|report)|"
    r"there was an error sending your mail|email bounce|bounced? mail|"
    r"unzustellbar|nicht zustellbar|non remis|non distribuable|no se puede entregar|"
    r"mail could not be delivered|error sending message|"
    r"メッセージを配信できません|配信エラー|送信エラー)",
    re.I,
)

_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(?:"
    r"out of (?:the )?office|ooo\b|automatic reply|auto[- ]?reply|auto[- ]?response|autosvar|autoresponse|"
    r"automatische antwort|abwesenheit|abwesenheitsnotiz|réponse automatique|absence|"
    r"respuesta automática|risposta automatica|automatisch antwoord|afwezig|"
    r"vacation(?: reply| message|:)|away from (?:the|my) office|on vacation|i am (?:currently )?out of"
    r")",
    re.I,
)

_LIST_ADMIN = re.compile(r"^.+[-_](admin|owner|request|bounces?)$|^owner-.+$", re.I)
_LIST_MANAGER_HEADERS = ("x-mlserver", "mailing-list", "x-mailman-version", "list-id", "x-ml-name",
                         "x-sympa-to", "x-list-administrivia")

_LIST_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply", "auto-reply"})


def _local_part(addr: str) -> str:
    return addr.split("@", 1)[0] if "@" in addr else addr


def _is_daemon(msg: ParsedMessage) -> bool:
    return bool(_DAEMON.match(_local_part(msg.sender.email)) or _DAEMON.match(msg.sender.name.strip()))


def _is_system(msg: ParsedMessage) -> bool:
    return _is_daemon(msg) or bool(_SYSTEM.match(_local_part(msg.sender.email)))


def _null_return_path(msg: ParsedMessage) -> bool:
    rp = msg.headers.get("return-path")
    return rp is not None and rp.strip() in ("<>", "")


def corroborated(msg: ParsedMessage) -> bool:
    """A signal, independent of flufl.bounce's heuristics, that the mail may come from a mail system.

    The parser runs flufl.bounce (which scans every text part with many patterns) only when this holds,
    since its findings count for nothing without it.
    """
    auto_submitted = msg.headers.get("auto-submitted", "").split(";", 1)[0].strip().lower()
    return bool(_is_system(msg) or _BOUNCE_SUBJECT.match(msg.subject) or _null_return_path(msg)
                or auto_submitted not in ("", "no"))


def classify(msg: ParsedMessage) -> AutomailVerdict | None:
    """Say whether ``msg`` is a bounce/report or an auto-reply; None for mail a person wrote."""
    h = msg.headers
    subject = msg.subject

    # 1. Structure: a machine-readable report is authoritative.
    if msg.report_type in _REPORTS:
        return AutomailVerdict("bounce", _REPORTS[msg.report_type])
    for ctype in msg.content_types:
        sub = ctype.split("/", 1)[1] if ctype.startswith("message/") else ""
        if sub in _REPORTS:
            return AutomailVerdict("bounce", f"{_REPORTS[sub]} ({ctype} part)")

    bounce_subject = bool(_BOUNCE_SUBJECT.match(subject))
    auto_submitted = h.get("auto-submitted", "").split(";", 1)[0].strip().lower()
    has_original = any(t in ("message/rfc822", "text/rfc822-headers") for t in msg.content_types)

    # 2. Senders that only mail systems use.
    if _is_daemon(msg):
        return AutomailVerdict("bounce", f"sent by the mail system ({msg.sender.email or msg.sender.name})")

    # 3. flufl.bounce found failed recipients; its heuristics need a second, independent signal.
    if msg.bounced_recipients and corroborated(msg):
        return AutomailVerdict("bounce", "delivery failure report (flufl.bounce found failed recipients)")

    # 4. Client-generated unsubscribe requests (RFC 2369 mailto: List-Unsubscribe) are reports too.
    if h.get("x-apple-unsubscribe", "").strip().lower() == "true" or (
        auto_submitted not in ("", "no") and subject.strip().lower() == "unsubscribe"
    ):
        return AutomailVerdict("bounce", "list unsubscribe request generated by a mail client")

    # A returned original from a system address with the null sender of RFC 5321 notifications,
    # whatever the (often localised or bland) subject says.
    if has_original and _null_return_path(msg) and _is_system(msg):
        return AutomailVerdict("bounce", "returned message from a system address with a null return path")

    # Mailing-list managers (ezmlm, fml, Mailman, Sympa) reject or hold posts from administrative
    # addresses; list posts themselves carry the author's (or the list's posting) address instead.
    if _LIST_ADMIN.match(_local_part(msg.sender.email)) and any(k in h for k in _LIST_MANAGER_HEADERS):
        return AutomailVerdict("bounce", "mailing-list manager notice")

    # Hotmail/Outlook.com JMRP complaints predate ARF and have no report structure.
    if has_original and re.match(r"^\s*complaint about message from ", subject, re.I):
        return AutomailVerdict("bounce", "abuse complaint (Microsoft JMRP)")

    # 5. Without structural or recipient evidence of a failure, the sender's RFC 3834 declaration
    # decides: a postmaster's "auto-replied" notice is discarded as an auto-reply.
    if auto_submitted not in ("", "no"):
        return AutomailVerdict("auto-reply", f"Auto-Submitted: {auto_submitted}")

    # 6. A failure subject with a second machine signal: a system sender, the null return path that
    # RFC 5321 prescribes for notifications, or the returned original attached.
    if bounce_subject and (_is_system(msg) or _null_return_path(msg) or has_original):
        return AutomailVerdict("bounce", f"delivery failure notice (subject {subject[:60]!r})")

    # 7. Auto-replies by the de-facto headers and subjects.
    for name in ("x-autoreply", "x-autorespond", "x-autoresponder", "x-auto-reply"):
        value = h.get(name, "").strip().lower()
        if name in h and value not in ("no", "false", "0"):
            return AutomailVerdict("auto-reply", f"{name}: {value or '(present)'}")
    if h.get("x-apple-action", "").strip().upper() == "VACATION":
        return AutomailVerdict("auto-reply", "X-Apple-Action: VACATION")
    # Exchange sets this on its own auto-replies; it is *not* X-Auto-Response-Suppress, which Outlook
    # puts on ordinary mail to ask others not to auto-reply.
    if h.get("x-ms-exchange-generated-message-source") or h.get("x-ms-exchange-inbox-rules-loop"):
        return AutomailVerdict("auto-reply", "generated by an Exchange server rule")
    if h.get("x-autogenerated", "").strip().lower() in ("reply", "forward", "mirror"):
        return AutomailVerdict("auto-reply", f"X-AutoGenerated: {h['x-autogenerated']}")
    precedence = h.get("precedence", "").strip().lower()
    if precedence in _LIST_PRECEDENCE:
        return AutomailVerdict("auto-reply", f"Precedence: {precedence}")
    if h.get("x-precedence", "").strip().lower() in _LIST_PRECEDENCE:
        return AutomailVerdict("auto-reply", f"X-Precedence: {h['x-precedence'].strip().lower()}")
    if _AUTO_REPLY_SUBJECT.match(subject):
        return AutomailVerdict("auto-reply", f"vacation/out-of-office subject {subject[:60]!r}")
    return None
