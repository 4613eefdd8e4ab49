"""Mail sources: the servers the fetch loop reads mailboxes from, behind one interface.

- :mod:`~mailintake.sources.protocol`: :class:`MailSource`, the interface and its exactly-once contract;
- :mod:`~mailintake.sources.cursors`: :class:`CursorStore`, where a mailbox's reading stands (DynamoDB);
- :mod:`~mailintake.sources.imap`, :mod:`~mailintake.sources.pop3`: the implementations.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger

from mailintake.sources.cursors import CursorStore, DynamoCursorStore, ImapCursor
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
from mailintake.tokens import MailboxLogin

__all__ = [
    "INTERRUPTIONS", "PART_BYTES", "START_CHOICES", "CursorStore", "DynamoCursorStore", "FolderCount", "ImapCursor",
    "ImapSource", "MailSource", "Pending", "Pop3Source", "SourceFactory", "StartAt", "StartNotSupported",
    "open_source",
]

logger = Logger(child=True)


def open_source(mailbox: MailboxRecord, login: MailboxLogin, cursors: CursorStore) -> MailSource:
    """The mailbox's source, connected and logged in (a :data:`SourceFactory`)."""
    if mailbox.security == "none" and not login.oauth:
        # An explicit choice, but the password crosses the network in clear text: say so every run.
        logger.warning("mailbox uses security none: the password is sent unencrypted",
                       extra={"mailbox": mailbox.name, "host": mailbox.host})
    if mailbox.protocol == "imap":
        return ImapSource(mailbox, login, cursors)
    return Pop3Source(mailbox, login, cursors)
