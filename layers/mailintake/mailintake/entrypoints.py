"""The one domain call behind each Lambda handler (and the local runner, which calls the same handlers)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from mailintake.fetching import Fetcher, FetchReport, QueuedMessage
from mailintake.processing import Outcome, Processor
from mailintake.settings import Settings, get_settings
from mailintake.store import bind


@lru_cache(maxsize=1)
def _bound_settings() -> Settings:
    settings = get_settings()
    bind(settings)
    return settings


@lru_cache(maxsize=1)
def _processor() -> Processor:
    return Processor(_bound_settings())


class BadEvent(ValueError):
    pass


def fetch_mailbox(event: Mapping[str, Any], remaining_ms: Callable[[], int], run_id: str) -> FetchReport:
    """A schedule's event, ``{"mailbox": NAME}``: read that mailbox once."""
    name = event.get("mailbox")
    if not isinstance(name, str) or not name:
        raise BadEvent('the fetch event must be {"mailbox": NAME}')
    return Fetcher(_bound_settings(), remaining_ms, run_id).run(name)


def process_queued(body: str, attempt: int) -> Outcome:
    """One intake-queue message body: process the raw mail it points at."""
    return _processor().process(QueuedMessage.from_json(body), attempt)
