"""Mailbox configuration: the records, their validation, their secrets and their schedules."""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from pynamodb.exceptions import DoesNotExist

from mailintake.addresses import is_address
from mailintake.aws_clients import client
from mailintake.graph_api import GRAPH_BASE_URL
from mailintake.settings import Settings
from mailintake.sources import START_CHOICES, DynamoCursorStore, FolderCount, StartAt, StartNotSupported, open_source
from mailintake.store import MailboxRecord, list_mailboxes, plain_map
from mailintake.tokens import AUTHS, FLOWS, MailboxLogin, TokenProvider

PROTOCOLS = ("imap", "pop3", "graph")
SECURITY = ("ssl", "starttls", "none")
AFTER_ACTIONS = {"imap": ("seen", "move", "delete"), "pop3": ("delete", "keep"), "graph": ("seen", "move", "delete")}
# Where a plain-HTTP Graph endpoint is allowed: this machine (the local Graph server the tests run).
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_PORTS = {("imap", "ssl"): 993, ("imap", "starttls"): 143, ("imap", "none"): 143,
                 ("pop3", "ssl"): 995, ("pop3", "starttls"): 110, ("pop3", "none"): 110}
SECRET_PREFIX = "mailintake/mailbox/"
# Protocols whose reading cannot start at the unread mail, and why.
NO_UNREAD_START = {"pop3": "POP3 has no read state: start with new or all",
                   "graph": "Graph's delta query cannot start at the unread mail: start with new or all"}


class MailboxConfigError(ValueError):
    """A mailbox configuration that cannot work."""


@dataclass
class MailboxSpec:
    """What an admin gives to add a mailbox; validated before anything is stored."""

    name: str
    protocol: str
    host: str  # graph: the Graph base URL (empty: Microsoft's global service)
    username: str  # graph: the user or shared mailbox, by id or user principal name
    port: int | None = None
    security: str = "ssl"
    secret_name: str | None = None
    folder: str = "INBOX"
    after: str | None = None
    move_to: str | None = None
    workspace: str = "default"
    enabled: bool = True
    poll_minutes: int | None = None
    ca_bundle: str | None = None
    system: bool = False
    # OAuth 2.0 (see mailintake.tokens); a password mailbox leaves them None, as records from before did.
    auth: str | None = None  # password | microsoft | google
    oauth_flow: str | None = None  # microsoft: app | delegated; google: service-account | refresh-token
    tenant: str | None = None
    client_id: str | None = None
    oauth_endpoint: str | None = None
    secret_expires: str | None = None  # YYYY-MM-DD
    # Recipient routing: the mailbox's own addresses, address (or "+detail") -> workspace, sub-addresses.
    addresses: list[str] | None = None
    routes: dict[str, str] | None = None
    subaddress: bool = False

    def validate(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name) or len(self.name) > 64:
            raise MailboxConfigError("name must be 1-64 letters, digits, '-', '_' or '.'")
        if self.protocol not in PROTOCOLS:
            raise MailboxConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}")
        if self.security not in SECURITY:
            raise MailboxConfigError(f"security must be one of {', '.join(SECURITY)}")
        if self.protocol == "graph":
            self._validate_graph()
        actions = AFTER_ACTIONS[self.protocol]
        if self.after is None:
            self.after = actions[0]
        if self.after not in actions:
            raise MailboxConfigError(f"after must be one of {', '.join(actions)} for {self.protocol}")
        if self.after == "move" and not self.move_to:
            raise MailboxConfigError("after=move needs a folder to move to (--move-to)")
        if self.port is None:
            self.port = DEFAULT_PORTS[(self.protocol, self.security)]
        if not 0 < self.port < 65536:
            raise MailboxConfigError("port out of range")
        if self.poll_minutes is not None and self.poll_minutes < 1:
            raise MailboxConfigError("poll interval must be at least one minute")
        self.addresses = validate_addresses(self.addresses)
        self.routes = validate_routes(self.routes)
        self._validate_auth()

    def _validate_auth(self) -> None:
        if self.auth in (None, "password"):
            self.auth = None  # stored as before OAuth: a password mailbox's record does not change
            return
        if self.auth not in AUTHS:
            raise MailboxConfigError(f"auth must be one of {', '.join(AUTHS)}")
        flows = FLOWS[self.auth]
        self.oauth_flow = self.oauth_flow or flows[0]
        if self.oauth_flow not in flows:
            raise MailboxConfigError(f"{self.auth} sign-in must be one of {', '.join(flows)}")
        if self.auth == "microsoft" and not (self.tenant and self.client_id):
            raise MailboxConfigError("microsoft needs --tenant (Directory ID) and --client-id (Application ID)")
        if self.auth == "google" and self.oauth_flow == "refresh-token" and not self.client_id:
            raise MailboxConfigError("a google refresh token needs the OAuth client's --client-id")
        if self.secret_expires:
            try:
                date.fromisoformat(self.secret_expires)
            except ValueError as exc:
                raise MailboxConfigError("--secret-expires must be a date, YYYY-MM-DD") from exc

    def _validate_graph(self) -> None:
        """A Graph mailbox has a base URL instead of a host and port: HTTPS, or HTTP on this machine only."""
        self.host = (self.host or GRAPH_BASE_URL).rstrip("/")
        url = urlsplit(self.host)
        if url.scheme not in ("https", "http") or not url.hostname or url.query or url.fragment:
            raise MailboxConfigError(f"the Graph URL must be like {GRAPH_BASE_URL}, not {self.host!r}")
        if url.scheme == "http" and url.hostname not in LOOPBACK:
            raise MailboxConfigError("the Graph URL must use https (plain http only to this machine)")
        port = url.port or (443 if url.scheme == "https" else 80)
        if self.port is not None and self.port != port:
            raise MailboxConfigError("a Graph mailbox takes no port: give it in the Graph URL")
        self.port = port
        self.security = "ssl" if url.scheme == "https" else "none"
        if not self.username:
            raise MailboxConfigError("a Graph mailbox needs the user or shared mailbox (--user: id or address)")


