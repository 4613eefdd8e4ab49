"""Every expectation of the external mail corpus (see ../shared/corpus/README.md) holds.

The corpus lives beside the repository (CI checks ``shared/`` out next to it); ``MAILINTAKE_CORPUS``
points elsewhere. Without it the tests are skipped, not failed. The checking rules are in
``mailintake.conformance`` (shared with ``bench/corpus_report.py``), and deliberate disagreements with
the manifest are listed there in ``KNOWN_DISAGREEMENTS`` with their reasons (currently none).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailintake.conformance import KNOWN_DISAGREEMENTS, Entry, check_entry, default_corpus_dir, load_manifest

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFEST = default_corpus_dir(REPO_ROOT) / "manifest.jsonl"


def _entries() -> list[Entry]:
    return list(load_manifest(MANIFEST)) if MANIFEST.is_file() else []


ENTRIES = _entries()


@pytest.mark.skipif(not ENTRIES, reason=f"corpus manifest not found at {MANIFEST}")
@pytest.mark.parametrize("entry", ENTRIES, ids=[e.id for e in ENTRIES])
def test_corpus_message_meets_every_expectation(entry: Entry) -> None:
    result = check_entry(entry)
    assert result.ok, f"{entry.id}:\n  " + "\n  ".join(result.failures)


def test_known_disagreements_name_existing_entries_and_give_reasons() -> None:
    if not ENTRIES:
        pytest.skip(f"corpus manifest not found at {MANIFEST}")
    ids = {e.id for e in ENTRIES}
    for ident, (key, reason) in KNOWN_DISAGREEMENTS.items():
        assert ident in ids, ident
        assert key and reason.strip(), ident
