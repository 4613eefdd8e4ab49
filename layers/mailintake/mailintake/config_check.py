"""The configuration check around each mailbox run: find what keeps a mailbox from working, say it once.

Before connecting, the settings the run depends on are checked (the permitted-address pattern, the
mailbox's workspace); while the run connects, logs in and opens its folder, the errors that mean a
configuration problem (unreachable server, failed login, missing folder, missing secret) are recognised.
A problem is logged (structured, with the mailbox) every run, but mailed to ``admin.address`` only when
it is new or changed, and once more when it clears; an AlertRecord per mailbox remembers what was sent.
"""

from __future__ import annotations

import imaplib
import poplib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.exceptions import ClientError
from imap_tools.errors import MailboxFolderSelectError, MailboxFolderStatusError, MailboxLoginError
from pynamodb.exceptions import DoesNotExist

from mailintake import outgoing, system_settings
from mailintake.graph_api import GraphAuthError, GraphNotFound
from mailintake.settings import Settings
from mailintake.store import AlertRecord, MailboxRecord, utcnow
from mailintake.system_settings import SettingError
from mailintake.tokens import TokenError

logger = Logger(child=True)


@dataclass(frozen=True)
class Problem:
    code: str  # unreachable | tls | login | folder | secret | pattern | workspace | oauth-<TokenError.code>
    detail: str

    def line(self) -> str:
        return f"{self.code}: {self.detail}"


class ConfigurationError(Exception):
    """The run stopped on a configuration problem (already logged and, where possible, reported)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.line())
        self.problem = problem


def static_problem(mailbox: MailboxRecord, config: system_settings.Config) -> Problem | None:
    try:
        config.permitted()
    except SettingError as exc:
        return Problem("pattern", str(exc))
    if not mailbox.system and not config.workspace_exists(str(mailbox.workspace)):
        return Problem("workspace", f"mailbox {mailbox.name} files into workspace {mailbox.workspace!r},"
                                    " which does not exist")
    return None


def classify(exc: BaseException, mailbox: MailboxRecord) -> Problem | None:
    """The configuration problem an exception of the run means, or None for anything else."""
    where = f"{mailbox.host}:{int(mailbox.port)}"
    if isinstance(exc, TokenError):
        # Its message is the fix-it text (which console, which setting); never a token or a secret.
        return Problem(f"oauth-{exc.code}", str(exc))
    if isinstance(exc, GetParameterError) or (
            isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException"):
        return Problem("secret", f"secret {mailbox.secret_name!r} cannot be read: {exc}")
    if isinstance(exc, MailboxLoginError) or (
            isinstance(exc, poplib.error_proto) and mailbox.protocol == "pop3"):
        return Problem("login", f"login as {mailbox.username!r} on {where} failed: {exc}")
    if isinstance(exc, GraphAuthError):
        return Problem("login", f"Microsoft Graph refused access to mailbox {mailbox.username!r}: {exc} (check the"
                                " app's Mail.ReadWrite application permission and admin consent, and that its"
                                " application access policy includes this mailbox)")
    if isinstance(exc, GraphNotFound):
        return Problem("folder", f"mailbox {mailbox.username!r} or folder {mailbox.folder!r}"
                                 f"{' or ' + repr(mailbox.move_to) if mailbox.move_to else ''} not found: {exc}")
    if isinstance(exc, MailboxFolderSelectError | MailboxFolderStatusError):
        return Problem("folder", f"folder {mailbox.folder!r} cannot be opened: {exc}")
    if isinstance(exc, imaplib.IMAP4.error) and "login" in str(exc).lower():
        return Problem("login", f"login as {mailbox.username!r} on {where} failed: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Problem("tls", f"the certificate of {where} does not verify: {exc}")
    if isinstance(exc, socket.gaierror | ConnectionError | TimeoutError | ssl.SSLError | socket.timeout):
        return Problem("unreachable", f"{where} cannot be reached: {type(exc).__name__}: {exc}")
    return None


@contextmanager
def checked_run(settings: Settings, config: system_settings.Config, mailbox: MailboxRecord) -> Iterator[None]:
    """Wrap one run of ``mailbox``, under the settings snapshot ``config``; raises ConfigurationError
    (reported) instead of configuration errors."""
    problem = static_problem(mailbox, config)
    if problem is None:
        warn_of_secret_expiry(settings, config, mailbox)
        try:
            yield
        except Exception as exc:
            problem = classify(exc, mailbox)
            if problem is None:
                raise
            _report(settings, config, mailbox, problem)
            if problem.code == "tls":
                raise  # may be an interception: the invocation fails loudly, not just the mailbox
            raise ConfigurationError(problem) from exc
        _clear(settings, config, mailbox)
        return
    _report(settings, config, mailbox, problem)
    raise ConfigurationError(problem)


# How long before a client secret's expiry the admin is told: enough for a change request in most
# organisations, and Microsoft's portal shows the expiry the admin gave.
SECRET_EXPIRY_NOTICE = timedelta(days=14)


def secret_expiry_notice(mailbox: MailboxRecord, today: date | None = None) -> str | None:
    """The warning for a client secret that expires within SECRET_EXPIRY_NOTICE, or None."""
    expires = getattr(mailbox, "secret_expires", None)
    if not expires:
        return None
    try:
        when = date.fromisoformat(str(expires))
    except ValueError:
        return None
    today = today or utcnow().date()
    if when - today > SECRET_EXPIRY_NOTICE:
        return None
    days = (when - today).days
    left = f"expired on {when}" if days < 0 else "expires today" if days == 0 else f"expires in {days} days, on {when}"
    return (f"the client secret of mailbox {mailbox.name} {left}. In the Azure portal, App registrations > the app"
            f" ({mailbox.client_id}) > Certificates & secrets: add a new client secret, then store it with"
            f" `mailintake mailbox add {mailbox.name} ... --client-secret NEW --secret-expires YYYY-MM-DD`.")


def warn_of_secret_expiry(settings: Settings, config: system_settings.Config, mailbox: MailboxRecord) -> None:
    """Tell the admin once (per expiry date given) that the mailbox's client secret runs out soon."""
    notice = secret_expiry_notice(mailbox)
    if notice is None:
        return
    logger.warning("mailbox client secret expires soon", extra={"mailbox": mailbox.name, "detail": notice})
    key = AlertRecord.key(f"{mailbox.name}#secret-expires-{mailbox.secret_expires}")
    try:
        AlertRecord.get(*key, consistent_read=True)
        return  # told already
    except DoesNotExist:
        pass
    AlertRecord(*key, mailbox=mailbox.name, problem="secret-expiry", detail=notice).save()
    _mail_admin(settings, config, f"mailintake: the client secret of mailbox {mailbox.name} expires soon",
                f"Mailbox {mailbox.name}: {notice}\n\nThis is the only mail about it for this expiry date.\n")


