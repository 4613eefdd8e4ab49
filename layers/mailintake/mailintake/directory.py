"""Users and workspaces in the table, and the record-taking forms of the permission rules.

The rules themselves (roles, who may create items where, who may see an item) are pure and live in
:mod:`mailintake.access`; this module reads and writes the records, caches users per container
(:class:`UserCache`), and turns records into the plain data those rules take (:func:`person_of`,
:func:`item_facts`, :func:`roles_of`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from pynamodb.exceptions import DoesNotExist, PutError

from mailintake import access
from mailintake.access import GUEST as GUEST  # re-exported: the directory's callers name the guest here
from mailintake.access import ItemFacts, Person, Roles, normalise
from mailintake.addresses import is_address
from mailintake.store import ItemRecord, UserRecord, WorkspaceRecord, plain_map
from mailintake.system_settings import ROLES, Config, SettingError, local_runner

_CACHE_LIMIT = 10_000


class UserCache:
    """Users read lately, address -> (monotonic time read, the user or None), for one owner.

    Senders write again and again, so like the settings the directory is read at most once per ``max_age``
    seconds per container: a :class:`mailintake.runtime.Runtime` owns one, for the container's life.
    Changes made through it (users created from mail) update it.
    """

    def __init__(self, max_age: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self._clock = clock
        self._entries: dict[str, tuple[float, UserRecord | None]] = {}
        self._lock = threading.Lock()

    def lookup(self, addresses: Iterable[str]) -> dict[str, UserRecord]:
        """The users among ``addresses``: from the cache when read within ``max_age`` seconds, the rest in
        one BatchGetItem (up to 100 addresses)."""
        keys = sorted({normalise(a) for a in addresses if a and a.strip()})
        found: dict[str, UserRecord] = {}
        missing = []
        now = self._clock()
        with self._lock:
            for key in keys:
                hit = self._entries.get(key)
                if hit is not None and now - hit[0] < self.max_age:
                    if hit[1] is not None:
                        found[key] = hit[1]
                else:
                    missing.append(key)
        if missing:
            fetched = _read(missing)
            for key in missing:
                self.remember(key, fetched.get(key))
            found.update(fetched)
        return found

    def remember(self, address: str, user: UserRecord | None) -> None:
        with self._lock:
            if len(self._entries) >= _CACHE_LIMIT:
                self._entries.clear()
            self._entries[normalise(address)] = (self._clock(), user)

    def forget(self, address: str | None = None) -> None:
        """Drop one cached user, or (without ``address``) every one."""
        with self._lock:
            if address is None:
                self._entries.clear()
            else:
                self._entries.pop(normalise(address), None)


def _read(keys: list[str]) -> dict[str, UserRecord]:
    return {u.email: u for u in UserRecord.batch_get([UserRecord.key(k) for k in keys])}


def lookup(addresses: Iterable[str]) -> dict[str, UserRecord]:
    """The users among ``addresses``, read now (one BatchGetItem); a container reads through its
    :class:`UserCache` instead."""
    keys = sorted({normalise(a) for a in addresses if a and a.strip()})
    return _read(keys) if keys else {}


def forget() -> None:
    """Dev and bench entry point: drop every user cached by the handler containers the local runner holds
    in this process (after the table was changed behind them). A no-op where no local runner is loaded
    (in Lambda, a container's cache expires on its own)."""
    runner = local_runner()
    if runner is not None:
        runner.forget_users()


def _changed(address: str) -> None:
    """An admin change to a user made in this process: the local runner's containers read it again."""
    runner = local_runner()
    if runner is not None:
        runner.forget_users(normalise(address))


def person_of(user: UserRecord) -> Person:
    """A user record as the rules see it."""
    return Person(str(user.email), str(user.name or ""), {str(k): str(v) for k, v in plain_map(user.roles).items()})


def item_facts(item: ItemRecord) -> ItemFacts:
    """An item record as the rules see it: its number, workspace and the people party to it."""
    return ItemFacts.of(int(item.number), str(item.workspace), item.author, getattr(item, "reporter", None),
                        getattr(item, "readers", None), getattr(item, "editors", None))


def roles_of(config: Config) -> Roles:
    """The default roles of a settings snapshot: the system's, and each workspace's where it has one."""
    return Roles(config.get("intake.defaultRole"),
                 {name: str(w.default_role) for name, w in config.workspaces.items() if w.default_role})


def role_in(user: UserRecord | None, workspace: str, config: Config) -> str:
    return access.role_in(person_of(user) if user is not None else None, workspace, roles_of(config))


def may_create(user: UserRecord | None, workspace: str, config: Config) -> bool:
    return access.may_create(person_of(user) if user is not None else None, workspace, roles_of(config))


def party_to(address: str, item: ItemRecord) -> bool:
    """Whether ``address`` is party to ``item`` (:func:`mailintake.access.party_to`)."""
    return access.party_to(address, item_facts(item))


def may_see(user: UserRecord | None, address: str, item: ItemRecord, config: Config) -> bool:
    """May see (and so comment on) ``item`` (:func:`mailintake.access.may_see`)."""
    return access.may_see(person_of(user) if user is not None else None, address, item_facts(item),
                          roles_of(config))


def check_role(role: str) -> str:
    if role not in ROLES:
        raise SettingError(f"role must be one of {', '.join(ROLES)}")
    return role


def parse_roles(specs: Iterable[str]) -> dict[str, str]:
    """``workspace=role`` pairs (``*=reader`` for every workspace)."""
    roles = {}
    for spec in specs:
        workspace, sep, role = spec.partition("=")
        if not sep or not workspace.strip():
            raise SettingError(f"role {spec!r}: write workspace=role, e.g. support=reporter or *=reader")
        roles[workspace.strip()] = check_role(role.strip())
    return roles


def put_user(email: str, name: str = "", roles: dict[str, str] | None = None,
             created_by: str = "admin") -> UserRecord:
    address = normalise(email)
    if address != GUEST and "@" not in address:
        raise SettingError(f"{email!r} is not an email address (or `guest`)")
    key = UserRecord.key(address)
    user = UserRecord(*key, kind="user", sort=address, email=address, name=name, roles=roles or {},
                      created_by=created_by)
    user.save()
    _changed(address)
    return user


def create_from_mail(email: str, name: str, users: UserCache) -> UserRecord:
    """A user made from a sender or CC; never overwrites one that exists (a concurrent mail made it).
    ``users`` is the cache of the container that made it.

    Only a plain addr-spec names a user: the intake rules pass nothing else, and this refuses it anyway, so
    that no reading of a garbage header (``"unterminated``) can ever create a user named after it.
    """
    address = normalise(email)
    if not is_address(address):
        raise SettingError(f"{email!r} is not an email address; no user is made from it")
    key = UserRecord.key(address)
    user = UserRecord(*key, kind="user", sort=address, email=address, name=name, roles={}, created_by="email")
    try:
        user.save(condition=UserRecord.pk.does_not_exist())
    except PutError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
        users.forget(address)  # another writer made it first: read theirs next time
        return user
    users.remember(address, user)
    return user


def remove_user(email: str) -> bool:
    _changed(email)
    try:
        UserRecord.get(*UserRecord.key(email)).delete()
    except DoesNotExist:
        return False
    return True


def list_users() -> list[UserRecord]:
    return [r for r in UserRecord.by_kind.query("user") if isinstance(r, UserRecord)]


def put_workspace(name: str, title: str = "", default_role: str | None = None) -> WorkspaceRecord:
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise SettingError("a workspace name is letters, digits, '-', '_' or '.'")
    if default_role is not None:
        check_role(default_role)
    key = WorkspaceRecord.key(name)
    record = WorkspaceRecord(*key, kind="workspace", sort=name, name=name, title=title, default_role=default_role)
    record.save()
    from mailintake.system_settings import invalidate

    invalidate()
    return record


def list_workspaces() -> list[WorkspaceRecord]:
    return [r for r in WorkspaceRecord.by_kind.query("workspace") if isinstance(r, WorkspaceRecord)]
