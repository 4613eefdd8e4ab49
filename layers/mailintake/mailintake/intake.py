"""The intake rules: what a parsed message becomes (item, comment, rejected, discarded, failed) and why.

The checks run in a fixed order and the first that decides names itself in ``Decision.step``:

``authentication`` -> ``known-senders`` -> ``permitted`` -> ``subject`` -> ``automail`` -> ``filter``
(reject lists; then the body is cut and attachments dropped) -> ``guard`` -> author -> ``thread`` (only
into an item the author may see) / ``new`` -> ``activity`` -> CC -> ``permission``.

Rejections in known-senders, permitted, subject, guard and permission deserve a reply to the sender;
discards (automail, filter lists, duplicates) never get one, and neither does machine-made mail that is
filed (list, bulk, auto-generated: see ``mailintake.automail``). With sender authentication on, nor does
mail whose From the receiving server did not authenticate (``mailintake.authentication``): its From may be
forged, and a reply would go to the address's real owner. Nor does mail whose From is not exactly one valid
mailbox (``mailintake.addresses``): it is from an unknown sender without an address, its author is
``guest``, and no user is made from it. What a reply says is fixed per step (``mailintake.outgoing``);
``Decision.reason`` is for the ledger only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from mailintake import authentication, automail, directory, scripts
from mailintake.addresses import is_address
from mailintake.markers import find_markers
from mailintake.parsing import Attachment, ParsedMessage
from mailintake.settings import Settings
from mailintake.store import ItemRecord, MailboxRecord, UserRecord, get_item, get_message_id
from mailintake.system_settings import Config

# Reply/forward prefixes in the languages mail clients use; a subject that is only these is empty.
_PREFIXES = re.compile(r"^\s*((re|aw|sv|vs|antw|wg|fw|fwd|tr|rif|r|odp|ynt)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)

REPLY_STEPS = frozenset({"known-senders", "permitted", "subject", "guard", "permission"})
NOT_AUTHENTICATED = "the sender's address is not authenticated; a reply would go to its real owner"
# The per-mailbox choice to discard list or bulk mail instead of filing it.
LIST_SETTINGS = {"list": "intake.listMail", "bulk": "intake.bulkMail"}


@dataclass(frozen=True)
class Decision:
    action: str  # item | comment | rejected | discarded | failed
    reason: str = ""
    step: str = ""
    workspace: str = "default"
    item_number: int | None = None
    author: str = ""
    author_name: str = ""
    reporter: str = ""  # the From address, when the author is someone else (the guest for an unknown sender)
    new_users: tuple[tuple[str, str], ...] = ()  # (address, display name) to create
    readers: frozenset[str] = frozenset()
    editors: frozenset[str] = frozenset()
    item_type: str | None = None
    priority: str | None = None
    fields: tuple[tuple[str, str], ...] = ()
    text: str | None = None  # the body after filter.cutBody, when it cut something
    reply_text: str | None = None
    attachments: tuple[Attachment, ...] | None = None  # kept after filter.dropAttachments, when it dropped
    notes: tuple[str, ...] = ()  # filter-list matches that changed the message, the authentication verdict
    reply_withheld: str = ""  # why the sender gets no reply or acknowledgement whatever the step
    # What of ``reason`` the sender may be told: only a guard script's own words. ``reason`` is for the
    # ledger (the admin) and may name settings and items; the reply's words are fixed per step.
    told: str = ""

    @property
    def wants_reply(self) -> bool:
        return self.action == "rejected" and self.step in REPLY_STEPS and not self.reply_withheld


@dataclass
class Context:
    """Where a message came from and the configuration snapshot it is judged by."""

    mailbox: MailboxRecord | None
    mailbox_name: str
    config: Config
    size: int = 0
    # The earlier outcome of a mail an admin accepted (`messages accept`): its discard no longer applies.
    admitted_over: str | None = None

    @property
    def scope(self) -> str | None:
        """The mailbox whose overrides apply: workspace mailboxes only."""
        if self.mailbox is None or self.mailbox.system:
            return None
        return self.mailbox_name

    @property
    def workspace(self) -> str:
        if self.mailbox is None or self.mailbox.system:
            return self.config.default_workspace()
        return str(self.mailbox.workspace)


@dataclass
class _State:
    notes: list[str] = field(default_factory=list)
    text: str | None = None
    reply_text: str | None = None
    attachments: list[Attachment] | None = None


def subject_is_empty(subject: str) -> bool:
    return not _PREFIXES.sub("", subject).strip()


# Each candidate costs a read; a subject full of markers or a References header of hundreds of ids must
# not cost hundreds. The newest references come first, and a thread's mails all name the same item.
MAX_MARKERS = 3
MAX_REFERENCES = 10


def thread_candidates(parsed: ParsedMessage, marker_formats: Sequence[str]) -> Iterator[ItemRecord]:
    """The existing items a message may belong to, best first, read as they are asked for: the items its
    subject's markers name, then those its In-Reply-To/References name."""
    head, *accepted = marker_formats
    numbers = find_markers(parsed.subject, head, accepted)[:MAX_MARKERS]
    # Newest reference first: In-Reply-To, then References from the end.
    references = list(dict.fromkeys([*parsed.in_reply_to, *reversed(parsed.references)]))[:MAX_REFERENCES]
    seen: set[int] = set()
    for number in numbers:
        item = get_item(number)
        if item is not None:
            seen.add(number)
            yield item
    for message_id in references:
        known = get_message_id(message_id)
        if known is not None and known.item_number is not None and int(known.item_number) not in seen:
            seen.add(int(known.item_number))
            item = get_item(int(known.item_number))
            if item is not None:
                yield item


