"""How every `mailintake` subcommand prints its result: JSON with --json, else lines for a person.

Its own module so that cli (the parser and the mailbox/item commands) and the command groups it
registers (cli_admin, cli_replay) share it without importing each other.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any


def plain(value: Any) -> Any:
    """A value json.dumps cannot write as it is, made plain: datetimes as ISO 8601, sets as sorted lists."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set):
        return sorted(value)
    return value


def emit(args: argparse.Namespace, data: Any, lines: list[str]) -> None:
    """Print ``data`` as JSON when the command was given --json, else ``lines`` (or "(none)")."""
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False, default=plain))
    else:
        print("\n".join(lines) if lines else "(none)")
