"""A mailbox's health from its recent fetch runs: what `mailintake status` shows and the alarms count.

Pure: it judges plain values (the mailbox's interval and state, a summary of its runs, the time now), so
the rules are unit-tested without a table. :mod:`mailintake.runs` keeps the summaries in the table.

Why the fetch function judges every mailbox, not CloudWatch per mailbox: mailboxes are added at run time,
and an alarm in template.yaml cannot name a mailbox that does not exist yet. CloudWatch alarms cannot use
SEARCH, and an alarm per mailbox made by `mailbox add` would be a second copy of the configuration to keep
in step. So each fetch run emits two stack-wide counts (no Mailbox dimension), which one alarm each
watches: mailboxes failing again and again, and mailboxes overdue. The per-mailbox metrics (Mailbox
dimension) feed the dashboard, where SEARCH finds new mailboxes by itself.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

# Runs that read the mailbox to its end or as far as the deadline let them.
SUCCESS = frozenset({"done", "more"})
# Runs that say the mailbox does not work: the configuration (login, folder, TLS, an expired token) or the
# server went away. One such run is not worth an alarm (a server restarts); this many in a row is.
FAILING = frozenset({"config-error", "interrupted"})
FAILING_RUNS_IN_A_ROW = 3
# A mailbox with no successful run for this many of its intervals is overdue (its schedule stopped, its
# runs keep failing or never end, the function is throttled).
OVERDUE_INTERVALS = 3


@dataclass(frozen=True)
class RunSummary:
    """What the last runs of one mailbox did (the run record)."""

    mailbox: str
    last_run: datetime
    status: str
    fetched: int = 0
    error: str = ""
    last_success: datetime | None = None
    failing_in_a_row: int = 0


def after_run(previous: RunSummary | None, mailbox: str, status: str, fetched: int, error: str,
              now: datetime) -> RunSummary:
    """The summary once a run ended with ``status``."""
    last_success = previous.last_success if previous is not None else None
    in_a_row = previous.failing_in_a_row if previous is not None else 0
    if status in SUCCESS:
        last_success, in_a_row = now, 0
    elif status in FAILING:
        in_a_row += 1
    return RunSummary(mailbox, now, status, fetched, error, last_success, in_a_row)


@dataclass(frozen=True)
class MailboxHealth:
    name: str
    enabled: bool
    poll_minutes: int
    run: RunSummary | None
    failing: bool  # the last FAILING_RUNS_IN_A_ROW runs ended config-error or interrupted
    overdue: bool  # no successful run for OVERDUE_INTERVALS of its intervals
    problems: tuple[str, ...] = ()

    @property
    def needs_attention(self) -> bool:
        return bool(self.problems)


def assess(name: str, enabled: bool, poll_minutes: int, added: datetime | None, run: RunSummary | None,
           now: datetime) -> MailboxHealth:
    """A mailbox's health. A disabled mailbox is never overdue; a new one gets its first intervals."""
    failing = run is not None and run.failing_in_a_row >= FAILING_RUNS_IN_A_ROW
    since = (run.last_success if run is not None else None) or added
    allowed = timedelta(minutes=OVERDUE_INTERVALS * max(1, poll_minutes))
    overdue = enabled and (since is None or now - since > allowed)
    problems: list[str] = []
    if failing and run is not None:
        problems.append(f"the last {run.failing_in_a_row} runs ended {run.status}: {run.error or 'no detail'}")
    if overdue:
        when = f"since {since.isoformat(timespec='seconds')}" if since is not None else "ever"
        problems.append(f"no successful run {when} (more than {OVERDUE_INTERVALS} intervals of "
                        f"{poll_minutes} min)")
    return MailboxHealth(name, enabled, poll_minutes, run, failing, overdue, tuple(problems))


def with_problem(health: MailboxHealth, problem: str) -> MailboxHealth:
    """``health`` with one more problem found elsewhere (mail failed, a token about to expire...)."""
    return replace(health, problems=(*health.problems, problem))
