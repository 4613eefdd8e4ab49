"""Operating subcommands of `mailintake`: `status`, `explain` and `erase`."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mailintake.cli_output import emit
from mailintake.runtime import Runtime, bound_settings


def cmd_status(args: argparse.Namespace) -> int:
    from mailintake import status

    result = status.collect(bound_settings(), ask_server=not args.no_server)
    data = {**asdict(result), "needs_attention": result.needs_attention}
    emit(args, data, status.lines(result))
    # Non-zero when something needs attention, for cron or a monitor.
    return 1 if result.needs_attention else 0


def cmd_explain(args: argparse.Namespace) -> int:
    from mailintake.explain import explain

    path = Path(args.file)
    raw = path.read_bytes()
    runtime = Runtime.from_environment()
    if args.mailbox and args.mailbox not in runtime.config.current().mailboxes:
        print(f"no mailbox {args.mailbox}: judged as mail of an unknown mailbox", file=sys.stderr)
    result = explain(runtime, raw, args.mailbox, path.name)
    emit(args, result.as_dict(), result.lines())
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    from mailintake import erasure

    report = erasure.erase_sender(bound_settings(), args.sender)
    emit(args, asdict(report), erasure.lines(report))
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    st = sub.add_parser("status", parents=[common], help="every mailbox's health; exit code 1 when something "
                        "needs attention")
    st.add_argument("--no-server", action="store_true", help="do not ask the mail servers what is waiting")
    st.set_defaults(func=cmd_status)
    ex = sub.add_parser("explain", parents=[common], help="what a raw mail would become, writing nothing")
    ex.add_argument("file", help="a raw mail (.eml)")
    ex.add_argument("--mailbox", help="judge it as mail of this mailbox (default: the system mailbox)")
    ex.set_defaults(func=cmd_explain)
    er = sub.add_parser("erase", parents=[common], help="remove everything stored for one sender")
    er.add_argument("--sender", required=True, help="the sender's address")
    er.set_defaults(func=cmd_erase)
