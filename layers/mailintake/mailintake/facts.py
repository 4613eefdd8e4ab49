"""What the intake rules judge a mail by, loaded for them: the one place between the rules and the table.

:func:`gather` reads the users the mail names (one BatchGetItem, or none when the container read them
lately: its :class:`mailintake.directory.UserCache`) and hands over the items its markers and references
name as plain :class:`~mailintake.access.ItemFacts`, read as the rules ask for them: the rules stop at the first
item the author may see, so plain mail costs no read and a reply with a marker one. :func:`scripts_for`
wires the mailbox's guard and activity scripts, with their time budget, as the callables the rules call.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from mailintake import directory, scripts
from mailintake.access import ItemFacts
from mailintake.intake import Context, Facts, Scripts, people_needed
from mailintake.markers import find_markers
from mailintake.message import ParsedMessage
from mailintake.settings import Settings
from mailintake.store import MailboxRecord, get_item, get_message_id, plain_map
from mailintake.system_settings import Config

# Each candidate costs a read; a subject full of markers or a References header of hundreds of ids must
# not cost hundreds. The newest references come first, and a thread's mails all name the same item.
MAX_MARKERS = 3
MAX_REFERENCES = 10


def context(mailbox: MailboxRecord | None, name: str, config: Config, size: int = 0,
            admitted_over: str | None = None) -> Context:
    """The rules' context for mail from the mailbox ``name`` (``mailbox``: its record, None if unknown)."""
    system = mailbox is not None and bool(mailbox.system)
    workspace = str(mailbox.workspace) if mailbox is not None and not mailbox.system else None
    if mailbox is None:
        return Context(name, config, size, admitted_over, mailbox_workspace=workspace, system_mailbox=system)
    return Context(name, config, size, admitted_over, mailbox_workspace=workspace, system_mailbox=system,
                   mailbox_addresses=mailbox_addresses(mailbox),
                   routes={str(k).lower(): str(v) for k, v in plain_map(mailbox.routes).items()},
                   subaddress=bool(mailbox.subaddress))


def mailbox_addresses(mailbox: MailboxRecord) -> frozenset[str]:
    """The mailbox's own addresses: those its record names, and its user name when that is an address."""
    named = {str(a).lower() for a in (mailbox.addresses or ())}
    if "@" in mailbox.username:
        named.add(mailbox.username.lower())
    return frozenset(named)


def item_by_number(number: int) -> ItemFacts | None:
    item = get_item(number)
    return directory.item_facts(item) if item is not None else None


def thread_candidates(parsed: ParsedMessage, marker_formats: Sequence[str]) -> Iterator[ItemFacts]:
    """The existing items a message may belong to, best first, read as they are asked for: the items its
    subject's markers name, then those its In-Reply-To/References name."""
    head, *accepted = marker_formats
    numbers = find_markers(parsed.subject, head, accepted)[:MAX_MARKERS]
    # Newest reference first: In-Reply-To, then References from the end.
    references = list(dict.fromkeys([*parsed.in_reply_to, *reversed(parsed.references)]))[:MAX_REFERENCES]
    seen: set[int] = set()
    for number in numbers:
        item = item_by_number(number)
        if item is not None:
            seen.add(number)
            yield item
    for message_id in references:
        known = get_message_id(message_id)
        if known is not None and known.item_number is not None and int(known.item_number) not in seen:
            seen.add(int(known.item_number))
            found = item_by_number(int(known.item_number))
            if found is not None:
                yield found


class Candidates:
    """:func:`thread_candidates` as an iterable the rules may walk more than once; each item is read once,
    and only when the walk gets that far."""

    def __init__(self, source: Iterator[ItemFacts]) -> None:
        self._source = source
        self._read: list[ItemFacts] = []

    def __iter__(self) -> Iterator[ItemFacts]:
        yield from self._read
        for item in self._source:
            self._read.append(item)
            yield item


def gather(parsed: ParsedMessage, settings: Settings, ctx: Context, users: directory.UserCache) -> Facts:
    """The facts the rules need for ``parsed``: the users it names (one BatchGetItem for every person the
    decision may need and this container has not read lately), the workspaces and their default roles
    (from the settings snapshot, in memory), and its thread candidates, read lazily."""
    found = users.lookup(people_needed(parsed, ctx))
    return Facts(users={address: directory.person_of(user) for address, user in found.items()},
                 roles=directory.roles_of(ctx.config), workspaces=frozenset(ctx.config.workspaces),
                 candidates=Candidates(thread_candidates(parsed, settings.marker_formats)),
                 item_by_number=item_by_number)


def scripts_for(ctx: Context) -> Scripts:
    """The mailbox's guard and activity scripts as the rules call them, each within its time budget."""
    config, scope = ctx.config, ctx.scope
    timeout = float(config.number("scripts.timeoutSeconds", scope))
    guard_spec, activity_spec = config.get("scripts.guard", scope), config.get("scripts.activity", scope)

    def guard(view: scripts.MessageView) -> str | None:
        return scripts.guard_verdict(scripts.call(guard_spec, timeout, view))

    def activity(view: scripts.MessageView, plan: scripts.Plan) -> None:
        scripts.call(activity_spec, timeout, view, plan)

    return Scripts(guard if guard_spec else None, activity if activity_spec else None)
