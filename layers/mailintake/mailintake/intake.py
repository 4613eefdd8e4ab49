"""The intake rules: what a parsed message becomes (item, comment, rejected, discarded) and why."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailintake import automail
from mailintake.markers import find_markers
from mailintake.parsing import ParsedMessage
from mailintake.settings import Settings
from mailintake.store import get_item, get_message_id

# Reply/forward prefixes in the languages mail clients use; a subject that is only these is empty.
_PREFIXES = re.compile(r"^\s*((re|aw|sv|vs|antw|wg|fw|fwd|tr|rif|r|odp|ynt)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)


@dataclass(frozen=True)
class Decision:
    action: str  # item | comment | rejected | discarded
    reason: str = ""
    step: str = ""
    workspace: str = "default"
    item_number: int | None = None


def subject_is_empty(subject: str) -> bool:
    return not _PREFIXES.sub("", subject).strip()


def thread_target(parsed: ParsedMessage, marker_format: str) -> int | None:
    """The existing item a message belongs to: a marker in its subject, else its In-Reply-To/References."""
    for number in find_markers(parsed.subject, marker_format):
        if get_item(number) is not None:
            return number
    # Newest reference first: In-Reply-To, then References from the end.
    for message_id in [*parsed.in_reply_to, *reversed(parsed.references)]:
        known = get_message_id(message_id)
        if known is not None and known.item_number is not None:
            return int(known.item_number)
    return None


def decide(parsed: ParsedMessage, settings: Settings, workspace: str) -> Decision:
    if subject_is_empty(parsed.subject):
        return Decision("rejected", "empty subject", "subject", workspace)
    verdict = automail.classify(parsed)
    if verdict is not None:
        return Decision("discarded", f"{verdict.kind}: {verdict.reason}", "automail", workspace)
    target = thread_target(parsed, settings.marker_format)
    if target is not None:
        return Decision("comment", step="thread", workspace=workspace, item_number=target)
    return Decision("item", step="new", workspace=workspace)
