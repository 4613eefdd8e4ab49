"""`mailintake`: the admin's command line, against the local stack or a deployed one.

Where the settings come from, first match wins per variable: the process environment; then, when run
inside a checkout with the local stack up, `.local/stack.env`; otherwise the outputs of the deployed
CloudFormation stack named by MAILINTAKE_STACK (default `mailintake`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mailintake.cli_output import emit, plain

OUTPUT_ENV = {
    "TableName": "MAILINTAKE_TABLE",
    "BucketName": "MAILINTAKE_BUCKET",
    "QueueUrl": "MAILINTAKE_QUEUE_URL",
    "DlqUrl": "MAILINTAKE_DLQ_URL",
    "FetchFunctionArn": "MAILINTAKE_FETCH_FUNCTION_ARN",
    "ScheduleGroupName": "MAILINTAKE_SCHEDULE_GROUP",
    "SchedulerRoleArn": "MAILINTAKE_SCHEDULER_ROLE_ARN",
}


def _local_root() -> Path | None:
    """The checkout whose local stack is up: $MAILINTAKE_ROOT or the cwd, if it holds .local/stack.env."""
    from mailintake.localstack.resources import stack_env_path

    for base in filter(None, (os.environ.get("MAILINTAKE_ROOT"), os.getcwd())):
        if stack_env_path(base).is_file():
            return Path(base)
    return None


def load_environment(verbose: bool = False) -> str:
    """Fill in os.environ for this process (the handlers the CLI runs read it too). Returns the mode."""
    if os.environ.get("MAILINTAKE_TABLE"):
        return "environment"
    root = _local_root()
    if root is not None:
        from mailintake.localstack.resources import read_stack_env

        for key, value in read_stack_env(root).items():
            os.environ.setdefault(key, value)
        # The handlers run in this process: no X-Ray daemon, no CloudWatch to read EMF metrics, and
        # their INFO logs only with --verbose.
        os.environ["POWERTOOLS_TRACE_DISABLED"] = "true"
        os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
        if not verbose:
            os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
        return "local"
    import boto3

    stack = os.environ.get("MAILINTAKE_STACK", "mailintake")
    described = boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    for output in described.get("Outputs", []):
        if output["OutputKey"] in OUTPUT_ENV:
            os.environ.setdefault(OUTPUT_ENV[output["OutputKey"]], output["OutputValue"])
    return "deployed"


MAILBOX_FIELDS = ("name", "protocol", "host", "port", "security", "username", "secret_name", "folder", "after",
                  "move_to", "workspace", "enabled", "poll_minutes", "system", "auth", "oauth_flow", "tenant",
                  "client_id", "oauth_endpoint", "secret_expires")


def _mailbox_dict(record: Any) -> dict[str, Any]:
    from mailintake.store import plain_map

    data = {f: plain(getattr(record, f)) for f in MAILBOX_FIELDS}
    data["port"] = int(data["port"])
    data["poll_minutes"] = int(data["poll_minutes"])
    data["addresses"] = [str(a) for a in record.addresses or ()]
    data["routes"] = {str(k): str(v) for k, v in plain_map(record.routes).items()}
    data["subaddress"] = bool(record.subaddress)
    data["start"] = record.start
    return data


def _routing_lines(record: Any) -> list[str]:
    from mailintake.store import plain_map

    routes = plain_map(record.routes)
    lines = [f"  mail to {key} -> workspace {value}" for key, value in sorted(routes.items())]
    if record.subaddress:
        lines.append("  mail to a sub-address (name+WORKSPACE@) -> that workspace, when it exists")
    if lines:
        lines.append(f"  anything else -> workspace {'(default)' if record.system else record.workspace}")
    return lines


def _warn_missing_workspaces(record: Any) -> None:
    """A route to a workspace that does not exist is passed over at intake: say so now."""
    from mailintake.directory import list_workspaces
    from mailintake.store import plain_map

    known = {w.name for w in list_workspaces()} | {"default"}
    for key, workspace in sorted(plain_map(record.routes).items()):
        if workspace not in known:
            print(f"warning: route {key} names workspace {workspace}, which does not exist (yet): such mail goes "
                  f"to {record.workspace} until it does", file=sys.stderr)


def _start_lines(record: Any, added: Any) -> list[str]:
    if not added.new:
        return [f"mailbox {record.name} updated; its reading position is kept"]
    count = added.count
    if count is None:
        return [f"mailbox {record.name} added; its first run reads everything in {record.folder}"]
    unread = "" if count.unread is None else f", {count.unread} unread"
    return [f"mailbox {record.name} added: {count.total} mail(s) in {record.folder}{unread}; the first run takes "
            f"{count.first_run} (--start {added.start}) and every mail that arrives from now on"]


def _attachments(record: Any) -> list[dict[str, Any]]:
    return [
        {"filename": a.filename, "content_type": a.content_type, "size": int(a.size), "key": a.key,
         "content_id": a.content_id, "inline": bool(a.inline)}
        for a in record.attachments or []
    ]


def _whole_texts(record: Any) -> dict[str, str]:
    """The whole texts of an item or comment whose texts were too large for the table (else nothing)."""
    if not getattr(record, "body_key", None):
        return {}
    from mailintake import bodies
    from mailintake.aws_clients import client

    settings = _settings()
    return bodies.load(client("s3", settings.region), settings.bucket, record.body_key)


def _item_dict(item: Any, comments: list[Any] | None = None) -> dict[str, Any]:
    """An item as the CLI shows it; with ``comments`` (item show) the whole texts, read from S3 if need be."""
    from mailintake.store import plain_map

    whole = _whole_texts(item) if comments is not None else {}
    data: dict[str, Any] = {
        "number": int(item.number), "title": whole.get("title", item.title),
        "description": whole.get("description", item.description),
        "author": item.author, "author_name": item.author_name, "workspace": item.workspace,
        "created": plain(item.created), "message_id": item.message_id, "mailbox": item.mailbox,
        "source_key": item.source_key, "attachments": _attachments(item),
        "item_type": item.item_type, "priority": item.priority,
        "readers": sorted(item.readers or ()), "editors": sorted(item.editors or ()),
        "fields": plain_map(item.fields), "simplified": list(item.simplified or ()),
    }
    if item.body_key:
        data["body_key"] = item.body_key
    if comments is not None:
        data["html"] = whole.get("html", item.html)
        data["comments"] = [_comment_dict(c) for c in comments]
    return data


def _comment_dict(comment: Any) -> dict[str, Any]:
    whole = _whole_texts(comment)
    full_text = whole.get("full_text", comment.full_text)
    return {"author": comment.author, "author_name": comment.author_name, "created": plain(comment.created),
            # A comment's whole reply text is kept only where it differs from its whole text.
            "text": whole.get("text", full_text if whole else comment.text), "full_text": full_text,
            "html": whole.get("html", comment.html), "message_id": comment.message_id,
            "attachments": _attachments(comment), "simplified": list(comment.simplified or ())}


def _ledger_dict(rec: Any) -> dict[str, Any]:
    return {
        "key": rec.key, "mailbox": rec.mailbox, "message_id": rec.message_id, "sender": rec.sender,
        "subject": rec.subject, "status": rec.status, "outcome": rec.outcome,
        "item_number": int(rec.item_number) if rec.item_number is not None else None,
        "step": rec.step, "error": rec.error, "created": plain(rec.created), "notes": list(rec.notes or ()),
    }


# --- commands -------------------------------------------------------------------------------------


def cmd_mailbox_add(args: argparse.Namespace) -> int:
    from mailintake.cli_mailbox import SignInError, oauth_secret, spec_fields
    from mailintake.mailboxes import MailboxConfigError, MailboxSpec, add_mailbox_starting, parse_routes

    ca_bundle = Path(args.ca_bundle).read_text() if args.ca_bundle else None
    password = os.environ.get(args.password_env) if args.password_env else args.password
    if args.protocol == "graph":
        host = args.graph_url or ""  # empty: Microsoft's global service
    elif args.host:
        host = args.host
    else:
        print(f"error: --host is needed for {args.protocol}", file=sys.stderr)
        return 2
    spec = MailboxSpec(
        name=args.name, protocol=args.protocol, host=host, username=args.user, port=args.port,
        security=args.security, secret_name=args.secret, folder=args.folder, after=args.after,
        move_to=args.move_to, workspace=args.workspace, enabled=not args.disabled,
        poll_minutes=args.poll_minutes, ca_bundle=ca_bundle, system=args.system, **spec_fields(args),
        addresses=args.address or None, subaddress=args.subaddress,
    )
    if args.security == "none" and args.auth == "password":
        print(f"warning: mailbox {args.name} uses security none: its password is sent unencrypted",
              file=sys.stderr)
    try:
        spec.routes = parse_routes(args.route or [])
        spec.validate()  # before a sign-in, so that a typo does not cost one
        secret = oauth_secret(args, ca_bundle)
        record, added = add_mailbox_starting(spec, _settings(), password, args.start, oauth_secret=secret)
    except (MailboxConfigError, SignInError) as exc:
        print(f"error: mailbox {args.name} not saved: {exc}", file=sys.stderr)
        return 2
    data = _mailbox_dict(record)
    if added.count is not None:
        data["folder_count"] = {"total": added.count.total, "unread": added.count.unread,
                                "first_run": added.count.first_run}
    _warn_missing_workspaces(record)
    signs_in = [f"signs in with {record.auth} ({record.oauth_flow}); check it with `mailintake mailbox test"
                f" {record.name}`"] if record.auth else []
    emit(args, data, [*_start_lines(record, added), *_routing_lines(record), *signs_in])
    return 0


def cmd_mailbox_routes(args: argparse.Namespace) -> int:
    from mailintake.mailboxes import MailboxConfigError, parse_routes, set_routing

    try:
        record = set_routing(args.name, parse_routes(args.route or []), args.address, args.subaddress, args.clear)
    except MailboxConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _warn_missing_workspaces(record)
    emit(args, _mailbox_dict(record), [f"mailbox {record.name} routing:", *(_routing_lines(record) or ["  none"])])
    return 0


def cmd_mailbox_list(args: argparse.Namespace) -> int:
    from mailintake.config_check import secret_expiry_notice
    from mailintake.store import list_mailboxes

    records = list_mailboxes()
    lines = []
    for r in records:
        lines.append(f"{r.name:20} {r.protocol:5} {r.security:8} {r.host}:{int(r.port)} {r.username} -> {r.workspace}"
                     f" after={r.after} every {int(r.poll_minutes)}m{'' if r.enabled else ' (disabled)'}"
                     + (f" sign-in={r.auth}/{r.oauth_flow}" if r.auth else ""))
        notice = secret_expiry_notice(r)
        if notice:
            lines.append(f"  warning: {notice}")
    emit(args, [{**_mailbox_dict(r), "warning": secret_expiry_notice(r)} for r in records], lines)
    return 0


def cmd_mailbox_remove(args: argparse.Namespace) -> int:
    from mailintake.mailboxes import remove_mailbox

    remove_mailbox(args.name, _settings())
    emit(args, {"name": args.name, "removed": True}, [f"mailbox {args.name} removed"])
    return 0


def cmd_poll(args: argparse.Namespace) -> int:
    settings = _settings()
    if args.mode == "deployed":
        import boto3

        from mailintake.mailboxes import scheduled_fetch_events

        lam = boto3.client("lambda")
        fetches = []
        for event in scheduled_fetch_events(settings):
            response = lam.invoke(FunctionName=settings.fetch_function_arn, Payload=json.dumps(event).encode())
            fetches.append(json.loads(response["Payload"].read() or b"null"))
        emit(args, {"fetches": fetches}, [json.dumps(f) for f in fetches])
        return 0
    from mailintake.localrun import run_cycle

    report = run_cycle(settings)
    data = {"fetches": report.fetches, "processed": report.processed, "failed": report.failed}
    emit(args, data, [
        *(f"{f['mailbox']}: fetched {f['fetched']} ({f['status']})" for f in report.fetches),
        f"processed {report.processed}, failed {report.failed}",
    ])
    return 0


def cmd_items_list(args: argparse.Namespace) -> int:
    from mailintake.store import list_items

    items = list_items()
    emit(args, [_item_dict(i) for i in items], [
        f"#{int(i.number):<5} {i.title[:60]:60} {i.author} [{i.workspace}]"
        + (f" ({len(i.attachments)} attachments)" if i.attachments else "")
        for i in items
    ])
    return 0


def item_data(number: int) -> dict[str, Any] | None:
    """What ``item show N --json`` prints: the item with its comments and their whole texts."""
    from mailintake.store import get_item, list_comments

    item = get_item(number)
    return None if item is None else _item_dict(item, list_comments(number))


def cmd_item_show(args: argparse.Namespace) -> int:
    data = item_data(args.number)
    if data is None:
        print(f"no item {args.number}", file=sys.stderr)
        return 1
    lines = [f"#{data['number']} {data['title']}", f"by {data['author']} in {data['workspace']} at {data['created']}"]
    lines += [f"{label}: {value}" for label, value in (
        ("type", data["item_type"]), ("priority", data["priority"]), ("readers", ", ".join(data["readers"])),
        ("editors", ", ".join(data["editors"])), ("fields", data["fields"])) if value]
    # What a bound simplified (the raw mail, source_key, has everything as sent).
    lines += [f"simplified: {line}" for line in data["simplified"]]
    lines += ["", data["description"].rstrip(), ""]
    lines += [f"attachment: {a['filename']} ({a['content_type']}, {a['size']} bytes) s3://{a['key']}"
              for a in data["attachments"]]
    for c in data["comments"]:
        lines += ["", f"--- comment by {c['author']} at {c['created']}"]
        lines += [f"simplified: {line}" for line in c["simplified"]]
        lines += [c["text"].rstrip()]
        lines += [f"attachment: {a['filename']} ({a['size']} bytes)" for a in c["attachments"]]
    emit(args, data, lines)
    return 0


def cmd_messages_list(args: argparse.Namespace) -> int:
    from mailintake.store import list_ledger

    records = [r for r in list_ledger() if not args.outcome or r.status == args.outcome]
    emit(args, [_ledger_dict(r) for r in records], [
        f"{plain(r.created)[:19]} {r.mailbox:12} {r.sender[:30]:30} {r.subject[:40]:40} {r.outcome}  [{r.key}]"
        for r in records
    ])
    return 0


def cmd_local_mailbox(args: argparse.Namespace) -> int:
    from mailintake.localstack.accounts import local_mailbox

    record = local_mailbox(_root(), _settings(), args.name, args.protocol, args.security, args.after,
                           args.move_to, args.workspace, args.system)
    emit(args, _mailbox_dict(record), [f"local mailbox {record.name} ready ({args.protocol}, {args.security})"])
    return 0


def cmd_local_send(args: argparse.Namespace) -> int:
    from aws_lambda_powertools.utilities import parameters

    from mailintake.localstack import dovecot
    from mailintake.mailboxes import get_mailbox

    mailbox = get_mailbox(args.mailbox)
    if mailbox is None:
        print(f"no mailbox {args.mailbox}", file=sys.stderr)
        return 1
    password = str(parameters.get_secret(mailbox.secret_name))
    for name in args.files:
        dovecot.deliver(_root(), mailbox.username, password, Path(name).read_bytes())
    emit(args, {"mailbox": args.mailbox, "delivered": len(args.files)},
          [f"delivered {len(args.files)} message(s) to {args.mailbox}"])
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    from mailintake.localrun import invoke

    event = json.loads(Path(args.event).read_text()) if args.event else {}
    result = invoke(args.function, event)
    print(json.dumps(result, indent=2, default=plain))
    return 0


def _root() -> Path:
    from mailintake.localrun import project_root

    return project_root()


def _settings() -> Any:
    from mailintake.runtime import bound_settings

    return bound_settings()


def build_parser() -> argparse.ArgumentParser:
    from mailintake import cli_mailbox

    parser = argparse.ArgumentParser(prog="mailintake", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="show the handlers' INFO logs (local stack)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON")
    sub = parser.add_subparsers(dest="command", required=True)

    mailbox = sub.add_parser("mailbox", help="mailbox configuration").add_subparsers(dest="sub", required=True)
    add = mailbox.add_parser("add", parents=[common], help="add or update a mailbox")
    add.add_argument("name")
    add.add_argument("--protocol", choices=("imap", "pop3", "graph"), required=True)
    add.add_argument("--host", help="imap, pop3: the mail server (required)")
    add.add_argument("--graph-url", help="graph: the Graph endpoint (default https://graph.microsoft.com/v1.0;"
                                         " a national cloud's, e.g. https://graph.microsoft.us/v1.0)")
    add.add_argument("--port", type=int)
    add.add_argument("--security", choices=("ssl", "starttls", "none"), default="ssl",
                     help="'none' sends the password in clear text: only for a trusted network")
    add.add_argument("--user", required=True, help="the login; graph: the user or shared mailbox (id or address)")
    pw = add.add_mutually_exclusive_group()
    pw.add_argument("--password", help="stored in Secrets Manager (prefer --password-env)")
    pw.add_argument("--password-env", help="name of an environment variable holding the password")
    pw.add_argument("--secret", help="name of an existing Secrets Manager secret holding the password")
    add.add_argument("--folder", default="INBOX", help="graph: a well-known name (inbox), an id, or a path of"
                                                      " display names (Inbox/Support)")
    add.add_argument("--after", help="imap, graph: seen|move|delete (default seen); pop3: delete|keep (default"
                                     " delete)")
    add.add_argument("--move-to")
    add.add_argument("--workspace", default="default")
    add.add_argument("--poll-minutes", type=int)
    add.add_argument("--ca-bundle", help="PEM file of extra CAs to trust (private CA, self-signed server)")
    add.add_argument("--disabled", action="store_true")
    add.add_argument("--system", action="store_true", help="the system-wide mailbox")
    cli_mailbox.add_auth_options(add)
    add.add_argument("--start", choices=("new", "unread", "all"), default="new",
                     help="a new mailbox's first run takes: only mail arriving after it is added (new, default),"
                          " what is unread now and everything after (unread; IMAP only), or everything (all)")
    add.add_argument("--address", action="append", metavar="ADDRESS",
                     help="the mailbox's own address (repeatable; for sub-addresses, e.g. support@example.org)")
    add.add_argument("--route", action="append", metavar="ADDRESS=WORKSPACE",
                     help="mail to ADDRESS (or +DETAIL, a sub-address of the mailbox's address) goes to WORKSPACE")
    add.add_argument("--subaddress", action="store_true",
                     help="mail to name+WORKSPACE@ (the mailbox's address) goes to that workspace")
    add.set_defaults(func=cmd_mailbox_add)
    routes = mailbox.add_parser("routes", parents=[common], help="change a mailbox's recipient routing")
    routes.add_argument("name")
    routes.add_argument("--route", action="append", metavar="ADDRESS=WORKSPACE", help="add or change a route")
    routes.add_argument("--clear", action="store_true", help="remove every route first")
    routes.add_argument("--address", action="append", metavar="ADDRESS", help="replace the mailbox's own addresses")
    sub_group = routes.add_mutually_exclusive_group()
    sub_group.add_argument("--subaddress", dest="subaddress", action="store_true", default=None)
    sub_group.add_argument("--no-subaddress", dest="subaddress", action="store_false")
    routes.set_defaults(func=cmd_mailbox_routes)
    lst = mailbox.add_parser("list", parents=[common])
    lst.set_defaults(func=cmd_mailbox_list)
    rm = mailbox.add_parser("remove", parents=[common])
    rm.add_argument("name")
    rm.set_defaults(func=cmd_mailbox_remove)
    cli_mailbox.register_test(mailbox, common)

    poll = sub.add_parser("poll", parents=[common], help="run one scheduled cycle, to the end")
    poll.set_defaults(func=cmd_poll)

    items = sub.add_parser("items").add_subparsers(dest="sub", required=True)
    il = items.add_parser("list", parents=[common])
    il.set_defaults(func=cmd_items_list)
    item = sub.add_parser("item").add_subparsers(dest="sub", required=True)
    show = item.add_parser("show", parents=[common])
    show.add_argument("number", type=int)
    show.set_defaults(func=cmd_item_show)

    messages = sub.add_parser("messages", help="the ledger").add_subparsers(dest="sub", required=True)
    ml = messages.add_parser("list", parents=[common])
    ml.add_argument("--outcome", choices=("item", "comment", "rejected", "discarded", "failed"))
    ml.set_defaults(func=cmd_messages_list)

    # Imported here, not at the top: they load the store (pynamodb, botocore), and the benches and tests
    # import this module for load_environment alone.
    from mailintake import cli_admin, cli_replay

    cli_admin.register(sub, common)
    cli_replay.register(sub, common)

    local = sub.add_parser("local", help="the local stack only").add_subparsers(dest="sub", required=True)
    lm = local.add_parser("mailbox", parents=[common], help="create a mail user on the local Dovecot + its mailbox")
    lm.add_argument("name")
    lm.add_argument("--protocol", choices=("imap", "pop3"), default="imap")
    lm.add_argument("--security", choices=("ssl", "starttls", "none"), default="ssl")
    lm.add_argument("--after")
    lm.add_argument("--move-to")
    lm.add_argument("--workspace", default="default")
    lm.add_argument("--system", action="store_true")
    lm.set_defaults(func=cmd_local_mailbox)
    send = local.add_parser("send", parents=[common], help="deliver raw messages into a local mailbox")
    send.add_argument("files", nargs="+")
    send.add_argument("--mailbox", required=True)
    send.set_defaults(func=cmd_local_send)

    inv = sub.add_parser("invoke", help="call a handler locally with an event file (like sam local invoke)")
    inv.add_argument("function", choices=("fetch", "process"))
    inv.add_argument("--event", help="JSON event file, e.g. events/fetch.json")
    inv.set_defaults(func=cmd_invoke)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.mode = load_environment(args.verbose)
    if args.command == "local" and args.mode != "local":
        print("`local` commands need the local stack: run `make up` first", file=sys.stderr)
        return 2
    _settings()  # binds the store to the stack's table before any command touches it
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