def _automail_discard(verdict: automail.AutomailVerdict, config: Config, scope: str | None) -> str | None:
    """The discard reason for machine-made mail, or None when it is to be filed (never answered)."""
    if verdict.discard:
        return f"{verdict.kind}: {verdict.reason}"
    setting = LIST_SETTINGS.get(verdict.kind)
    if setting is not None and config.get(setting, scope) == "discard":
        return f"{verdict.description}: {verdict.reason} ({setting}=discard)"
    return None



def _filters(parsed: ParsedMessage, config: Config, state: _State, reject: bool = True) -> str | None:
    """Apply the filter lists; the discard reason when a reject list matched (with ``reject``)."""
    checks = (("filter.rejectSubject", parsed.subject), ("filter.rejectSender", parsed.sender.email),
              ("filter.rejectSenderName", parsed.sender.name), ("filter.rejectBody", parsed.text))
    for key, value in checks if reject else ():
        for line in config.lines(key):
            if value and line.pattern.search(value):
                return f"{line.describe()} matched"
    cut_lines = config.lines("filter.cutBody")
    if cut_lines:
        text, reply_text = parsed.text, parsed.reply_text
        for line in cut_lines:
            text, count = line.pattern.subn("", text)
            reply_text = line.pattern.sub("", reply_text)
            if count:
                state.notes.append(f"cut {count} part(s) by {line.describe()}")
        if text != parsed.text:
            state.text, state.reply_text = text, reply_text
    drop_lines = config.lines("filter.dropAttachments")
    if drop_lines and parsed.attachments:
        kept: list[Attachment] = []
        for attachment in parsed.attachments:
            dropping = next((x for x in drop_lines if x.pattern.search(attachment.filename or "")), None)
            if dropping is None:
                kept.append(attachment)
            else:
                state.notes.append(f"dropped attachment {attachment.filename!r} by {dropping.describe()}")
        if len(kept) != len(parsed.attachments):
            state.attachments = kept
    return None


def message_view(parsed: ParsedMessage, ctx: Context) -> scripts.MessageView:
    return scripts.MessageView(
        mailbox=ctx.mailbox_name, system_mailbox=bool(ctx.mailbox is not None and ctx.mailbox.system),
        workspace=ctx.workspace, sender=parsed.sender.email, sender_name=parsed.sender.name,
        to=tuple(a.email for a in parsed.to), cc=tuple(a.email for a in parsed.cc), subject=parsed.subject,
        text=parsed.text, html=parsed.html, headers=dict(parsed.headers),
        attachments=tuple(scripts.AttachmentInfo(a.filename, a.content_type, a.size) for a in parsed.attachments),
        size=ctx.size, params=ctx.config.script_params(),
    )


