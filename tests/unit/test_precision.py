"""The precision suite (tests/precision/): mail people write that shares traits with machine mail is
never discarded, machine mail still is, and what may be answered automatically is exactly what a person
wrote directly. The same mails go through the real stack in
tests/integration/test_intake_machine_mail.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailintake.conformance import Entry, check_entry, load_manifest

MANIFEST = Path(__file__).resolve().parents[1] / "precision" / "manifest.jsonl"
ENTRIES = list(load_manifest(MANIFEST))


def test_the_suite_holds_at_least_30_human_mails_in_several_languages() -> None:
    human = [e for e in ENTRIES if e.data["kind"] == "message"]
    assert len(human) >= 30
    assert {e.data["kind"] for e in ENTRIES} == {"message", "bounce", "auto-reply"}


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.id for e in ENTRIES])
def test_precision_mail_gets_its_verdict(entry: Entry) -> None:
    result = check_entry(entry)
    assert result.ok, f"{entry.id}:\n  " + "\n  ".join(result.failures)
