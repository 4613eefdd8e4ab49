"""Start-up shared by the handlers, the local runner and the CLI: settings read once, the store bound."""

from __future__ import annotations

from functools import cache

from mailintake.settings import Settings, get_settings
from mailintake.store import bind


@cache
def bound_settings() -> Settings:
    settings = get_settings()
    bind(settings)
    return settings
