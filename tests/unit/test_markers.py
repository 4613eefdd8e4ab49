from __future__ import annotations

import pytest

from mailintake.markers import MarkerFormatError, find_markers, make_marker


@pytest.mark.parametrize(
    "subject",
    ["[#123] Printer", "Re: [#123] Printer", "AW: Fwd: RE: [#123] Printer", "Printer [#123]", "Re:[# 0123 ]x"],
)
def test_default_marker_is_found_anywhere_in_the_subject(subject: str) -> None:
    assert find_markers(subject) == [123]


def test_subject_without_marker_names_no_item() -> None:
    assert find_markers("Issue 123 and #123 and [123]") == []


def test_custom_marker_format_round_trips() -> None:
    fmt = "(ticket:{number})"
    assert make_marker(42, fmt) == "(ticket:42)"
    assert find_markers("Re: (TICKET:42) help", fmt) == [42]


@pytest.mark.parametrize("fmt", ["[#]", "{number}", "{number}{number}"])
def test_marker_format_without_exactly_one_number_or_delimiters_is_refused(fmt: str) -> None:
    with pytest.raises(MarkerFormatError):
        find_markers("x", fmt)