def validate_addresses(addresses: list[str] | None) -> list[str] | None:
    """The mailbox's own addresses, lower-cased; MailboxConfigError for one that is not an address."""
    cleaned = [a.strip().lower() for a in addresses or () if a.strip()]
    for address in cleaned:
        if not is_address(address):
            raise MailboxConfigError(f"{address!r} is not an email address")
    return cleaned or None


def validate_routes(routes: dict[str, str] | None) -> dict[str, str] | None:
    """Routes as stored: a lower-cased address or "+detail" -> a workspace name."""
    cleaned: dict[str, str] = {}
    for key, workspace in (routes or {}).items():
        key, workspace = key.strip().lower(), workspace.strip()
        if not workspace:
            raise MailboxConfigError(f"route {key!r} names no workspace")
        if key.startswith("+"):
            if len(key) < 2 or "@" in key:
                raise MailboxConfigError(f"route {key!r}: a sub-address route is +detail (e.g. +ops)")
        elif not is_address(key):
            raise MailboxConfigError(f"route {key!r}: an address (support@example.org) or +detail (+ops)")
        cleaned[key] = workspace
    return cleaned or None


def parse_routes(values: list[str]) -> dict[str, str]:
    """``ADDRESS=WORKSPACE`` or ``+DETAIL=WORKSPACE`` (the CLI's --route), as a mapping."""
    routes: dict[str, str] = {}
    for value in values:
        key, equals, workspace = value.partition("=")
        if not equals:
            raise MailboxConfigError(f"--route {value!r}: ADDRESS=WORKSPACE or +DETAIL=WORKSPACE")
        routes[key.strip().lower()] = workspace.strip()
    return routes


def schedule_name(mailbox: str) -> str:
    return f"mailbox-{mailbox}"


def fetch_event(mailbox: str) -> dict[str, Any]:
    """The event each mailbox's schedule sends to the fetch function (events/fetch.json has this shape)."""
    return {"mailbox": mailbox}


def add_mailbox(spec: MailboxSpec, settings: Settings, password: str | None = None,
                oauth_secret: dict[str, Any] | None = None) -> MailboxRecord:
    """Store a mailbox (its password, or the OAuth secret mailintake.tokens reads, as JSON, in Secrets
    Manager) and create or update its schedule; its first run reads all the folder holds (see
    :func:`add_mailbox_starting` for the other start choices)."""
    return add_mailbox_starting(spec, settings, password, oauth_secret=oauth_secret)[0]


@dataclass(frozen=True)
class Added:
    """What adding a mailbox found: whether it was new, and (for a new one started by choice) its folder."""

    new: bool
    start: str | None
    count: FolderCount | None


def add_mailbox_starting(spec: MailboxSpec, settings: Settings, password: str | None = None,
                         start: StartAt | None = None,
                         oauth_secret: dict[str, Any] | None = None) -> tuple[MailboxRecord, Added]:
    """Store a mailbox and create or update its schedule. A mailbox that is new, with ``start``, is first
    opened on its server: :meth:`~mailintake.sources.MailSource.begin` counts its folder and records where
    reading starts, before the record and the schedule exist, so that no run can read the folder first.
    An existing mailbox keeps its reading position (``start`` is then ignored)."""
    spec.validate()
    if start is not None and start not in START_CHOICES:
        raise MailboxConfigError(f"start must be one of {', '.join(START_CHOICES)}")
    if start == "unread" and spec.protocol in NO_UNREAD_START:
        raise MailboxConfigError(NO_UNREAD_START[spec.protocol])
    secrets = client("secretsmanager", settings.region)
    if oauth_secret is not None:
        if spec.auth is None:
            raise MailboxConfigError("an OAuth secret is for --auth microsoft or google")
        password = json.dumps(oauth_secret)
    if password is not None:
        spec.secret_name = spec.secret_name or f"{SECRET_PREFIX}{spec.name}"
        try:
            secrets.create_secret(Name=spec.secret_name, SecretString=password)
        except secrets.exceptions.ResourceExistsException:
            secrets.put_secret_value(SecretId=spec.secret_name, SecretString=password)
    if not spec.secret_name:
        raise MailboxConfigError("give a password or the name of a secret holding it")
    existing = get_mailbox(spec.name)
    values = asdict(spec)
    values["poll_minutes"] = spec.poll_minutes or settings.default_poll_minutes
    values["start"] = existing.start if existing is not None else None
    record = MailboxRecord(*MailboxRecord.key(spec.name), kind="mailbox", sort=spec.name, **values)
    if existing is not None:
        record.created = existing.created
        if spec.routes is None and spec.addresses is None and not spec.subaddress:
            # An update that names no routing (a new password, another interval) keeps the routing.
            record.addresses, record.routes = existing.addresses, existing.routes
            record.subaddress = existing.subaddress
    count = None
    if existing is None and start is not None:
        if password is None:
            password = str(secrets.get_secret_value(SecretId=spec.secret_name)["SecretString"])
        try:
            count = begin_reading(record, password, start, settings)
        except MailboxConfigError:
            if start != "all":
                raise
            # Everything is read either way: the count is only news. The first run will report the problem.
    if existing is None:
        record.start = start
    record.save()
    put_schedule(record, settings)
    return record, Added(existing is None, record.start, count)


