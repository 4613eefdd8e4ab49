"""System settings: the intake rules' knobs, filter lists and script configuration, kept in the table.

Values are strings, kept in one record per scope: ``system``, and ``mailbox:<name>`` for the few keys a
workspace mailbox may override. They are read once per container and cached for
``Settings.config_cache_seconds``, together with the workspaces and mailboxes, because reading them per
message would cost more requests than the message itself. An admin's change is therefore seen within that
time, not at once.
"""

from __future__ import annotations

import fnmatch
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pynamodb.exceptions import DoesNotExist

from mailintake.settings import Settings
from mailintake.store import MailboxRecord, SettingsRecord, WorkspaceRecord, list_mailboxes, plain_map, utcnow

SYSTEM = "system"
ROLES = ("none", "reader", "reporter", "editor", "manager")


class SettingError(ValueError):
    """A setting name or value that cannot be used."""


@dataclass(frozen=True)
class Definition:
    key: str
    kind: str  # bool | int | text | lines | names | choice | address | script
    default: str
    doc: str
    choices: tuple[str, ...] = ()
    per_mailbox: bool = False


DEFINITIONS: tuple[Definition, ...] = (
    Definition("intake.defaultWorkspace", "text", "default",
               "Workspace the system mailbox files new items in."),
    Definition("intake.knownSendersOnly", "bool", "false",
               "Reject mail from senders that are not users.", per_mailbox=True),
    Definition("intake.permittedAddresses", "text", "",
               "Senders allowed at all, on every mailbox: globs (`*@example.org`) separated by commas, spaces"
               " or lines, or one regular expression after `regex:`. Empty: everyone."),
    Definition("intake.unknownSenders", "choice", "create",
               "What a sender (or CC) that is not a user becomes: `create` a user from the address and"
               " display name, or `guest` (the author is the `guest` user; CCs are skipped).",
               choices=("create", "guest")),
    Definition("intake.authservIds", "names", "",
               "Authentication-Results authserv-ids of the receiving mail servers to trust (e.g. `mx.google.com`),"
               " separated by commas, spaces or lines. A user's address as sender counts only when the topmost"
               " Authentication-Results header from one of them shows it authenticated (DMARC pass, or SPF or"
               " DKIM pass aligned with the From domain). Empty: no check, the From address is believed.",
               per_mailbox=True),
    Definition("intake.unauthenticatedSender", "choice", "unknown",
               "Mail from a user's address that is not authenticated (with intake.authservIds set): `unknown`"
               " treats it as from an unknown sender (knownSendersOnly rejects it; the author is `guest`; no"
               " user is created), `reject` rejects it (step `authentication`). Neither gets a reply.",
               choices=("unknown", "reject"), per_mailbox=True),
    Definition("intake.defaultRole", "choice", "reporter",
               "Role of a user in a workspace where neither the user nor the workspace names one.",
               choices=ROLES),
    Definition("intake.ownAddresses", "lines", "",
               "The system's own addresses (besides reply.from and mailbox user names that are addresses):"
               " never replied to, never added from CC; mail from one of them (and from reply.from) is the"
               " system's own come back and is discarded (loop protection)."),
    Definition("intake.forwarders", "choice", "members",
               "Who may forward a mail on its original sender's behalf (the item's author is then the original"
               " sender, the forwarder its reporter): `members` (users with a role of their own in the"
               " workspace, or for every workspace, other than none), `editors` (editor or manager there),"
               " `nobody`. From anyone else a forward is an ordinary mail.",
               choices=("members", "editors", "nobody"), per_mailbox=True),
    Definition("intake.forwarderAddresses", "globs", "",
               "Further senders who may forward on someone's behalf, whatever their role: globs"
               " (`*@example.org`) separated by commas, spaces or lines, or `regex:...`.", per_mailbox=True),
    Definition("intake.relaySenders", "globs", "",
               "Relay senders (a contact form's `no-reply@` address): mail from one of them is the Reply-To"
               " address's, never the relay's; it is never answered automatically. Globs or `regex:...`.",
               per_mailbox=True),
    Definition("intake.ownMessageIdDomains", "names", "",
               "Message-ID domains of mail the tracker itself sends (its notifications): a mail whose own"
               " Message-ID is in one of them is discarded (loop protection), as is mail this system made"
               " and mail from reply.from or intake.ownAddresses."),
    Definition("item.emailReceived.addCcAsEditor", "bool", "false", "CC addresses become editors of a new item."),
    Definition("item.emailReceived.addCcAsReader", "bool", "false", "CC addresses become readers of a new item."),
    Definition("intake.listMail", "choice", "accept",
               "Mailing-list posts (List-Id, Precedence: list, Google Groups): `accept` files them as items and"
               " never answers them automatically, `discard` discards them (listed in the ledger with the"
               " signals; `mailintake messages accept KEY` files one after all).",
               choices=("accept", "discard"), per_mailbox=True),
    Definition("intake.bulkMail", "choice", "accept",
               "Bulk mail (Precedence: bulk or junk, newsletters with List-Unsubscribe): `accept` files it,"
               " never answered automatically; `discard` discards it.",
               choices=("accept", "discard"), per_mailbox=True),
    # The filter lists are empty by default: every default pattern matched subjects people write ("Out of
    # office message shows the wrong dates", "Undeliverable parcels in warehouse B"); machine-made mail
    # is recognised by its evidence instead (mailintake.automail).
    Definition("filter.rejectSubject", "lines", "",
               "Discard mail whose subject matches one of these expressions."),
    Definition("filter.rejectSender", "lines", "", "Discard mail whose sender address matches."),
    Definition("filter.rejectSenderName", "lines", "", "Discard mail whose sender display name matches."),
    Definition("filter.rejectBody", "lines", "", "Discard mail whose body text matches."),
    Definition("filter.cutBody", "lines", "",
               "Cut the matching parts out of the body (disclaimers, signature blocks); use `(?s)` to span lines."),
    Definition("filter.dropAttachments", "lines", "",
               "Drop attachments whose file name matches (logos, vCards)."),
    Definition("scripts.guard", "script", "", "Guard script, `module:function`; empty: none.", per_mailbox=True),
    Definition("scripts.activity", "script", "", "Activity script, `module:function`; empty: none.",
               per_mailbox=True),
    Definition("scripts.timeoutSeconds", "int", "5", "Time budget of each script call, in seconds.",
               per_mailbox=True),
    Definition("reply.enabled", "bool", "true", "Tell senders of rejected mail why, by reply."),
    Definition("reply.from", "address", "",
               "Sender address of replies and alerts (for SES a verified identity). Empty: nothing is sent."),
    Definition("reply.transport", "choice", "ses", "How replies are sent: Amazon SES, SMTP, or Microsoft Graph"
               " (`sendMail` as the user of reply.graphMailbox).", choices=("ses", "smtp", "graph")),
    Definition("reply.maxPerSenderPerHour", "int", "3", "At most this many replies to one address per hour."),
    Definition("reply.maxPerHour", "int", "100",
               "At most this many replies and acknowledgements per clock hour in all, whoever they go to."),
    Definition("reply.acknowledgeItems", "bool", "false",
               "Acknowledge a new item to its author, with the item's marker in the subject."),
    Definition("reply.smtpHost", "text", "", "SMTP server for reply.transport=smtp."),
    Definition("reply.smtpPort", "int", "587", "SMTP port."),
    Definition("reply.smtpSecurity", "choice", "starttls", "SMTP connection security.",
               choices=("starttls", "ssl", "none")),
    Definition("reply.smtpSecret", "text", "",
               "Secrets Manager secret (name under mailintake/smtp/) holding {\"username\": .., \"password\": ..}"
               " for SMTP; empty: no login."),
    Definition("reply.smtpMailbox", "text", "",
               "A mailbox that signs in with OAuth (`mailbox add --auth microsoft|google`) whose sign-in sends"
               " replies: SMTP AUTH XOAUTH2 as its user (Exchange Online and Gmail refuse passwords); instead of"
               " reply.smtpSecret."),
    Definition("reply.graphMailbox", "text", "",
               "For reply.transport=graph: the Graph mailbox (its name) whose user replies are sent as"
               " (`sendMail`), with its endpoint and sign-in; reply.from should be its address."),
    Definition("admin.address", "address", "",
               "Where configuration problems of mailboxes are reported (once per problem, and when it clears)."),
)
BY_KEY = {d.key: d for d in DEFINITIONS}
# Free parameters for scripts (`script.<anything>`), handed to them as `message.params`.
SCRIPT_PARAM_PREFIX = "script."


