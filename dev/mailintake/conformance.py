"""Checking parsed mail against a corpus manifest (see the corpus README for the schema).

The corpus test and ``bench/corpus_report.py`` both use :func:`check_entry`, so the rules of what an
expectation means live in one place.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailintake.automail import classify
from mailintake.message import ParsedMessage
from mailintake.parsing import parse_message

# auto_answer is this project's own key (tests/precision): whether the mail may be answered automatically.
EXPECTATION_KEYS = ("kind", "auto_answer", "subject", "attachments", "body_contains", "body_excludes",
                    "reply_contains", "reply_excludes")
_KNOWN_KEYS = frozenset({"id", "file", "source", "notes", *EXPECTATION_KEYS})

# Deliberate disagreements with a manifest: id -> (key, reason). Empty: every expectation is met.
KNOWN_DISAGREEMENTS: dict[str, tuple[str, str]] = {}


@dataclass
class Entry:
    id: str
    path: Path
    data: dict[str, Any]


@dataclass
class Result:
    entry: Entry
    failures: list[str] = field(default_factory=list)  # one line per unmet expectation
    checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures


def default_corpus_dir(repo_root: Path) -> Path:
    """``$MAILINTAKE_CORPUS`` or ``../shared/corpus`` beside the repository (how CI checks it out)."""
    env = os.environ.get("MAILINTAKE_CORPUS")
    return Path(env) if env else (repo_root.parent / "shared" / "corpus")


def load_manifest(manifest: Path) -> Iterator[Entry]:
    """Entries of a manifest; ``file`` paths are relative to the manifest's folder."""
    base = manifest.parent
    with manifest.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            data = json.loads(line)
            ident = str(data.get("id") or f"line-{n}")
            yield Entry(ident, base / str(data["file"]), data)


def _norm(text: str) -> str:
    # Compare text as a reader would: NFC, and white space runs (wrapping, &nbsp;) as one space.
    return " ".join(unicodedata.normalize("NFC", text).split())


def check_parsed(entry: Entry, parsed: ParsedMessage) -> Result:
    result = Result(entry)
    data = entry.data
    fail = result.failures

    if "kind" in data:
        result.checked += 1
        verdict = classify(parsed)
        # Accepted machine mail (lists, bulk, auto-generated) is a message that is never answered.
        got = verdict.kind if verdict is not None and verdict.discard else "message"
        if got != data["kind"]:
            reason = f" ({verdict.reason})" if verdict else ""
            fail.append(f"kind: expected {data['kind']!r}, got {got!r}{reason}")
    if "auto_answer" in data:
        result.checked += 1
        verdict = classify(parsed)
        if (verdict is None) != bool(data["auto_answer"]):
            said = f"{verdict.kind} ({verdict.reason})" if verdict else "ordinary mail"
            fail.append(f"auto_answer: expected {data['auto_answer']!r}, classified as {said}")
    if "subject" in data:
        result.checked += 1
        if _norm(parsed.subject) != _norm(str(data["subject"])):
            fail.append(f"subject: expected {data['subject']!r}, got {parsed.subject!r}")
    if "attachments" in data:
        result.checked += 1
        expected = [unicodedata.normalize("NFC", str(n)) for n in data["attachments"]]
        got_names = [unicodedata.normalize("NFC", a.filename) for a in parsed.attachments]
        if sorted(got_names) != sorted(expected):
            fail.append(f"attachments: expected {expected!r}, got {got_names!r}")
    for key, text, want in (
        ("body_contains", parsed.text, True),
        ("body_excludes", parsed.text, False),
        ("reply_contains", parsed.reply_text, True),
        ("reply_excludes", parsed.reply_text, False),
    ):
        for needle in data.get(key, []):
            result.checked += 1
            present = _norm(str(needle)) in _norm(text)
            if present != want:
                verb = "missing" if want else "present"
                fail.append(f"{key}: {needle!r} {verb}")
    for key in data:
        if key not in _KNOWN_KEYS:
            fail.append(f"unknown manifest key {key!r}")
    known = KNOWN_DISAGREEMENTS.get(entry.id)
    if known:
        fail[:] = [f for f in fail if not f.startswith(known[0] + ":")]
    return result


def check_entry(entry: Entry) -> Result:
    """Parse the entry's message and check every expectation the manifest gives for it."""
    try:
        with entry.path.open("rb") as fh:
            parsed = parse_message(fh)
    except Exception as exc:  # parse_message must never raise: report it as the unmet expectation
        result = Result(entry)
        result.failures.append(f"parse_message raised {exc.__class__.__name__}: {exc}")
        return result
    return check_parsed(entry, parsed)
