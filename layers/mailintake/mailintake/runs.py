"""The run records of the mailboxes (one per mailbox, rewritten by each of its fetch runs) and the health
of every mailbox judged from them (:mod:`mailintake.health`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from pynamodb.exceptions import DoesNotExist

from mailintake.health import MailboxHealth, RunSummary, after_run, assess
from mailintake.store import MailboxRecord, RunRecord, utcnow

KIND = "mailbox-run"


def _summary(record: RunRecord) -> RunSummary:
    return RunSummary(str(record.mailbox), record.last_run, str(record.status), int(record.fetched or 0),
                      str(record.error or ""), record.last_success, int(record.failing_in_a_row or 0))


def load(mailbox: str) -> RunSummary | None:
    try:
        return _summary(RunRecord.get(*RunRecord.key(mailbox), consistent_read=True))
    except DoesNotExist:
        return None


def load_all() -> dict[str, RunSummary]:
    """Every mailbox's run summary: one query of the by-kind index."""
    return {str(r.mailbox): _summary(r) for r in RunRecord.by_kind.query(KIND) if isinstance(r, RunRecord)}


def record(previous: RunSummary | None, mailbox: str, status: str, fetched: int, error: str,
           now: datetime | None = None) -> RunSummary:
    """Remember how a run ended, after the ``previous`` summary (one write)."""
    summary = after_run(previous, mailbox, status, fetched, error, now or utcnow())
    RunRecord(*RunRecord.key(mailbox), kind=KIND, sort=mailbox, mailbox=mailbox, last_run=summary.last_run,
              status=summary.status, fetched=summary.fetched, error=summary.error[:1000],
              last_success=summary.last_success, failing_in_a_row=summary.failing_in_a_row).save()
    return summary


def assess_all(mailboxes: Mapping[str, MailboxRecord], summaries: Mapping[str, RunSummary],
               now: datetime | None = None) -> list[MailboxHealth]:
    """The health of every mailbox, by name."""
    now = now or utcnow()
    return [assess(name, bool(m.enabled), int(m.poll_minutes), m.created, summaries.get(name), now)
            for name, m in sorted(mailboxes.items())]
