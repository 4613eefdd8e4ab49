"""What a Lambda container keeps between invocations, in one object built when the container starts.

The handlers in functions/ build their :class:`Runtime` at import: its lifetime is the container's. The
local runner's handler containers build theirs the same way; the CLI binds the store for one command.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from mailintake import store
from mailintake.directory import UserCache
from mailintake.settings import Settings
from mailintake.system_settings import ConfigCache
from mailintake.tls import TlsContexts
from mailintake.tokens import TokenProvider


class Runtime:
    """One container's settings and state: the store's connection, the next item number it expects, the
    users and the settings snapshot it read lately, the mailboxes' OAuth tokens (each cache expires after
    ``settings.config_cache_seconds``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # pynamodb keeps the table and the connection on the model classes, so binding them is the process's,
        # inherent to the library: done here, once, when the container starts (store.bind keeps an equal
        # binding, so containers sharing a process, as the local runner's do, share one connection).
        self.connection = store.bind(settings)
        self.numbering = store.Numbering()
        self.users = UserCache(settings.config_cache_seconds)
        self.config = ConfigCache(settings)
        # OAuth access tokens of the mailboxes this container reads, until shortly before they expire.
        self.tokens = TokenProvider.for_settings(settings)
        # TLS contexts for the mail servers (each loads the system's CA store once).
        self.tls = TlsContexts()

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Runtime:
        """The container's runtime, from its environment (Lambda's env vars; locally, .local/stack.env)."""
        return cls(Settings.from_mapping(os.environ if env is None else env))


def bound_settings() -> Settings:
    """The settings in the environment, with the store bound to them: the CLI's and the benchmarks' start."""
    settings = Settings.from_mapping(os.environ)
    store.bind(settings)
    return settings
