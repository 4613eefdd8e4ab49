"""Users, workspaces and roles: who may create items where, and who may see (and so comment on) them.

A user's role in a workspace is, first match wins: the user's own role for that workspace, the user's
role for ``*`` (every workspace), the workspace's default role, the system's ``intake.defaultRole``.

Roles: ``none``; ``reader`` sees every item of the workspace; ``reporter`` creates items and sees those
it is party to (author, reader or editor); ``editor`` and ``manager`` create items and see every item. A
reporter does not see the rest because ``reporter`` is what every stranger is by default: seeing (and so
commenting on) every item of the default workspace must not come with writing to its address once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from pynamodb.exceptions import DoesNotExist, PutError

from mailintake.addresses import is_address
from mailintake.store import ItemRecord, UserRecord, WorkspaceRecord, plain_map
from mailintake.system_settings import ROLES, Config, SettingError

GUEST = "guest"
SEES_ALL = frozenset({"reader", "editor", "manager"})  # every item of the workspace, not only their own
CAN_CREATE = frozenset({"reporter", "editor", "manager"})


def normalise(address: str) -> str:
    return address.strip().lower()


# address -> (monotonic time read, the user or None). Senders write again and again, so like the
# settings the directory is read at most once per ``max_age`` per container; changes made here update it.
_cache: dict[str, tuple[float, UserRecord | None]] = {}
_cache_lock = threading.Lock()
_CACHE_LIMIT = 10_000


def forget() -> None:
    """Drop every cached user (after the table was changed behind this process's back)."""
    with _cache_lock:
        _cache.clear()


def _remember(address: str, user: UserRecord | None) -> None:
    with _cache_lock:
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        _cache[address] = (time.monotonic(), user)


def lookup(addresses: Iterable[str], max_age: float = 0.0) -> dict[str, UserRecord]:
    """The users among ``addresses``: from the cache when read within ``max_age`` seconds, the rest in
    one BatchGetItem (up to 100 addresses)."""
    keys = sorted({normalise(a) for a in addresses if a and a.strip()})
    found: dict[str, UserRecord] = {}
    missing = []
    now = time.monotonic()
    with _cache_lock:
        for key in keys:
            hit = _cache.get(key)
            if hit is not None and now - hit[0] < max_age:
                if hit[1] is not None:
                    found[key] = hit[1]
            else:
                missing.append(key)
    if missing:
        fetched = {u.email: u for u in UserRecord.batch_get([UserRecord.key(k) for k in missing])}
        for key in missing:
            _remember(key, fetched.get(key))
        found.update(fetched)
    return found


def role_in(user: UserRecord | None, workspace: str, config: Config) -> str:
    roles = plain_map(user.roles) if user is not None else {}
    if workspace in roles:
        return str(roles[workspace])
    if "*" in roles:
        return str(roles["*"])
    record = config.workspaces.get(workspace)
    if record is not None and record.default_role:
        return str(record.default_role)
    return config.get("intake.defaultRole")


def may_create(user: UserRecord | None, workspace: str, config: Config) -> bool:
    return role_in(user, workspace, config) in CAN_CREATE


def party_to(address: str, item: ItemRecord) -> bool:
    """Whether ``address`` is the item's author or reporter, or one of its readers or editors.

    Never for the guest: every sender filed as the guest is one, so being the guest proves nothing.
    """
    address = normalise(address)
    if not address or address == GUEST:
        return False
    people = {normalise(item.author), normalise(getattr(item, "reporter", None) or "")}
    for attribute in ("readers", "editors"):
        people |= {normalise(a) for a in (getattr(item, attribute, None) or ())}
    return address in people


def may_see(user: UserRecord | None, address: str, item: ItemRecord, config: Config) -> bool:
    """May see (and so comment on) ``item``: a party to it, or a role that sees every item of its workspace."""
    return party_to(address, item) or role_in(user, item.workspace, config) in SEES_ALL


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
    _remember(address, user)
    return user


def create_from_mail(email: str, name: str) -> UserRecord:
    """A user made from a sender or CC; never overwrites one that exists (a concurrent mail made it).

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
        forget_one(address)  # another writer made it first: read theirs next time
        return user
    _remember(address, user)
    return user


def forget_one(address: str) -> None:
    with _cache_lock:
        _cache.pop(normalise(address), None)


def remove_user(email: str) -> bool:
    forget_one(email)
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
