"""What marks mail as this system's: item markers in subjects (``[HD#123]``), and the Message-IDs of the
mail it sends (so that an answer to one, an auto-reply above all, is known as such).

A marker is written in one format and recognised in that one and any formats an installation used before
(``Settings.marker_formats``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from email.utils import make_msgid
from functools import lru_cache

from mailintake.settings import DEFAULT_MARKER


class MarkerFormatError(ValueError):
    pass


@lru_cache(maxsize=8)
def _pattern(marker_format: str) -> re.Pattern[str]:
    if marker_format.count("{number}") != 1:
        raise MarkerFormatError("the marker format must contain {number} exactly once")
    head, tail = marker_format.split("{number}")
    if not (head or tail):
        raise MarkerFormatError("the marker format needs some text around {number}")
    return re.compile(re.escape(head) + r"\s*0*(\d{1,12})\s*" + re.escape(tail), re.IGNORECASE)


def validate(marker_format: str) -> None:
    _pattern(marker_format)


def make_marker(number: int, marker_format: str = DEFAULT_MARKER) -> str:
    return marker_format.replace("{number}", str(number))


def find_markers(subject: str, marker_format: str = DEFAULT_MARKER, accepted: Iterable[str] = ()) -> list[int]:
    """Item numbers named in the subject in any of the formats, wherever they stand (after Re:/AW:/Fwd: and
    all), in the order they stand, each once."""
    found = sorted((m.start(), int(m.group(1))) for fmt in dict.fromkeys((marker_format, *accepted))
                   for m in _pattern(fmt).finditer(subject))
    return list(dict.fromkeys(number for _, number in found))


# The Message-IDs of mail this system sends end their local part with this tag, whatever the domain.
OWN_ID_TAG = "mailintake"


def make_message_id(domain: str | None) -> str:
    """A new Message-ID (with angle brackets) for mail this system sends."""
    return make_msgid(idstring=OWN_ID_TAG, domain=domain)


def is_own_message_id(message_id: str) -> bool:
    """Whether a Message-ID (with or without angle brackets) is one this system made."""
    local = message_id.strip().strip("<>").rpartition("@")[0]
    return local.endswith("." + OWN_ID_TAG)
