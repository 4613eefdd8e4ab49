"""``python -m mailintake.localstack up|down|reset|status [--root PATH]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mailintake.localstack import dovecot, motoserver, resources


def up(root: Path) -> None:
    mail = dovecot.start(root)
    endpoint = motoserver.start(root)
    env = resources.provision(root, mail, endpoint)
    print(f"moto server   {endpoint}")
    print(
        f"dovecot       {mail.host}  imap {mail.imap_port}  imaps {mail.imaps_port}  "
        f"pop3 {mail.pop3_port}  pop3s {mail.pop3s_port}"
    )
    print(f"CA bundle     {mail.ca_bundle}")
    for key in ("MAILINTAKE_TABLE", "MAILINTAKE_BUCKET", "MAILINTAKE_QUEUE_URL", "MAILINTAKE_SCHEDULE_GROUP"):
        if key in env:
            print(f"{key:<26}{env[key]}")
    print(f"environment   {resources.stack_env_path(root)}")


def down(root: Path) -> None:
    motoserver.stop(root)
    dovecot.stop(root)
    print("local stack stopped")


def status(root: Path) -> int:
    mail_up = dovecot.is_running(root)
    moto_up = motoserver.is_running(root)
    print(f"dovecot       {'running' if mail_up else 'stopped'}")
    print(f"moto server   {'running at ' + motoserver.endpoint_url() if moto_up else 'stopped'}")
    env_path = resources.stack_env_path(root)
    print(f"environment   {env_path if env_path.exists() else '(not written)'}")
    return 0 if mail_up and moto_up else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mailintake.localstack",
        description="Local Dovecot + moto server stack for development and integration tests.",
    )
    parser.add_argument("command", choices=["up", "down", "reset", "status"])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root (default: cwd)")
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    try:
        if args.command == "up":
            up(root)
        elif args.command == "down":
            down(root)
        elif args.command == "reset":
            resources.reset(root)
            dovecot.clear_mail(root)
            print("tables, buckets, queues, schedules and local mailboxes emptied")
        else:
            return status(root)
    except (dovecot.DovecotError, motoserver.MotoServerError, resources.LocalStackError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