def begin_reading(record: MailboxRecord, password: str, start: StartAt, settings: Settings) -> FolderCount:
    """Open the mailbox once and record where its reading starts (a cursor); what the folder holds.
    ``password`` is the mailbox's secret: its password, or for an OAuth mailbox what a token is got with."""
    login = MailboxLogin(record, TokenProvider.for_settings(settings), lambda _record: password)
    try:
        with open_source(record, login, DynamoCursorStore()) as source:
            return source.begin(start)
    except StartNotSupported as exc:
        raise MailboxConfigError(str(exc)) from exc
    except Exception as exc:  # connect, TLS, login, folder: whatever it is, the admin must read it, not a trace
        raise MailboxConfigError(f"cannot read {record.host}:{int(record.port)} to count the folder and record "
                                 f"where reading starts ({type(exc).__name__}: {exc}); or add it with --start all"
                                 ) from exc


def put_schedule(record: MailboxRecord, settings: Settings) -> None:
    scheduler = client("scheduler", settings.region)
    params: dict[str, Any] = {
        "Name": schedule_name(record.name),
        "GroupName": settings.schedule_group,
        "ScheduleExpression": f"rate({int(record.poll_minutes)} minute{'s' if record.poll_minutes != 1 else ''})",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "State": "ENABLED" if record.enabled else "DISABLED",
        "Target": {
            "Arn": settings.fetch_function_arn,
            "RoleArn": settings.scheduler_role_arn,
            "Input": json.dumps(fetch_event(record.name)),
            # A missed run is simply picked up by the next one; no point in piling retries on a mail server.
            "RetryPolicy": {"MaximumRetryAttempts": 0},
        },
    }
    try:
        scheduler.create_schedule(**params)
    except scheduler.exceptions.ConflictException:
        scheduler.update_schedule(**params)


def remove_mailbox(name: str, settings: Settings) -> None:
    scheduler = client("scheduler", settings.region)
    with contextlib.suppress(scheduler.exceptions.ResourceNotFoundException):
        scheduler.delete_schedule(Name=schedule_name(name), GroupName=settings.schedule_group)
    with contextlib.suppress(DoesNotExist):
        MailboxRecord.get(*MailboxRecord.key(name)).delete()


def set_routing(name: str, routes: dict[str, str] | None = None, addresses: list[str] | None = None,
                subaddress: bool | None = None, clear: bool = False) -> MailboxRecord:
    """Change a mailbox's recipient routing: ``routes`` are added (all removed first with ``clear``),
    ``addresses`` replace its own addresses, ``subaddress`` turns sub-address routing on or off."""
    record = get_mailbox(name)
    if record is None:
        raise MailboxConfigError(f"no mailbox {name}")
    current = {} if clear else {str(k): str(v) for k, v in plain_map(record.routes).items()}
    current.update(validate_routes(routes) or {})
    record.routes = current or None
    if addresses is not None:
        record.addresses = validate_addresses(addresses)
    if subaddress is not None:
        record.subaddress = subaddress
    record.save()
    return record


def get_mailbox(name: str) -> MailboxRecord | None:
    try:
        return MailboxRecord.get(*MailboxRecord.key(name), consistent_read=True)
    except DoesNotExist:
        return None


def scheduled_fetch_events(settings: Settings) -> list[dict[str, Any]]:
    """The inputs of every enabled schedule in the group: what one scheduled cycle would run."""
    scheduler = client("scheduler", settings.region)
    events = []
    paginator = scheduler.get_paginator("list_schedules")
    for page in paginator.paginate(GroupName=settings.schedule_group, State="ENABLED"):
        for summary in page["Schedules"]:
            detail = scheduler.get_schedule(Name=summary["Name"], GroupName=settings.schedule_group)
            events.append(json.loads(detail["Target"]["Input"]))
    return events


__all__ = [
    "Added", "MailboxConfigError", "MailboxSpec", "add_mailbox", "add_mailbox_starting", "begin_reading",
    "get_mailbox", "list_mailboxes", "parse_routes", "remove_mailbox", "scheduled_fetch_events", "set_routing",
]
