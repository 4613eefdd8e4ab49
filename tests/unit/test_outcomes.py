from __future__ import annotations

import pytest

from mailintake.outcomes import FINAL, STATUSES, status


def test_every_status_read_back_from_the_table_is_one_of_the_known_ones() -> None:
    assert [status(s) for s in ("item", "comment", "rejected", "discarded", "failed")] == list(STATUSES)
    with pytest.raises(ValueError, match="unknown ledger status 'lost'"):
        status("lost")


def test_failed_is_the_one_outcome_a_retry_may_still_change() -> None:
    assert set(STATUSES) - FINAL == {"failed"}
