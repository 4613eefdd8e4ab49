"""Replay subcommands of `mailintake`: `messages reprocess` and `dlq redrive`."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from typing import Any

from mailintake.cli_output import emit
from mailintake.runtime import bound_settings


def cmd_messages_reprocess(args: argparse.Namespace) -> int:
    from mailintake import replay

    settings = bound_settings()
    if bool(args.keys) == bool(args.failed):
        print("give the raw message keys, or --failed (not both)", file=sys.stderr)
        return 2
    keys = replay.failed_keys() if args.failed else list(args.keys)
    results = replay.reprocess(settings, keys, args.budget)
    emit(args, [asdict(r) for r in results],
          [f"{r.key}: {r.action} -> {r.outcome}" for r in results])
    # Non-zero when something still did not work, so a script can tell.
    return 1 if any(r.action in ("failed", "missing") for r in results) else 0


def cmd_messages_accept(args: argparse.Namespace) -> int:
    from mailintake import replay

    settings = bound_settings()
    if bool(args.keys) == bool(args.all_discarded):
        print("give the raw message keys, or --all-discarded (not both)", file=sys.stderr)
        return 2
    keys = replay.discarded_keys() if args.all_discarded else list(args.keys)
    results = replay.accept(settings, keys)
    emit(args, [asdict(r) for r in results],
          [f"{r.key}: {r.action} -> {r.outcome}" for r in results])
    return 1 if any(r.action in ("failed", "missing", "unchanged") for r in results) else 0


def cmd_dlq_redrive(args: argparse.Namespace) -> int:
    from mailintake import replay

    moved = replay.redrive(bound_settings(), args.limit)
    emit(args, {"redriven": [asdict(m) for m in moved]},
          [f"moved {len(moved)} message(s) from the dead-letter queue to the intake queue",
           *(f"  {m.key or m.message_id}" for m in moved)])
    return 0


def _subparsers_of(parser: argparse.ArgumentParser) -> Any:
    # argparse has no public way to reach a parser's subcommands once made.
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the replay commands: under the existing `messages` command, and a new `dlq` command."""
    if "messages" in sub.choices:
        messages = _subparsers_of(sub.choices["messages"])
    else:
        messages = sub.add_parser("messages", help="the ledger").add_subparsers(dest="sub", required=True)
    rp = messages.add_parser("reprocess", parents=[common],
                             help="run stored raw messages through processing again (final outcomes stay)")
    rp.add_argument("keys", nargs="*", metavar="KEY", help="raw message S3 keys (as in `messages list`)")
    rp.add_argument("--failed", action="store_true", help="every message whose ledger outcome is failed")
    rp.add_argument("--budget", type=float, metavar="SECONDS",
                    help="time each mail may take (default: the processing budget setting, 60 s); for a mail "
                         "recorded as 'failed: processing budget exceeded'")
    rp.set_defaults(func=cmd_messages_reprocess)
    ac = messages.add_parser("accept", parents=[common],
                             help="file discarded mails (machine-made or filter-list matches) as items after all")
    ac.add_argument("keys", nargs="*", metavar="KEY", help="raw message S3 keys (as in `messages list`)")
    ac.add_argument("--all-discarded", action="store_true",
                    help="every mail discarded as machine-made or by a filter list")
    ac.set_defaults(func=cmd_messages_accept)

    dlq = sub.add_parser("dlq", help="the intake dead-letter queue").add_subparsers(dest="sub", required=True)
    rd = dlq.add_parser("redrive", parents=[common], help="move dead-letter messages back to the intake queue")
    rd.add_argument("--limit", type=int, help="move at most this many")
    rd.set_defaults(func=cmd_dlq_redrive)
