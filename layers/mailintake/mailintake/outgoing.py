"""Mail the system sends: replies to rejected mail, item acknowledgements, configuration alerts.

Every mail carries ``Auto-Submitted`` (RFC 3834) so other systems do not answer it, and replies go out
at most ``reply.maxPerSenderPerHour`` times per address and hour, counted in the table, so two automatic
systems can never keep a loop going. Sending goes through a :class:`MailTransport` that
``reply.transport`` chooses: SES (``send_raw_email``), SMTP, or Microsoft Graph (``sendMail`` with the
message as MIME, which keeps our headers: Graph's JSON message form takes only ``x-`` headers, so
In-Reply-To, References and Auto-Submitted would be lost and answers to our replies would not thread).

A reply is mail the system sends on a stranger's behalf, so it must not be worth abusing: it goes to the
From address only (never to a Reply-To, which anyone can point at a third party; the intake rules withhold
it when authentication is on and did not vouch for that From), at most ``reply.maxPerHour`` replies go
out per hour in all, and its text is fixed per step: of the incoming mail it quotes only a short,
sanitised excerpt of the subject, and it names no setting and no item the sender may not see.
"""

from __future__ import annotations

import base64
import email.policy
import json
import re
import smtplib
import ssl
import time
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate
from typing import Protocol

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities import parameters
from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from mailintake import automail
from mailintake.aws_clients import client
from mailintake.graph_api import GraphClient, user_path
from mailintake.markers import make_message_id
from mailintake.message import ParsedMessage
from mailintake.settings import Settings
from mailintake.store import MailboxRecord, ReplyCounterRecord, shared_connection
from mailintake.system_settings import Config
from mailintake.tls import tls_context
from mailintake.tokens import GraphTokens, MailboxLogin, TokenProvider, refused, xoauth2

logger = Logger(child=True)

SMTP_TIMEOUT = 20
SECRET_PREFIX = "mailintake/smtp/"
# Seconds a reply waits for a throttled Graph: a reply is not worth holding up a mail's processing longer.
GRAPH_SEND_WAIT_SECONDS = 10.0


class SendError(RuntimeError):
    pass


@dataclass(frozen=True)
class Outgoing:
    to: str
    subject: str
    body: str
    auto_submitted: str = "auto-replied"  # auto-generated for mail that answers nothing
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()


# Python's header registry decodes RFC 2047 encoded words in the values it is given, and (before 3.12.5)
# writes out the CR/LF they may decode to: a subject or Message-ID copied from a hostile mail
# ("=?utf-8?Q?=0D=0ABcc:_x@attacker.example?=") would become a header of its own, and smtplib sends to
# every Bcc/Cc header. So copied text is kept inert, and ids and addresses that are not plain are not used.
_PLAIN_ID = re.compile(r"[!-;=?-~]+")  # printable ASCII without white space, "<" or ">"
_PLAIN_ADDRESS = re.compile(r'[^\s<>(),;:"\[\]\\@]+@[^\s<>(),;:"\[\]\\@]+')


def _inert(text: str) -> str:
    return text.replace("=?", "= ?")


def _plain_id(value: str | None) -> bool:
    return bool(value) and bool(_PLAIN_ID.fullmatch(value or "")) and "=?" not in (value or "")


# Lines up to RFC 5322's 998 characters: with the default 78, a Message-ID longer than a line (Outlook's
# are ~80 characters) is written as RFC 2047 encoded words in In-Reply-To and References, which no mail
# client threads on, so the sender's answer to our reply would lose its item.
_POLICY = email.policy.default.clone(max_line_length=998)


def compose(mail: Outgoing, sender: str) -> EmailMessage:
    """The reply as a message. Raises ValueError for a recipient that is not one plain address."""
    if not _PLAIN_ADDRESS.fullmatch(mail.to) or "=?" in mail.to:
        raise ValueError(f"not a plain address: {mail.to[:200]!r}")
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = sender
    msg["To"] = mail.to
    msg["Subject"] = _inert(mail.subject)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_message_id(sender.rpartition("@")[2] or None)
    msg["Auto-Submitted"] = mail.auto_submitted
    # Exchange and others honour this to keep their own auto-replies from answering ours.
    msg["X-Auto-Response-Suppress"] = "All"
    if mail.in_reply_to and _plain_id(mail.in_reply_to):
        msg["In-Reply-To"] = f"<{mail.in_reply_to}>"
        references = [r for r in mail.references if _plain_id(r)]
        msg["References"] = " ".join(f"<{r}>" for r in (*references, mail.in_reply_to))
    msg.set_content(mail.body)
    return msg