@dataclass(frozen=True)
class FilterLine:
    list_name: str
    line: int  # 1-based line in the setting's value
    pattern: re.Pattern[str]

    def describe(self) -> str:
        return f"{self.list_name} line {self.line} ({self.pattern.pattern})"


def parse_lines(list_name: str, value: str, strict: bool = True) -> list[FilterLine]:
    """Case-insensitive expressions, one per line; blank lines and `#` comments skipped. Not strict, a
    line that does not compile is skipped (the CLI refuses to store one in the first place)."""
    result = []
    for number, raw in enumerate(value.splitlines(), start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        try:
            result.append(FilterLine(list_name, number, re.compile(text, re.IGNORECASE | re.MULTILINE)))
        except re.error as exc:
            if strict:
                raise SettingError(f"{list_name} line {number}: invalid expression {text!r}: {exc}") from exc
    return result


@dataclass(frozen=True)
class PermittedAddresses:
    """The permitted-address pattern: a regular expression (``regex:...``) or a list of globs."""

    source: str
    regex: re.Pattern[str] | None = None
    globs: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str) -> PermittedAddresses | None:
        text = value.strip()
        if not text:
            return None
        if text.lower().startswith("regex:"):
            expression = text[len("regex:"):].strip()
            try:
                return cls(text, regex=re.compile(expression, re.IGNORECASE))
            except re.error as exc:
                raise SettingError(f"intake.permittedAddresses: invalid expression {expression!r}: {exc}") from exc
        globs = tuple(g.lower() for g in re.split(r"[\s,;]+", text) if g and not g.startswith("#"))
        return cls(text, globs=globs)

    def permits(self, address: str) -> bool:
        address = address.strip().lower()
        if self.regex is not None:
            return self.regex.fullmatch(address) is not None
        return any(fnmatch.fnmatchcase(address, g) for g in self.globs)


