"""`mailintake mailbox test NAME`: a mailbox's connection and permissions checked without fetching.

Each step is tried in the order a fetch run needs them, and the first that fails ends the check with the
same problem text a run would report (``config_check.classify``): the secret or token, the login, the
folder (and how many mails it holds), the after-storing action (IMAP: the folder opens read-write and the
folder to move to exists; POP3: a DELE is accepted, then undone with RSET; Graph: the folder to move to
exists). Nothing is read, stored, marked or remembered.
"""

from __future__ import annotations

import contextlib
import imaplib
import poplib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mailintake import config_check
from mailintake.fetching import mailbox_password
from mailintake.mailboxes import get_mailbox
from mailintake.sources import DynamoCursorStore
from mailintake.sources.graph import GraphSource
from mailintake.sources.imap import ImapSource
from mailintake.sources.pop3 import Pop3Source
from mailintake.store import MailboxRecord
from mailintake.tokens import GraphTokens, MailboxLogin, OAuthConfig, TokenProvider


@dataclass
class Verdict:
    mailbox: str
    ok: bool = True
    steps: list[tuple[str, bool, str]] = field(default_factory=list)  # (step, passed, detail)
    warnings: list[str] = field(default_factory=list)

    def passed(self, step: str, detail: str) -> None:
        self.steps.append((step, True, detail))

    def failed(self, step: str, detail: str) -> None:
        self.steps.append((step, False, detail))
        self.ok = False

    def lines(self) -> list[str]:
        out = [f"{'ok  ' if passed else 'FAIL'} {step}: {detail}" for step, passed, detail in self.steps]
        out += [f"warn {w}" for w in self.warnings]
        out.append(f"mailbox {self.mailbox}: " + ("OK, it can be read" if self.ok else "FAILED, see above"))
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"mailbox": self.mailbox, "ok": self.ok, "warnings": self.warnings,
                "steps": [{"step": s, "ok": p, "detail": d} for s, p, d in self.steps]}


def _problem(exc: BaseException, mailbox: MailboxRecord) -> str:
    problem = config_check.classify(exc, mailbox)
    return problem.line() if problem else f"{type(exc).__name__}: {exc}"


def check(name: str, tokens: TokenProvider, password: Callable[[MailboxRecord], str] = mailbox_password) -> Verdict:
    verdict = Verdict(name)
    mailbox = get_mailbox(name)
    if mailbox is None:
        verdict.failed("mailbox", f"no mailbox named {name}")
        return verdict
    notice = config_check.secret_expiry_notice(mailbox)
    if notice:
        verdict.warnings.append(notice)
    login = MailboxLogin(mailbox, tokens, password)
    if not _credentials(mailbox, login, tokens, verdict):
        return verdict
    checks = {"imap": _imap, "pop3": _pop3, "graph": _graph}
    if mailbox.protocol not in checks:
        verdict.failed("connect", f"mailbox test does not know protocol {mailbox.protocol!r} yet")
        return verdict
    try:
        checks[str(mailbox.protocol)](mailbox, login, verdict)
    except Exception as exc:
        verdict.failed("connect", _problem(exc, mailbox))
    return verdict


def _credentials(mailbox: MailboxRecord, login: MailboxLogin, tokens: TokenProvider, verdict: Verdict) -> bool:
    try:
        if login.oauth:
            config = OAuthConfig.of(mailbox)
            started = time.monotonic()
            login.token()
            where = config.endpoint or ("login.microsoftonline.com" if config.auth == "microsoft" else "Google")
            verdict.passed("token", f"{config.auth} {config.flow} token acquired from {where}"
                                    f" in {time.monotonic() - started:.1f}s")
        else:
            login.password()
            verdict.passed("secret", f"password read from {mailbox.secret_name}")
    except Exception as exc:
        verdict.failed("token" if login.oauth else "secret", _problem(exc, mailbox))
        return False
    return True


def _imap(mailbox: MailboxRecord, login: MailboxLogin, verdict: Verdict) -> None:
    source = ImapSource(mailbox, login, DynamoCursorStore())
    try:
        verdict.passed("login", f"logged in to {mailbox.host}:{int(mailbox.port)} as {mailbox.username}")
        count = int(source.box.folder.status(mailbox.folder, ["MESSAGES"])["MESSAGES"])
        verdict.passed("folder", f"{mailbox.folder} opened, {count} mail{'s' if count != 1 else ''} in it")
        if source.box.client.is_readonly:
            verdict.failed("after", f"{mailbox.folder} opens read-only: after={mailbox.after} cannot be applied")
        elif mailbox.after == "move" and not source.box.folder.exists(mailbox.move_to or ""):
            verdict.failed("after", f"the folder to move to, {mailbox.move_to!r}, does not exist")
        else:
            verdict.passed("after", f"after={mailbox.after} permitted (folder opens read-write"
                                    f"{', ' + repr(mailbox.move_to) + ' exists' if mailbox.after == 'move' else ''})")
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            source.box.logout()


def _pop3(mailbox: MailboxRecord, login: MailboxLogin, verdict: Verdict) -> None:
    source = Pop3Source(mailbox, login, DynamoCursorStore())
    try:
        verdict.passed("login", f"logged in to {mailbox.host}:{int(mailbox.port)} as {mailbox.username}")
        count = len(source.listing)
        verdict.passed("folder", f"maildrop opened, {count} mail{'s' if count != 1 else ''} in it")
        if mailbox.after == "delete" and count:
            try:
                source.conn.dele(int(next(iter(source.listing.values()))))
                verdict.passed("after", "after=delete permitted (a DELE was accepted and undone with RSET)")
            except poplib.error_proto as exc:
                verdict.failed("after", f"the server refuses DELE: {exc}")
            source.conn.rset()
        else:
            verdict.passed("after", "after=keep needs no permission" if mailbox.after == "keep"
                           else "after=delete not tried: the maildrop is empty")
        source.conn.quit()
    except BaseException:
        with contextlib.suppress(OSError):
            source.conn.close()  # no QUIT: the server rolls back whatever was marked
        raise


# Seconds the check waits for a throttled Graph before it gives its verdict.
GRAPH_CHECK_WAIT_SECONDS = 30.0


def _graph(mailbox: MailboxRecord, login: MailboxLogin, verdict: Verdict) -> None:
    """Opening a Graph source resolves the folder and the folder to move to (with the token, so a refused
    token or a mailbox outside the app's access policy fails here); the folder's count is one more GET."""
    with GraphSource(mailbox, GraphTokens(login), DynamoCursorStore(), lambda: GRAPH_CHECK_WAIT_SECONDS) as source:
        verdict.passed("login", f"{mailbox.host} lets the app read {mailbox.username}")
        found = source.client.json("GET", f"{source.user}/mailFolders/{source.folder_id}?$select=totalItemCount")
        count = int((found or {}).get("totalItemCount") or 0)
        verdict.passed("folder", f"{mailbox.folder} found, {count} mail{'s' if count != 1 else ''} in it")
        verdict.passed("after", f"after={mailbox.after}" + (f": {mailbox.move_to!r} found" if mailbox.after == "move"
                                                          else " needs Mail.ReadWrite, which reading proved"))
