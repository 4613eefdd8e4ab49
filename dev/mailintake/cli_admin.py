"""Admin subcommands of `mailintake`: users, workspaces, system settings and scripts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mailintake.cli_output import emit
from mailintake.runtime import bound_settings
from mailintake.store import plain_map
from mailintake.system_settings import SettingError


def _fail(message: str) -> int:
    print(message, file=sys.stderr)
    return 2


def _user_dict(user: Any) -> dict[str, Any]:
    return {"email": user.email, "name": user.name, "roles": plain_map(user.roles), "created_by": user.created_by}


def cmd_users_add(args: argparse.Namespace) -> int:
    from mailintake import directory

    bound_settings()
    try:
        user = directory.put_user(args.email, args.name or "", directory.parse_roles(args.role or []))
    except SettingError as exc:
        return _fail(str(exc))
    emit(args, _user_dict(user), [f"user {user.email} saved"])
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    from mailintake import directory

    bound_settings()
    users = directory.list_users()
    emit(args, [_user_dict(u) for u in users], [
        f"{u.email:40} {u.name[:30]:30} " + (", ".join(f"{w}={r}" for w, r in sorted(plain_map(u.roles).items()))
                                            or "(default roles)") for u in users
    ])
    return 0


def cmd_users_remove(args: argparse.Namespace) -> int:
    from mailintake import directory

    bound_settings()
    removed = directory.remove_user(args.email)
    emit(args, {"email": args.email, "removed": removed},
          [f"user {args.email} {'removed' if removed else 'did not exist'}"])
    return 0


def cmd_workspaces_add(args: argparse.Namespace) -> int:
    from mailintake import directory

    bound_settings()
    try:
        record = directory.put_workspace(args.name, args.title or "", args.default_role)
    except SettingError as exc:
        return _fail(str(exc))
    emit(args, {"name": record.name, "title": record.title, "default_role": record.default_role},
          [f"workspace {record.name} saved"])
    return 0


def cmd_workspaces_list(args: argparse.Namespace) -> int:
    from mailintake import directory

    bound_settings()
    records = directory.list_workspaces()
    emit(args, [{"name": w.name, "title": w.title, "default_role": w.default_role} for w in records],
          [f"{w.name:20} {w.title[:40]:40} default role: {w.default_role or '(system default)'}" for w in records])
    return 0


def _read_value(args: argparse.Namespace) -> str | None:
    if args.file == "-":
        return sys.stdin.read()
    if args.file:
        return Path(args.file).read_text()
    return str(args.value) if args.value is not None else None


def cmd_settings_get(args: argparse.Namespace) -> int:
    from mailintake import system_settings

    bound_settings()
    system = system_settings.read_scope(system_settings.SYSTEM)
    own = system_settings.read_scope(system_settings.scope_of(args.mailbox)) if args.mailbox else {}
    keys = [d.key for d in system_settings.DEFINITIONS] + sorted(
        k for k in system if k.startswith(system_settings.SCRIPT_PARAM_PREFIX))
    if args.key:
        keys = [args.key]
    data = {}
    for key in keys:
        definition = system_settings.BY_KEY.get(key)
        if key in own:
            value, source = own[key], f"mailbox {args.mailbox}"
        elif key in system:
            value, source = system[key], "system"
        else:
            value, source = (definition.default if definition else ""), "default"
        data[key] = {"value": value, "source": source}
    if args.key and not args.json:
        print(data[args.key]["value"], end="" if data[args.key]["value"].endswith("\n") else "\n")
        return 0
    lines = []
    for key, entry in data.items():
        value = entry["value"]
        shown = value if "\n" not in value.strip() else f"({len(value.strip().splitlines())} lines)"
        lines.append(f"{key:40} {shown[:60]:60} [{entry['source']}]")
    emit(args, data, lines)
    return 0


def cmd_settings_set(args: argparse.Namespace) -> int:
    from mailintake import system_settings

    bound_settings()
    value = None if args.unset else _read_value(args)
    if value is None and not args.unset:
        return _fail("give a value, --file FILE, --file - (stdin) or --unset")
    try:
        system_settings.write_values({args.key: value}, args.mailbox)
    except SettingError as exc:
        return _fail(str(exc))
    where = f"mailbox {args.mailbox}" if args.mailbox else "system"
    emit(args, {"key": args.key, "value": value, "scope": where},
          [f"{args.key} {'unset' if value is None else 'set'} ({where})"])
    return 0


def cmd_scripts_set(args: argparse.Namespace) -> int:
    from mailintake import system_settings

    bound_settings()
    changes: dict[str, str | None] = {}
    for option, key in (("guard", "scripts.guard"), ("activity", "scripts.activity"),
                        ("timeout", "scripts.timeoutSeconds")):
        value = getattr(args, option)
        if value is not None:
            changes[key] = value if value != "" else None
    if not changes:
        return _fail("give --guard, --activity or --timeout (an empty value removes it)")
    try:
        values = system_settings.write_values(changes, args.mailbox)
    except SettingError as exc:
        return _fail(str(exc))
    data = {k: v for k, v in values.items() if k.startswith("scripts.")}
    emit(args, data, [f"{k} = {v}" for k, v in sorted(data.items())])
    return 0


def cmd_scripts_show(args: argparse.Namespace) -> int:
    from mailintake import system_settings

    bound_settings()
    system = system_settings.read_scope(system_settings.SYSTEM)
    data: dict[str, Any] = {"system": {k: v for k, v in system.items() if k.startswith("scripts.")}}
    scopes = [args.mailbox] if args.mailbox else [m.name for m in _mailboxes()]
    for name in scopes:
        own = system_settings.read_scope(system_settings.scope_of(name))
        scripts = {k: v for k, v in own.items() if k.startswith("scripts.")}
        if scripts or args.mailbox:
            data[f"mailbox {name}"] = scripts
    lines = [f"{scope}: " + (", ".join(f"{k}={v}" for k, v in sorted(values.items())) or "(none)")
             for scope, values in data.items()]
    emit(args, data, lines)
    return 0


def _mailboxes() -> list[Any]:
    from mailintake.store import list_mailboxes

    return list_mailboxes()


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the admin subcommands to the `mailintake` parser's subparsers."""
    users = sub.add_parser("users", help="users and their roles per workspace").add_subparsers(
        dest="sub", required=True)
    ua = users.add_parser("add", parents=[common], help="add or update a user")
    ua.add_argument("email", help="the user's address (or `guest`)")
    ua.add_argument("--name")
    ua.add_argument("--role", action="append", metavar="WORKSPACE=ROLE",
                    help="none|reader|reporter|editor|manager; `*` for every workspace; repeatable")
    ua.set_defaults(func=cmd_users_add)
    users.add_parser("list", parents=[common]).set_defaults(func=cmd_users_list)
    ur = users.add_parser("remove", parents=[common])
    ur.add_argument("email")
    ur.set_defaults(func=cmd_users_remove)

    workspaces = sub.add_parser("workspaces", help="workspaces").add_subparsers(dest="sub", required=True)
    wa = workspaces.add_parser("add", parents=[common], help="add or update a workspace")
    wa.add_argument("name")
    wa.add_argument("--title")
    wa.add_argument("--default-role", help="role of users without one of their own here")
    wa.set_defaults(func=cmd_workspaces_add)
    workspaces.add_parser("list", parents=[common]).set_defaults(func=cmd_workspaces_list)

    settings = sub.add_parser("settings", help="system settings and filter lists").add_subparsers(
        dest="sub", required=True)
    sg = settings.add_parser("get", parents=[common], help="show settings (all, or one's raw value)")
    sg.add_argument("key", nargs="?")
    sg.add_argument("--mailbox", help="include this workspace mailbox's overrides")
    sg.set_defaults(func=cmd_settings_get)
    ss = settings.add_parser("set", parents=[common], help="set a setting (multi-line values from a file)")
    ss.add_argument("key")
    ss.add_argument("value", nargs="?")
    ss.add_argument("--file", help="read the value from FILE, or stdin with `-`")
    ss.add_argument("--unset", action="store_true", help="back to the default (or the system value)")
    ss.add_argument("--mailbox", help="override for this workspace mailbox")
    ss.set_defaults(func=cmd_settings_set)

    scripts = sub.add_parser("scripts", help="guard and activity scripts").add_subparsers(dest="sub", required=True)
    sc = scripts.add_parser("set", parents=[common], help="configure scripts (system, or --mailbox)")
    sc.add_argument("--guard", metavar="MODULE:FUNCTION", help="empty string removes it")
    sc.add_argument("--activity", metavar="MODULE:FUNCTION", help="empty string removes it")
    sc.add_argument("--timeout", metavar="SECONDS")
    sc.add_argument("--mailbox")
    sc.set_defaults(func=cmd_scripts_set)
    sh = scripts.add_parser("show", parents=[common])
    sh.add_argument("--mailbox")
    sh.set_defaults(func=cmd_scripts_show)