class MailTransport(Protocol):
    """A way out for the system's mail: one composed message to its one recipient."""

    def send(self, message: EmailMessage, sender: str, recipient: str) -> None:
        """Hand the message over for delivery to ``recipient`` only (never to what its headers name)."""


class SesTransport:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def send(self, message: EmailMessage, sender: str, recipient: str) -> None:
        ses = client("ses", self.settings.region)
        ses.send_raw_email(Source=sender, Destinations=[recipient], RawMessage={"Data": message.as_bytes()})


def _secret(name: str) -> str:
    """A sending secret, always under mailintake/smtp/ (the only secrets the process function may read)."""
    if not name.startswith(SECRET_PREFIX):
        name = SECRET_PREFIX + name
    return str(parameters.get_secret(name, max_age=300))


class SmtpTransport:
    def __init__(self, config: Config, tokens: TokenProvider) -> None:
        self.config = config
        self.tokens = tokens

    def send(self, message: EmailMessage, sender: str, recipient: str) -> None:
        config = self.config
        host = config.get("reply.smtpHost")
        if not host:
            raise SendError("reply.transport is smtp but reply.smtpHost is empty")
        port = config.number("reply.smtpPort")
        security = config.get("reply.smtpSecurity")
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if security == "ssl":
            smtp = smtplib.SMTP_SSL(host, port, timeout=SMTP_TIMEOUT, context=context)
        else:
            smtp = smtplib.SMTP(host, port, timeout=SMTP_TIMEOUT)
        with smtp:
            if security == "starttls":
                smtp.starttls(context=context)
            secret_name = config.get("reply.smtpSecret")
            if config.get("reply.smtpMailbox"):
                _sign_in_with_token(smtp, config.get("reply.smtpMailbox"), self.tokens)
            elif secret_name:
                credentials = json.loads(_secret(secret_name))
                smtp.login(credentials["username"], credentials["password"])
            # The one recipient named, never what the headers add up to.
            smtp.send_message(message, to_addrs=[recipient])


class GraphTransport:
    """Graph's ``sendMail`` as the user of the Graph mailbox ``reply.graphMailbox``, with its endpoint and
    sign-in (the container's OAuth tokens), the message as MIME (base64, ``Content-Type: text/plain``).

    Graph takes the recipients of a MIME message from its headers; ours name exactly the one recipient
    (``compose`` writes To only, and no Cc or Bcc), so that is the same one recipient.
    """

    def __init__(self, config: Config, tokens: TokenProvider) -> None:
        self.config = config
        self.tokens = tokens

    def send(self, message: EmailMessage, sender: str, recipient: str) -> None:
        name = self.config.get("reply.graphMailbox")
        if not name:
            raise SendError("reply.transport is graph but reply.graphMailbox is empty")
        try:
            mailbox = MailboxRecord.get(*MailboxRecord.key(name))
        except DoesNotExist:
            raise SendError(f"reply.graphMailbox names mailbox {name!r}, which does not exist") from None
        if mailbox.protocol != "graph":
            raise SendError(f"reply.graphMailbox {name!r} is not a graph mailbox")
        if message.get_all("Cc") or message.get_all("Bcc") or str(message["To"]) != recipient:
            raise SendError("a message for Graph must name its one recipient in To only")
        login = MailboxLogin(mailbox, self.tokens, lambda box: str(parameters.get_secret(box.secret_name, max_age=300)))
        graph = GraphClient(str(mailbox.host), GraphTokens(login), lambda: GRAPH_SEND_WAIT_SECONDS,
                            tls_context(mailbox.ca_bundle))
        try:
            graph.request("POST", f"{user_path(str(mailbox.username))}/sendMail",
                          body=base64.b64encode(message.as_bytes()), content_type="text/plain").release_conn()
        finally:
            graph.pool.clear()


def transport_for(config: Config, settings: Settings, tokens: TokenProvider) -> MailTransport:
    """The transport ``reply.transport`` names."""
    transport = config.get("reply.transport")
    if transport == "smtp":
        return SmtpTransport(config, tokens)
    if transport == "graph":
        return GraphTransport(config, tokens)
    return SesTransport(settings)


def send(mail: Outgoing, config: Config, settings: Settings, tokens: TokenProvider | None = None) -> str:
    """Send now, by the configured transport; returns a line for the ledger. Raises SendError. ``tokens``:
    the container's, for a sign-in with OAuth (reply.smtpMailbox, reply.graphMailbox)."""
    sender = config.get("reply.from")
    if not sender:
        raise SendError("no reply.from configured")
    transport = config.get("reply.transport")
    try:
        # Inside the try: the header registry refuses some addresses a hostile From yields (an encoded
        # word that decodes to CR/LF); that must end as a failed reply, not as a failed message.
        message = compose(mail, sender)
        transport_for(config, settings, tokens or TokenProvider.for_settings(settings)).send(message, sender, mail.to)
    except SendError:
        raise
    except Exception as exc:
        raise SendError(f"{transport}: {type(exc).__name__}: {exc}") from exc
    return f"sent via {transport} to {mail.to}"


