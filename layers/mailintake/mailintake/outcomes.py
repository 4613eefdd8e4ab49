"""The words the ledger and the fetch report use, each list in one place (the type checker holds the code
to them; the CLI and the README show them to admins)."""

from __future__ import annotations

from typing import Literal, get_args

# What a mail became: its ledger record's status and the intake rules' decision.
Status = Literal["item", "comment", "rejected", "discarded", "failed"]
STATUSES: tuple[Status, ...] = get_args(Status)
# The outcomes that end a mail's processing: a retry or a second copy changes nothing. `failed` does not:
# a later try may still succeed, and an admin may reprocess it.
FINAL: frozenset[Status] = frozenset({"item", "comment", "rejected", "discarded"})

# How one mailbox's fetch run ended.
FetchStatus = Literal["done", "more", "unknown", "disabled", "locked", "interrupted", "config-error"]


def status(value: str) -> Status:
    """A status read back from the table, checked."""
    for known in STATUSES:
        if value == known:
            return known
    raise ValueError(f"unknown ledger status {value!r}")
