"""`mailintake status`: every mailbox's health in one view, and an exit code for cron or a monitor.

Per mailbox: its schedule (as EventBridge Scheduler has it, not only as the record says), its last run
(time, status, fetched, error: the run record the fetch function writes), the mail waiting on its server
(counted by the same mail source the fetch uses, reading nothing but the list), the mail that failed in
the last 24 hours (the ledger), and a token's expiry where the mailbox record has one. Stack-wide: the
intake queue and the dead-letter queue. Whatever needs attention is listed as a problem; any problem makes
the exit code 1.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mailintake import runs
from mailintake.aws_clients import client
from mailintake.fetching import mailbox_password
from mailintake.health import MailboxHealth
from mailintake.mailboxes import schedule_name
from mailintake.settings import Settings
from mailintake.sources import DynamoCursorStore, open_source
from mailintake.store import LedgerRecord, MailboxRecord, list_mailboxes, utcnow
from mailintake.tokens import MailboxLogin, TokenProvider

# A token or secret expiring sooner than this is a problem now (issue 13 warns 14 days ahead too).
TOKEN_WARNING = timedelta(days=14)
# Fields a mailbox record may carry with the expiry of what it logs in with: `secret_expires` (an OAuth
# client secret's, as `mailbox add --secret-expires` keeps it) and names a later sign-in may add.
TOKEN_EXPIRY_FIELDS = ("token_expires", "secret_expires", "client_secret_expires")


@dataclass
class MailboxStatus:
    name: str
    protocol: str
    enabled: bool
    schedule: str  # "rate(5 minutes), ENABLED", "missing", ...
    last_run: dict[str, Any] | None
    last_success: str | None
    waiting: int | None  # mail on the server not yet stored; None when the server could not be asked
    waiting_error: str = ""
    failed_24h: int = 0
    token_expires: str | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class StackStatus:
    mailboxes: list[MailboxStatus]
    queue: dict[str, int]
    dead_letter_queue: dict[str, int]
    problems: list[str] = field(default_factory=list)

    @property
    def needs_attention(self) -> bool:
        return bool(self.problems) or any(m.problems for m in self.mailboxes)


class _LookOnly(Exception):
    """Leaves a mail source's session without committing anything (a POP3 QUIT would commit deletes)."""


def waiting_on_server(settings: Settings, mailbox: MailboxRecord) -> int:
    """How many mails the next run would read, asked the way the fetch asks (with its login: a password,
    or an OAuth token); nothing is downloaded, marked, deleted or remembered."""
    count = 0
    login = MailboxLogin(mailbox, TokenProvider.for_settings(settings), mailbox_password)
    with contextlib.suppress(_LookOnly), open_source(mailbox, login, DynamoCursorStore()) as source:
        count = sum(1 for _ in source.pending())
        raise _LookOnly  # the source ends a failed session without its QUIT or EXPUNGE
    return count


def _schedule(settings: Settings, name: str) -> tuple[str, bool]:
    scheduler = client("scheduler", settings.region)
    try:
        detail = scheduler.get_schedule(Name=schedule_name(name), GroupName=settings.schedule_group)
    except scheduler.exceptions.ResourceNotFoundException:
        return "missing", False
    return f"{detail['ScheduleExpression']}, {detail['State']}", detail["State"] == "ENABLED"


def _queue_depth(settings: Settings, url: str) -> dict[str, int]:
    if not url:
        return {}
    got = client("sqs", settings.region).get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    attributes = got["Attributes"]
    return {"waiting": int(attributes.get("ApproximateNumberOfMessages") or 0),
            "in_flight": int(attributes.get("ApproximateNumberOfMessagesNotVisible") or 0)}


def failed_since(since: datetime) -> Counter[str]:
    """Mails whose outcome is failed, written since ``since``, by mailbox (one query of the ledger's index)."""
    failed: Counter[str] = Counter()
    for record in LedgerRecord.by_kind.query("message", LedgerRecord.sort >= since.isoformat()):
        if isinstance(record, LedgerRecord) and record.status == "failed":
            failed[str(record.mailbox)] += 1
    return failed