def _sign_in_with_token(smtp: smtplib.SMTP, mailbox_name: str, tokens: TokenProvider) -> None:
    """SMTP AUTH XOAUTH2 as the OAuth mailbox's user; a refused token is replaced once."""
    try:
        mailbox = MailboxRecord.get(*MailboxRecord.key(mailbox_name))
    except MailboxRecord.DoesNotExist as exc:
        raise SendError(f"reply.smtpMailbox names mailbox {mailbox_name!r}, which does not exist") from exc
    # smtplib's login() says EHLO itself, its auth() does not; and a server's "503 send EHLO first" would
    # pass for success (auth() takes 503 as "already authenticated").
    smtp.ehlo_or_helo_if_needed()
    for attempt in (1, 2):
        initial = xoauth2(str(mailbox.username), tokens.token(mailbox)).decode()
        # smtplib asks for the initial response first, then answers a challenge (the server's JSON error)
        # with what the callable gives: an empty line, to get the final 535.
        answers = iter((initial, ""))
        try:
            smtp.auth("XOAUTH2", lambda _challenge=None, answers=answers: next(answers, ""), initial_response_ok=True)
            return
        except smtplib.SMTPAuthenticationError as exc:
            if attempt == 2:
                raise SendError(str(refused(mailbox, "the SMTP server", exc))) from exc
            tokens.rejected(mailbox)


def why_not_reply(parsed: ParsedMessage, config: Config) -> str | None:
    """The reason no reply may go to this message's sender, or None."""
    address = reply_address(parsed)
    if not config.flag("reply.enabled"):
        return "replies are off (reply.enabled=false)"
    if not address or "@" not in address:
        return "no sender address"
    if "auto-submitted" in parsed.headers and parsed.headers["auto-submitted"].strip().lower() != "no":
        return "the message is Auto-Submitted"
    verdict = automail.classify(parsed)
    if verdict is not None:  # discarded kinds never get here from processing; filed ones are never answered
        return f"the message is {verdict.description} ({verdict.reason})"
    own = config.own_addresses()
    if address.lower() in own:
        return "the sender is one of the system's own addresses"
    if not config.get("reply.from"):
        return "no reply.from configured"
    return None


def reply_address(parsed: ParsedMessage) -> str:
    """Where automatic mail about a message may go: its From address, never its Reply-To.

    Reply-To is the sender's wish, not their identity: anyone can point it at a third party and have the
    system mail them. The From address is what authentication (when on) vouched for, and what a forger
    would have to claim instead, which the intake rules then refuse to answer.
    """
    return parsed.sender.email


# Per address (the old per-sender limit) and in all: the second bounds what any number of strangers,
# each writing from a fresh address, can make the system send.
GLOBAL_COUNTER = "*"


def take_reply_slots(address: str, per_address: int, per_hour: int, now: datetime | None = None) -> str | None:
    """Count one reply to ``address`` in this hour, against both limits at once; why not, when one is full.

    One transaction of two conditional counter updates: a reply refused by either limit takes no slot of
    the other.
    """
    now = now or datetime.now(UTC)
    hour = now.strftime("%Y%m%d%H")
    expires = int(time.time()) + 2 * 3600
    limits = ((address, per_address), (GLOBAL_COUNTER, per_hour))
    try:
        with TransactWrite(connection=shared_connection()) as tx:
            for key, limit in limits:
                tx.update(
                    ReplyCounterRecord(*ReplyCounterRecord.key(key, hour)),
                    actions=[ReplyCounterRecord.replies.add(1), ReplyCounterRecord.expires_at.set(expires)],
                    condition=ReplyCounterRecord.pk.does_not_exist() | (ReplyCounterRecord.replies < limit),
                )
    except TransactWriteError as exc:
        reasons = exc.cancellation_reasons or []
        full = [i for i, r in enumerate(reasons) if r is not None and r.code == "ConditionalCheckFailed"]
        if not full:
            raise
        if 0 in full:
            return f"{address} already got {per_address} replies this hour"
        return f"the system already sent {per_hour} replies this hour (reply.maxPerHour)"
    return None