def _report(settings: Settings, config: system_settings.Config, mailbox: MailboxRecord, problem: Problem) -> None:
    logger.error("mailbox configuration problem",
                 extra={"mailbox": mailbox.name, "problem": problem.code, "detail": problem.detail})
    try:
        known = AlertRecord.get(*AlertRecord.key(mailbox.name), consistent_read=True)
        if known.problem == problem.code:
            return  # reported already, and nothing changed
    except DoesNotExist:
        pass
    AlertRecord(*AlertRecord.key(mailbox.name), mailbox=mailbox.name, problem=problem.code,
                detail=problem.detail[:2000]).save()
    _mail_admin(settings, config, f"mailintake: mailbox {mailbox.name} has a problem ({problem.code})",
                f"Mailbox {mailbox.name} cannot be read:\n\n  {problem.detail}\n\nNo further mail is sent about"
                " this while it persists; one more when it is resolved.\n")


def _clear(settings: Settings, config: system_settings.Config, mailbox: MailboxRecord) -> None:
    try:
        known = AlertRecord.get(*AlertRecord.key(mailbox.name), consistent_read=True)
    except DoesNotExist:
        return
    known.delete()
    logger.info("mailbox configuration problem resolved", extra={"mailbox": mailbox.name, "problem": known.problem})
    _mail_admin(settings, config, f"mailintake: mailbox {mailbox.name} works again",
                f"Mailbox {mailbox.name} was read successfully; the earlier problem is resolved:\n\n"
                f"  {known.detail}\n")


def _mail_admin(settings: Settings, config: system_settings.Config, subject: str, body: str) -> None:
    address = config.get("admin.address")
    if not address:
        return
    mail = outgoing.Outgoing(to=address, subject=subject, body=body, auto_submitted="auto-generated")
    try:
        outgoing.send(mail, config, settings)
    except outgoing.SendError as exc:
        logger.warning("admin alert not sent", extra={"to": address, "error": str(exc)})
