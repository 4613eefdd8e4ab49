"""Report how the parser and automail classifier do on a mail corpus.

Usage: python bench/corpus_report.py [MANIFEST]

MANIFEST defaults to ``$MAILINTAKE_CORPUS/manifest.jsonl`` or ``../shared/corpus/manifest.jsonl``
relative to the repository root. Prints per source folder how many messages met every expectation, one
line per unmet expectation, and ends with ``corpus: N/M messages met every expectation``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import defaultdict
from pathlib import Path

from mailintake.conformance import Result, check_entry, default_corpus_dir, load_manifest

REPO_ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("manifest", nargs="?", type=Path,
                        default=default_corpus_dir(REPO_ROOT) / "manifest.jsonl")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    manifest: Path = args.manifest
    if not manifest.is_file():
        print(f"manifest not found: {manifest}", file=sys.stderr)
        return 2

    by_folder: dict[str, list[Result]] = defaultdict(list)
    for entry in load_manifest(manifest):
        folder = entry.id.split("/", 1)[0] if "/" in entry.id else "."
        by_folder[folder].append(check_entry(entry))

    total = met = 0
    for folder in sorted(by_folder):
        results = by_folder[folder]
        ok = sum(r.ok for r in results)
        total += len(results)
        met += ok
        print(f"{folder}: {ok}/{len(results)} messages met every expectation")
        for r in results:
            for failure in r.failures:
                print(f"  {r.entry.id}: {failure}")
    print(f"corpus: {met}/{total} messages met every expectation")
    return 0 if met == total else 1


if __name__ == "__main__":
    sys.exit(main())