def _bool(key: str, value: str, definition: Definition) -> str:
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise SettingError(f"{key} is true or false")
    return lowered


def _int(key: str, value: str, definition: Definition) -> str:
    try:
        if int(value) < 0:
            raise ValueError
    except ValueError as exc:
        raise SettingError(f"{key} is a whole number, 0 or more") from exc
    return str(int(value))


def _choice(key: str, value: str, definition: Definition) -> str:
    if value not in definition.choices:
        raise SettingError(f"{key} is one of {', '.join(definition.choices)}")
    return value


def _lines(key: str, value: str, definition: Definition) -> str:
    parse_lines(key, value)
    return value


def _names(key: str, value: str, definition: Definition) -> str:
    for name in split_names(value):
        if any(c in name for c in '();"=') or name.startswith("."):
            raise SettingError(f"{key}: {name!r} is not a server name (e.g. mx.example.net)")
    return value


def _globs(key: str, value: str, definition: Definition) -> str:
    try:
        PermittedAddresses.parse(value)
    except SettingError as exc:
        raise SettingError(str(exc).replace("intake.permittedAddresses", key)) from exc
    return value


def _script(key: str, value: str, definition: Definition) -> str:
    if value and not re.fullmatch(r"[\w.]+:\w+", value):
        raise SettingError(f"{key} is module:function, e.g. mailintake_scripts.size_guard:guard")
    return value


