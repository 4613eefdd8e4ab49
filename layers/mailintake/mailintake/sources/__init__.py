"""Mail sources: the servers the fetch loop reads mailboxes from, behind one interface.

- :mod:`~mailintake.sources.protocol`: :class:`MailSource`, the interface and its exactly-once contract;
- :mod:`~mailintake.sources.cursors`: :class:`CursorStore`, where a mailbox's reading stands (DynamoDB);
- :mod:`~mailintake.sources.imap`, :mod:`~mailintake.sources.pop3`, :mod:`~mailintake.sources.graph`: the
  implementations.
"""

from __future__ import annotations

from collections.abc import Callable

from aws_lambda_powertools import Logger

from mailintake.sources.cursors import CursorStore, DynamoCursorStore, ImapCursor
from mailintake.sources.graph import GraphSource
from mailintake.sources.imap import ImapSource
from mailintake.sources.pop3 import Pop3Source
from mailintake.sources.protocol import (
    INTERRUPTIONS,
    PART_BYTES,
    START_CHOICES,
    FolderCount,
    MailSource,
    Pending,
    SourceFactory,
    StartAt,
    StartNotSupported,
)
from mailintake.store import MailboxRecord
from mailintake.tokens import GraphTokens, MailboxLogin

__all__ = [
    "INTERRUPTIONS", "PART_BYTES", "START_CHOICES", "CursorStore", "DynamoCursorStore", "FolderCount", "GraphSource",
    "ImapCursor", "ImapSource", "MailSource", "Pending", "Pop3Source", "SourceFactory", "StartAt", "StartNotSupported",
    "open_source",
]

logger = Logger(child=True)


def _short_wait() -> float:
    return SHORT_WAIT_SECONDS


# Seconds a source opened outside a fetch run (adding a mailbox) waits for a throttled server.
SHORT_WAIT_SECONDS = 30.0


def open_source(mailbox: MailboxRecord, login: MailboxLogin, cursors: CursorStore,
                seconds_left: Callable[[], float] = _short_wait) -> MailSource:
    """The mailbox's source, connected and logged in (a :data:`SourceFactory`); ``seconds_left``: how long
    it may wait for a throttled server (the fetch loop gives the run's time)."""
    if mailbox.protocol == "graph":
        return GraphSource(mailbox, GraphTokens(login), cursors, seconds_left, tls=login.tls)
    if mailbox.security == "none" and not login.oauth:
        # An explicit choice, but the password crosses the network in clear text: say so every run.
        logger.warning("mailbox uses security none: the password is sent unencrypted",
                       extra={"mailbox": mailbox.name, "host": mailbox.host})
    if mailbox.protocol == "imap":
        return ImapSource(mailbox, login, cursors)
    return Pop3Source(mailbox, login, cursors)