def token_expiry(mailbox: MailboxRecord) -> datetime | None:
    """The expiry of what the mailbox logs in with, where its record says (the OAuth hook)."""
    values = mailbox.attribute_values
    for name in TOKEN_EXPIRY_FIELDS:
        value = values.get(name)
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, str):  # "YYYY-MM-DD" as `mailbox add --secret-expires` keeps it, or a timestamp
            with contextlib.suppress(ValueError):
                parsed = datetime.fromisoformat(value)
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        if isinstance(value, int | float):
            return datetime.fromtimestamp(float(value), tz=UTC)
    return None


def _mailbox_status(settings: Settings, mailbox: MailboxRecord, health: MailboxHealth, failed: int,
                    ask_server: bool, now: datetime) -> MailboxStatus:
    schedule, scheduled = _schedule(settings, mailbox.name)
    run = health.run
    status = MailboxStatus(
        name=mailbox.name, protocol=mailbox.protocol, enabled=bool(mailbox.enabled), schedule=schedule,
        last_run=None if run is None else {"time": run.last_run.isoformat(timespec="seconds"), "status": run.status,
                                           "fetched": run.fetched, "error": run.error},
        last_success=run.last_success.isoformat(timespec="seconds") if run and run.last_success else None,
        waiting=None, failed_24h=failed, problems=list(health.problems))
    if mailbox.enabled and not scheduled:
        status.problems.append(f"enabled, but its schedule is {schedule}: it is never read")
    if run is not None and run.status == "config-error" and not health.failing:
        status.problems.append(f"the last run ended config-error: {run.error or 'see the fetch log'}")
    if failed:
        status.problems.append(f"{failed} mail(s) failed in the last 24 h: mailintake messages list --outcome failed")
    expires = token_expiry(mailbox)
    if expires is not None:
        status.token_expires = expires.isoformat(timespec="seconds")
        if expires - now < TOKEN_WARNING:
            status.problems.append(f"its token or secret expires {status.token_expires}")
    if ask_server and mailbox.enabled:
        try:
            status.waiting = waiting_on_server(settings, mailbox)
        except Exception as exc:  # any failure to ask is itself the answer an admin needs
            status.waiting_error = f"{type(exc).__name__}: {exc}"[:300]
            status.problems.append(f"cannot read the server: {status.waiting_error}")
    return status


def collect(settings: Settings, ask_server: bool = True, now: datetime | None = None) -> StackStatus:
    now = now or utcnow()
    mailboxes = {m.name: m for m in list_mailboxes()}
    health = {h.name: h for h in runs.assess_all(mailboxes, runs.load_all(), now)}
    failed = failed_since(now - timedelta(hours=24))
    result = StackStatus(
        mailboxes=[_mailbox_status(settings, mailboxes[name], health[name], failed.get(name, 0), ask_server, now)
                   for name in sorted(mailboxes)],
        queue=_queue_depth(settings, settings.queue_url),
        dead_letter_queue=_queue_depth(settings, settings.dlq_url))
    dead = result.dead_letter_queue.get("waiting", 0) + result.dead_letter_queue.get("in_flight", 0)
    if dead:
        result.problems.append(f"{dead} mail(s) in the dead-letter queue: mailintake dlq redrive once fixed")
    orphans = sorted(set(failed) - set(mailboxes))
    if orphans:
        result.problems.append(f"failed mail in the last 24 h from removed mailboxes: {', '.join(orphans)}")
    return result


def lines(status: StackStatus) -> list[str]:
    out = []
    for m in status.mailboxes:
        mark = "ATTENTION" if m.problems else "ok"
        run = m.last_run
        last = "never run"
        if run:
            last = f"{run['time']} {run['status']}, {run['fetched']} fetched"
            last += f", {run['error']}" if run["error"] else ""
        waiting = str(m.waiting) if m.waiting is not None else "?"
        out.append(f"{m.name:20} {mark:9} {m.protocol:4} {m.schedule}; last run {last}; waiting on server "
                   f"{waiting}; failed 24 h {m.failed_24h}" + (f"; token expires {m.token_expires}"
                                                              if m.token_expires else ""))
        out.extend(f"    - {p}" for p in m.problems)
    q, d = status.queue, status.dead_letter_queue
    out.append(f"intake queue: {q.get('waiting', 0)} waiting, {q.get('in_flight', 0)} in flight; "
               f"dead-letter queue: {d.get('waiting', 0)} waiting")
    out.extend(f"  - {p}" for p in status.problems)
    out.append("needs attention" if status.needs_attention else "all well")
    return out
