from __future__ import annotations

import pytest

from mailintake.markers import MarkerFormatError, find_markers, make_marker
from mailintake.settings import DEFAULT_MARKER, Settings

from .test_settings import STACK


@pytest.mark.parametrize(
    "subject",
    ["[HD#123] Printer", "Re: [HD#123] Printer", "AW: Fwd: RE: [hd#123] Printer", "Printer [HD#123]",
     "Re:[HD# 0123 ]x"],
)
def test_default_marker_is_found_anywhere_in_the_subject(subject: str) -> None:
    assert find_markers(subject) == [123]


def test_subject_without_marker_names_no_item() -> None:
    # "[#123]" is what other trackers write: not ours unless an installation accepts it.
    assert find_markers("Issue 123 and #123 and [123] and [#123] and [XHD#123") == []


def test_accepted_formats_are_recognised_beside_the_default_in_subject_order() -> None:
    subject = "Re: [#7] merged into [HD#9], see [#7]"
    assert find_markers(subject, DEFAULT_MARKER, ["[#{number}]"]) == [7, 9]
    assert find_markers(subject) == [9]
    # The old format does not read the new one's marker as its own, nor the reverse.
    assert find_markers("[HD#5]", "[#{number}]") == [] and find_markers("[#5]") == []


def test_settings_list_the_written_format_first_then_the_accepted_ones() -> None:
    formats = "[#{number}], (ticket:{number}),"
    settings = Settings.from_mapping({**STACK, "MAILINTAKE_ACCEPTED_MARKER_FORMATS": formats})
    assert settings.marker_formats == (DEFAULT_MARKER, "[#{number}]", "(ticket:{number})")
    assert Settings().marker_formats == (DEFAULT_MARKER,)


def test_custom_marker_format_round_trips() -> None:
    fmt = "(ticket:{number})"
    assert make_marker(42, fmt) == "(ticket:42)"
    assert find_markers("Re: (TICKET:42) help", fmt) == [42]


@pytest.mark.parametrize("fmt", ["[#]", "{number}", "{number}{number}"])
def test_marker_format_without_exactly_one_number_or_delimiters_is_refused(fmt: str) -> None:
    with pytest.raises(MarkerFormatError):
        find_markers("x", fmt)
