"""Item markers in subjects, such as ``[#123]``: making them and finding them."""

from __future__ import annotations

import re
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


def find_markers(subject: str, marker_format: str = DEFAULT_MARKER) -> list[int]:
    """Item numbers named in the subject, wherever they stand (after Re:/AW:/Fwd: and all), in order."""
    return [int(m.group(1)) for m in _pattern(marker_format).finditer(subject)]