# What a reply may quote of the incoming mail: its subject, this short and with nothing that is not text.
SUBJECT_EXCERPT_CHARS = 80
# Control, format (bidi overrides and isolates, zero-width characters, BOM), separator, surrogate and
# unassigned characters: they reorder or hide what a reader sees, or break header lines.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def sanitised_excerpt(text: str, limit: int = SUBJECT_EXCERPT_CHARS) -> str:
    """``text`` with hidden and control characters removed, white space collapsed, at most ``limit``
    characters (an ellipsis marks a cut)."""
    visible = "".join(" " if unicodedata.category(c) in _HIDDEN_CATEGORIES else c for c in text[: limit * 8])
    collapsed = " ".join(visible.split())
    if len(collapsed) > limit:
        collapsed = collapsed[: limit - 1].rstrip() + "\u2026"
    return collapsed


REJECTION_TEXT = """Hello,

your message "{subject}" was not accepted: {reason}.

Nothing was created from it. {advice}

This is an automatic reply; answers to it are not read.
"""

# What the sender of a rejected mail is told, per step: fixed words that name no setting (the permitted
# pattern would tell a stranger which address to forge) and no item (whether an item exists, and which
# number a Message-ID belongs to, is for those who may see it). The ledger keeps the detailed reason.
REASONS = {
    "known-senders": "the sender is not a known user of this address",
    "permitted": "the sender is not permitted to write to this address",
    "subject": "it has no subject",
    "guard": "it was refused by a rule of this address",
    "permission": "the sender has no permission to write this here",
}
ADVICE = {
    "known-senders": "Only registered users may write to this address; ask an administrator to add you.",
    "permitted": "Ask an administrator if you should be able to write here.",
    "subject": "Please send it again with a subject that says what it is about.",
    "guard": "",
    "permission": "Ask an administrator if you should be able to write here.",
}
# A guard script's own words reach the sender (they are the admin's message), bounded like the subject:
# a script that quotes the mail (a file name, say) must not turn the reply into a carrier.
GUARD_REASON_CHARS = 200


def rejection_reply(parsed: ParsedMessage, step: str, told: str = "") -> Outgoing:
    """The reply to a mail rejected at ``step``; ``told`` is a guard script's reason, if any."""
    subject = sanitised_excerpt(parsed.subject) or "(no subject)"
    reason = REASONS.get(step, "it was refused")
    if step == "guard" and told:
        reason = sanitised_excerpt(told, GUARD_REASON_CHARS) or reason
    body = REJECTION_TEXT.format(subject=subject, reason=reason, advice=ADVICE.get(step, ""))
    body = "\n".join(line.rstrip() for line in body.split("\n"))
    reply_subject = subject if subject.lower().startswith("re:") else f"Re: {subject}"
    # In-Reply-To alone threads the reply; the mail's own References (any length, the sender's text) are
    # not copied.
    return Outgoing(to=reply_address(parsed), subject=reply_subject, body=body,
                    in_reply_to=_thread_id(parsed.message_id))


# Longer Message-IDs are not echoed (RFC 5322 lines stop at 998 characters; real ids are far shorter).
_MAX_ECHOED_ID = 250


def _thread_id(message_id: str | None) -> str | None:
    return message_id if message_id and len(message_id) <= _MAX_ECHOED_ID else None


def reply_to_rejection(parsed: ParsedMessage, step: str, told: str, config: Config, settings: Settings,
                       tokens: TokenProvider | None = None) -> str:
    """Send the rejection reply when allowed; the ledger's line on what happened."""
    refusal = why_not_reply(parsed, config)
    if refusal is not None:
        return f"no reply: {refusal}"
    return _send_limited(rejection_reply(parsed, step, told), config, settings, tokens)


def acknowledge(parsed: ParsedMessage, marker: str, number: int, config: Config, settings: Settings,
                tokens: TokenProvider | None = None) -> str:
    if not config.flag("reply.acknowledgeItems"):
        return "no acknowledgement: reply.acknowledgeItems=false"
    refusal = why_not_reply(parsed, config)
    if refusal is not None:
        return f"no acknowledgement: {refusal}"
    body = (f"Hello,\n\nyour message was filed as item {number}. Replies to this mail (keep {marker} in the"
            " subject) are added to it as comments.\n")
    mail = Outgoing(to=reply_address(parsed), subject=f"{marker} {sanitised_excerpt(parsed.subject)}".rstrip(),
                    body=body, in_reply_to=_thread_id(parsed.message_id))
    return _send_limited(mail, config, settings, tokens)


def _send_limited(mail: Outgoing, config: Config, settings: Settings, tokens: TokenProvider | None) -> str:
    refusal = take_reply_slots(mail.to, config.number("reply.maxPerSenderPerHour"), config.number("reply.maxPerHour"))
    if refusal is not None:
        return f"no reply: {refusal}"
    try:
        return send(mail, config, settings, tokens)
    except SendError as exc:
        logger.warning("reply not sent", extra={"to": mail.to, "error": str(exc)})
        return f"reply failed: {exc}"[:500]