def _address(key: str, value: str, definition: Definition) -> str:
    if value and "@" not in value:
        raise SettingError(f"{key} is an email address")
    return value


# The check of each kind of setting: the value to store, or SettingError.
_VALIDATORS: dict[str, Callable[[str, str, Definition], str]] = {
    "bool": _bool, "int": _int, "choice": _choice, "lines": _lines, "names": _names, "script": _script,
    "address": _address, "globs": _globs,
}


def validate(key: str, value: str, mailbox: str | None = None) -> str:
    """The value to store for ``key``, or SettingError."""
    if key.startswith(SCRIPT_PARAM_PREFIX):
        return value
    definition = BY_KEY.get(key)
    if definition is None:
        raise SettingError(f"unknown setting {key!r} (see `mailintake settings get`)")
    if mailbox is not None and not definition.per_mailbox:
        raise SettingError(f"{key} is a system setting; it cannot be set per mailbox")
    check = _VALIDATORS.get(definition.kind)
    if check is not None:
        value = check(key, value, definition)
    if key == "intake.permittedAddresses":
        PermittedAddresses.parse(value)
    return value


def split_names(value: str) -> list[str]:
    """A list of names separated by commas, semicolons, spaces or lines; `#` starts a comment."""
    return [n for n in re.split(r"[\s,;]+", re.sub(r"#[^\n]*", "", value)) if n]


def scope_of(mailbox: str | None) -> str:
    return SYSTEM if mailbox is None else f"mailbox:{mailbox}"


def read_scope(scope: str) -> dict[str, str]:
    try:
        record = SettingsRecord.get(*SettingsRecord.key(scope), consistent_read=True)
    except DoesNotExist:
        return {}
    return {str(k): str(v) for k, v in plain_map(record.values).items()}


def write_values(changes: dict[str, str | None], mailbox: str | None = None) -> dict[str, str]:
    """Set (or, with None, remove) values in one scope after validating them; returns the scope's values."""
    scope = scope_of(mailbox)
    values = read_scope(scope)
    for key, value in changes.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = validate(key, value, mailbox)
    record_key = SettingsRecord.key(scope)
    SettingsRecord(*record_key, kind="settings", sort=scope, scope=scope, values=values, updated=utcnow()).save()
    invalidate()
    return values


@dataclass
class Config:
    """A snapshot of the system settings, mailbox overrides, workspaces and mailboxes."""

    system: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)  # mailbox name -> values
    workspaces: dict[str, WorkspaceRecord] = field(default_factory=dict)
    mailboxes: dict[str, MailboxRecord] = field(default_factory=dict)
    _lines: dict[str, list[FilterLine]] = field(default_factory=dict)

    def get(self, key: str, mailbox: str | None = None) -> str:
        if mailbox is not None and key in self.overrides.get(mailbox, {}):
            return self.overrides[mailbox][key]
        if key in self.system:
            return self.system[key]
        definition = BY_KEY.get(key)
        return definition.default if definition else ""

    def flag(self, key: str, mailbox: str | None = None) -> bool:
        return self.get(key, mailbox).strip().lower() == "true"

    def number(self, key: str, mailbox: str | None = None) -> int:
        try:
            return int(self.get(key, mailbox))
        except ValueError:
            return int(BY_KEY[key].default)

    def names(self, key: str, mailbox: str | None = None) -> list[str]:
        return split_names(self.get(key, mailbox))

    def lines(self, key: str) -> list[FilterLine]:
        """A filter list, compiled once per snapshot."""
        if key not in self._lines:
            self._lines[key] = parse_lines(key, self.get(key), strict=False)
        return self._lines[key]

    def permitted(self) -> PermittedAddresses | None:
        return PermittedAddresses.parse(self.get("intake.permittedAddresses"))

    def globs(self, key: str, mailbox: str | None = None) -> PermittedAddresses | None:
        """An address pattern setting (``intake.relaySenders``, ``intake.forwarderAddresses``); None: empty.
        A malformed stored value (the CLI refuses one) matches nobody."""
        try:
            return PermittedAddresses.parse(self.get(key, mailbox))
        except SettingError:
            return None

    def sending_addresses(self) -> set[str]:
        """The addresses this system sends from: reply.from and intake.ownAddresses (mail from them is its
        own, come back)."""
        own = {a.strip().lower() for a in self.get("intake.ownAddresses").splitlines()
               if a.strip() and not a.strip().startswith("#")}
        if self.get("reply.from"):
            own.add(self.get("reply.from").strip().lower())
        return own

    def default_workspace(self) -> str:
        return self.get("intake.defaultWorkspace") or "default"

    def workspace_exists(self, name: str) -> bool:
        return name in self.workspaces or name == self.default_workspace()

    def script_params(self) -> dict[str, str]:
        return {k: v for k, v in self.system.items() if k.startswith(SCRIPT_PARAM_PREFIX)}

    def own_addresses(self) -> set[str]:
        own = self.sending_addresses()
        own |= {m.username.lower() for m in self.mailboxes.values() if "@" in m.username}
        for mailbox in self.mailboxes.values():
            own |= {str(a).lower() for a in (mailbox.addresses or ())}
        return own


