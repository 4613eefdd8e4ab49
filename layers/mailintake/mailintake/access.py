"""Who may create items where, and who may see (and so comment on) an item: pure rules on plain data.

A user's role in a workspace is, first match wins: the user's own role for that workspace, the user's
role for ``*`` (every workspace), the workspace's default role, the system's ``intake.defaultRole``.

Roles: ``none``; ``reader`` sees every item of the workspace; ``reporter`` creates items and sees those
it is party to (author, reader or editor); ``editor`` and ``manager`` create items and see every item. A
reporter does not see the rest because ``reporter`` is what every stranger is by default: seeing (and so
commenting on) every item of the default workspace must not come with writing to its address once.

Nothing here reads the table: :mod:`mailintake.facts` turns the records into :class:`Person`,
:class:`ItemFacts` and :class:`Roles`, and :mod:`mailintake.directory` keeps the record-taking forms.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

GUEST = "guest"
SEES_ALL = frozenset({"reader", "editor", "manager"})  # every item of the workspace, not only their own
CAN_CREATE = frozenset({"reporter", "editor", "manager"})


def normalise(address: str) -> str:
    return address.strip().lower()


@dataclass(frozen=True)
class Person:
    """A user as the rules see one: the address, the display name and the roles by workspace."""

    address: str
    name: str = ""
    roles: Mapping[str, str] = field(default_factory=dict)  # workspace (or "*") -> role


@dataclass(frozen=True)
class ItemFacts:
    """An existing item as the rules see one: where it is and who is party to it."""

    number: int
    workspace: str
    author: str = ""
    reporter: str = ""
    readers: frozenset[str] = frozenset()
    editors: frozenset[str] = frozenset()

    @classmethod
    def of(cls, number: int, workspace: str, author: str | None, reporter: str | None,
           readers: Iterable[str] | None, editors: Iterable[str] | None) -> ItemFacts:
        return cls(number, workspace, author or "", reporter or "", frozenset(readers or ()),
                   frozenset(editors or ()))


@dataclass(frozen=True)
class Roles:
    """The roles nobody named for a person: each workspace's default, then the system's."""

    default: str = "reporter"  # intake.defaultRole
    workspaces: Mapping[str, str] = field(default_factory=dict)  # workspace -> its default role, where set


def role_in(person: Person | None, workspace: str, roles: Roles) -> str:
    own = person.roles if person is not None else {}
    if workspace in own:
        return str(own[workspace])
    if "*" in own:
        return str(own["*"])
    return roles.workspaces.get(workspace) or roles.default


def may_create(person: Person | None, workspace: str, roles: Roles) -> bool:
    return role_in(person, workspace, roles) in CAN_CREATE


def party_to(address: str, item: ItemFacts) -> bool:
    """Whether ``address`` is the item's author or reporter, or one of its readers or editors.

    Never for the guest: every sender filed as the guest is one, so being the guest proves nothing.
    """
    address = normalise(address)
    if not address or address == GUEST:
        return False
    people = {normalise(item.author), normalise(item.reporter)}
    people |= {normalise(a) for a in item.readers | item.editors}
    return address in people


def may_see(person: Person | None, address: str, item: ItemFacts, roles: Roles) -> bool:
    """May see (and so comment on) ``item``: a party to it, or a role that sees every item of its workspace."""
    return party_to(address, item) or role_in(person, item.workspace, roles) in SEES_ALL