def decide(parsed: ParsedMessage, settings: Settings, ctx: Context) -> Decision:
    config = ctx.config
    workspace = ctx.workspace
    sender = directory.normalise(parsed.sender.email)
    guest_mode = config.get("intake.unknownSenders") == "guest"
    cc_roles = config.flag("item.emailReceived.addCcAsEditor") or config.flag("item.emailReceived.addCcAsReader")
    wanted = [sender, *(a.email for a in parsed.cc if cc_roles)]
    # Pure and cheap (headers only), so judged before the lookup: a failure may need the guest user too.
    trusted = config.names("intake.authservIds", ctx.scope)
    proof = authentication.verify(parsed.authentication_results, sender, trusted) if trusted else None
    treat_unknown = config.get("intake.unauthenticatedSender", ctx.scope) != "reject"
    if guest_mode or not sender or (proof is not None and not proof.passed and treat_unknown):
        wanted.append(directory.GUEST)
    # One BatchGetItem for every person the decision may need and this container has not read lately.
    users = dict(directory.lookup(wanted, settings.config_cache_seconds))
    state = _State()
    withheld = ""
    if not sender:
        # From was missing, or not exactly one mailbox (mailintake.addresses): an unknown sender with no
        # address, which nobody may be answered for (a Reply-To would only be the writer's choice).
        withheld = "the From header names no single valid address"
        state.notes.append("sender: From names no single valid address; an unknown sender")

    def rejected(reason: str, step: str, told: str = "") -> Decision:
        return Decision("rejected", reason, step, workspace, notes=tuple(state.notes), reply_withheld=withheld,
                        told=told)

    # With authentication on, only a From the receiving server vouched for is ever answered, whoever it
    # belongs to: any other may be a third party's address written in by someone else, and a reply or an
    # acknowledgement would reflect the mail to them.
    if proof is not None and not proof.passed:
        withheld = NOT_AUTHENTICATED
    # 2a. Authentication: only a user's address needs proof, it is what the address would be trusted with.
    unauthenticated, problem = False, ""
    if proof is not None and sender in users:
        if proof.passed:
            state.notes.append(f"authentication: {sender} authenticated ({proof.detail})")
        else:
            unauthenticated = True
            problem = f"sender {sender} is a user's address but not authenticated ({proof.detail})"
            if not treat_unknown:
                return rejected(problem, "authentication")
            state.notes.append(f"authentication: {problem}; treated as an unknown sender")
            del users[sender]  # from here on the address is nobody's: not known, not the author
    # 2b. Known senders only.
    if config.flag("intake.knownSendersOnly", ctx.scope) and sender not in users:
        if unauthenticated:
            return rejected(problem, "known-senders")
        return rejected(f"sender {sender or '(none)'} is not a known user", "known-senders")
    # 3. Permitted-address pattern, on every mailbox.
    permitted = config.permitted()
    if permitted is not None and not permitted.permits(sender):
        return rejected(f"sender not permitted (pattern {permitted.source})", "permitted")
    if permitted is not None and proof is not None and not proof.passed:
        # The pattern vouches for addresses, not for whoever writes one into From: an address the
        # receiving server did not authenticate is no better than one outside the pattern.
        return rejected(f"sender {sender} matches the permitted pattern {permitted.source} but is not"
                        f" authenticated ({proof.detail})", "permitted")
    # 4. Empty subject.
    if subject_is_empty(parsed.subject):
        return rejected("empty subject", "subject")
    # 5. Machine-made mail: bounces, reports and auto-replies are discarded, with the signals that decided;
    # list, bulk and generated mail is filed but never answered automatically, unless the mailbox's admin
    # chose to discard list or bulk mail. An admin's `messages accept` overrides both discards.
    verdict = automail.classify(parsed)
    if verdict is not None:
        discard = _automail_discard(verdict, config, ctx.scope)
        if discard is not None and ctx.admitted_over is None:
            return Decision("discarded", discard, "automail", workspace,
                            notes=tuple(f"signal: {signal}" for signal in verdict.signals))
        withheld = withheld or f"{verdict.description}: never answered automatically"
        state.notes.append(f"no automatic answer: {verdict.description} ({'; '.join(verdict.signals)})")
    if ctx.admitted_over is not None:
        state.notes.append(f"accepted by an admin; it was {ctx.admitted_over}")
        withheld = withheld or "accepted by an admin after it was discarded"
    # Filter lists.
    matched = _filters(parsed, config, state, reject=ctx.admitted_over is None)
    if matched is not None:
        return Decision("discarded", f"filter {matched}", "filter", workspace)

    # 6. Guard script.
    timeout = float(config.number("scripts.timeoutSeconds", ctx.scope))
    view: scripts.MessageView | None = None
    guard = config.get("scripts.guard", ctx.scope)
    if guard:
        view = message_view(parsed, ctx)
        try:
            reason = scripts.guard_verdict(scripts.call(guard, timeout, view))
        except scripts.ScriptFailure as exc:
            return Decision("failed", str(exc), "guard", workspace)
        if reason is not None:
            return rejected(f"guard script: {reason}", "guard", told=reason)

    # 8. Author (before threading: who writes decides whether a marker or a reference may be followed).
    new_users: list[tuple[str, str]] = []
    author_user: UserRecord | None = users.get(sender)
    author, author_name = sender, parsed.sender.name
    if author_user is not None:
        author_name = author_user.name or author_name
    elif guest_mode or unauthenticated or not sender:
        # An unauthenticated user's address must not become a second user, nor be named as the author; a
        # mail without a valid From is nobody's either.
        author_user, author, author_name = users.get(directory.GUEST), directory.GUEST, "Guest"
    elif sender:
        new_users.append((sender, parsed.sender.name))
    # An unknown sender filed as the guest is still the one who wrote: recorded as the item's reporter, so
    # that their own replies thread into it (as much as any From address is believed; never for one that
    # authentication refused).
    reporter = sender if author == directory.GUEST and sender and not unauthenticated else ""

    # Threading: a marker or a reference names an item, but only one the author may see is followed. Any
    # other is passed over as if it did not exist, and the mail is judged as new mail (the permission
    # step for new items below): so a stranger cannot write into someone else's item by its number,
    # another tracker's marker cannot file a customer's mail into ours, and whether the item exists
    # makes no difference the sender could observe. The ledger's notes tell the admin.
    target: ItemRecord | None = None
    for candidate in thread_candidates(parsed, settings.marker_formats):
        if directory.may_see(author_user, reporter or author, candidate, config):
            target = candidate
            break
        state.notes.append(f"not threaded into item {int(candidate.number)}: {author} may not see it")
    plan = scripts.Plan(workspace=workspace)
    if target is not None:
        plan.action, plan.item_number = "comment", int(target.number)

    # 7. Activity script.
    activity = config.get("scripts.activity", ctx.scope)
    if activity:
        view = view or message_view(parsed, ctx)
        try:
            scripts.call(activity, timeout, view, plan)
        except scripts.ScriptFailure as exc:
            return Decision("failed", str(exc), "activity", workspace)
        if plan.action == "comment" and plan.item_number is not None and (
                target is None or int(target.number) != plan.item_number):
            target = get_item(int(plan.item_number))
            if target is None:
                return Decision("failed", f"activity script: no item {plan.item_number} to comment on",
                                "activity", workspace)
        if plan.action != "comment":
            target = None
        if target is None and not config.workspace_exists(plan.workspace):
            return Decision("failed", f"activity script: no workspace {plan.workspace!r}", "activity", workspace)
    workspace = plan.workspace if target is None else str(target.workspace)

    # 10. Permission (before CC: a refused mail creates nobody). A target chosen by the activity script
    # has not been checked yet; the words the sender reads are the same either way (mailintake.outgoing).
    if target is not None:
        if not directory.may_see(author_user, reporter or author, target, config):
            return rejected(f"{author} may not see item {int(target.number)}", "permission")
    elif not directory.may_create(author_user, workspace, config):
        return rejected(f"{author} may not create items in workspace {workspace}", "permission")

    # 9. CC as editors/readers of a new item.
    readers, editors = set(plan.readers), set(plan.editors)
    if target is None and cc_roles:
        own = config.own_addresses()
        for cc in parsed.cc:
            address = directory.normalise(cc.email)
            if not is_address(address) or address == sender or address in own:
                continue
            if address not in users:
                if guest_mode:
                    continue
                new_users.append((address, cc.name))
            if config.flag("item.emailReceived.addCcAsEditor"):
                editors.add(address)
            if config.flag("item.emailReceived.addCcAsReader"):
                readers.add(address)

    return Decision(
        "comment" if target is not None else "item",
        step="thread" if target is not None else "new",
        workspace=workspace,
        item_number=int(target.number) if target is not None else None,
        author=author, author_name=author_name, reporter=reporter, new_users=tuple(dict.fromkeys(new_users)),
        readers=frozenset(readers), editors=frozenset(editors), item_type=plan.item_type,
        priority=plan.priority, fields=tuple(sorted((str(k), str(v)) for k, v in plan.fields.items())),
        text=state.text, reply_text=state.reply_text,
        attachments=tuple(state.attachments) if state.attachments is not None else None,
        notes=tuple(state.notes), reply_withheld=withheld,
    )