def load(settings: Settings) -> Config:
    """Read everything a snapshot holds: three queries on the by-kind index."""
    del settings  # the models are bound to the table already
    config = Config()
    for record in SettingsRecord.by_kind.query("settings"):
        if not isinstance(record, SettingsRecord):  # the index is typed by the base Record (as in store)
            continue
        values = {str(k): str(v) for k, v in plain_map(record.values).items()}
        if record.scope == SYSTEM:
            config.system = values
        elif record.scope.startswith("mailbox:"):
            config.overrides[record.scope.split(":", 1)[1]] = values
    workspaces = WorkspaceRecord.by_kind.query("workspace")
    config.workspaces = {w.name: w for w in workspaces if isinstance(w, WorkspaceRecord)}
    config.mailboxes = {m.name: m for m in list_mailboxes()}
    return config


class ConfigCache:
    """The snapshot a container works from, read again when older than ``settings.config_cache_seconds``.

    A :class:`mailintake.runtime.Runtime` owns one, for the container's life.
    """

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot: tuple[float, Config] | None = None

    def current(self) -> Config:
        with self._lock:
            now = self._clock()
            if self._snapshot is None or now - self._snapshot[0] >= self.settings.config_cache_seconds:
                self._snapshot = (now, load(self.settings))
            return self._snapshot[1]

    def clear(self) -> None:
        """Forget the snapshot: the next :meth:`current` reads the table."""
        with self._lock:
            self._snapshot = None

    def mailbox_record(self, name: str) -> MailboxRecord | None:
        """A mailbox from the snapshot; one added since the snapshot was taken is read directly."""
        config = self.current()
        if name in config.mailboxes:
            return config.mailboxes[name]
        from mailintake.mailboxes import get_mailbox

        record = get_mailbox(name)
        if record is not None:
            config.mailboxes[name] = record
        return record


def local_runner() -> Any:
    """The local runner (``mailintake.localrun``, a dev module) when this process has loaded it, else None.

    Its handler containers share this process, so a change made here (an admin write, a test's or a
    bench's reset) must reach their caches, as it would not reach a Lambda container's. Looked up, never
    imported: the runtime code does not depend on the dev tools.
    """
    return sys.modules.get("mailintake.localrun")


def invalidate() -> None:
    """Dev and bench entry point: forget the snapshots of the handler containers the local runner holds in
    this process (after a change made in this process, and between tests). A no-op where no local runner
    is loaded (in Lambda, a container's snapshot expires on its own)."""
    runner = local_runner()
    if runner is not None:
        runner.invalidate_config()


def describe(values: Iterable[str] | None = None) -> list[Definition]:
    keys = set(values) if values is not None else None
    return [d for d in DEFINITIONS if keys is None or d.key in keys]
