"""The intake rules: what a parsed message becomes (item, comment, rejected, discarded, failed) and why.

The checks run in a fixed order and the first that decides names itself in ``Decision.step``:

routing (the workspace, by recipient) -> ``loop`` (the system's own mail) -> ``authentication`` ->
``known-senders`` -> ``permitted`` -> ``subject`` -> ``automail`` -> ``filter`` (reject lists; then the body
is cut and attachments dropped) -> ``guard`` -> relay (a contact form's Reply-To) -> forward (the original
sender of a forwarded mail) -> author -> ``thread`` (only into an item the author may see) / ``new`` ->
``activity`` -> ``permission`` -> CC.

Rejections in known-senders, permitted, subject, guard and permission deserve a reply to the sender;
discards (automail, filter lists, duplicates) never get one, and neither does machine-made mail that is
filed (list, bulk, auto-generated: see ``mailintake.automail``). With sender authentication on, nor does
mail whose From the receiving server did not authenticate (``mailintake.authentication``): its From may be
forged, and a reply would go to the address's real owner. Nor does mail whose From is not exactly one valid
mailbox (``mailintake.addresses``): it is from an unknown sender without an address, its author is
``guest``, and no user is made from it. What a reply says is fixed per step (``mailintake.outgoing``);
``Decision.reason`` is for the ledger only.

The rules are pure: they judge a parsed mail (:class:`~mailintake.message.ParsedMessage`), its
:class:`Context` (the mailbox and the settings snapshot) and the :class:`Facts` about it (the people it
names who are users, the items its markers and references name), and call the guard and activity scripts
they are given (:class:`Scripts`). Nothing here reads or writes the table: :mod:`mailintake.facts` loads
the facts and wires the scripts, and :mod:`mailintake.processing` writes what the decision says. Each step
is one function of :data:`STEPS`; one that decides returns the :class:`Decision`, the others return None.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailintake import authentication, automail, forwards
from mailintake.access import CAN_CREATE, GUEST, SEES_ALL, ItemFacts, Person, Roles, may_create, may_see, normalise
from mailintake.addresses import is_address
from mailintake.markers import is_own_message_id
from mailintake.message import Address, Attachment, Forwarded, ParsedMessage
from mailintake.outcomes import Status
from mailintake.scripts import AttachmentInfo, MessageView, Plan, ScriptFailure

if TYPE_CHECKING:  # read in memory only: the snapshot is loaded before the rules run (system_settings)
    from mailintake.system_settings import Config

# Reply/forward prefixes in the languages mail clients use; a subject that is only these is empty.
_PREFIXES = re.compile(r"^\s*((re|aw|sv|vs|antw|wg|fw|fwd|tr|rif|r|odp|ynt)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)

REPLY_STEPS = frozenset({"known-senders", "permitted", "subject", "guard", "permission"})
NOT_AUTHENTICATED = "the sender's address is not authenticated; a reply would go to its real owner"
# The per-mailbox choice to discard list or bulk mail instead of filing it.
LIST_SETTINGS = {"list": "intake.listMail", "bulk": "intake.bulkMail"}


@dataclass(frozen=True)
class Decision:
    action: Status
    reason: str = ""
    step: str = ""
    workspace: str = "default"
    item_number: int | None = None
    author: str = ""
    author_name: str = ""
    # The From address, when the author is someone else: the guest for an unknown sender, the original
    # sender of a forwarded mail.
    reporter: str = ""
    new_users: tuple[tuple[str, str], ...] = ()  # (address, display name) to create
    readers: frozenset[str] = frozenset()
    editors: frozenset[str] = frozenset()
    item_type: str | None = None
    priority: str | None = None
    fields: tuple[tuple[str, str], ...] = ()
    text: str | None = None  # the body after filter.cutBody, or a forward's description, when it differs
    title: str | None = None  # a forward's original subject, when it has one
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

    mailbox_name: str
    config: Config
    size: int = 0
    # The earlier outcome of a mail an admin accepted (`messages accept`): its discard no longer applies.
    admitted_over: str | None = None
    # The workspace of a workspace mailbox; None for a system mailbox or one that is not known.
    mailbox_workspace: str | None = None
    system_mailbox: bool = False
    # Recipient routing of the mailbox (its record's addresses, routes and subaddress).
    mailbox_addresses: frozenset[str] = frozenset()
    routes: Mapping[str, str] = field(default_factory=dict)  # address or "+detail" -> workspace
    subaddress: bool = False

    @property
    def scope(self) -> str | None:
        """The mailbox whose overrides apply: workspace mailboxes only."""
        return self.mailbox_name if self.mailbox_workspace is not None else None

    @property
    def workspace(self) -> str:
        if self.mailbox_workspace is None:
            return self.config.default_workspace()
        return self.mailbox_workspace


def _no_item(number: int) -> ItemFacts | None:
    return None


@dataclass(frozen=True)
class Facts:
    """What the rules know of the world beyond the mail, loaded for them (:mod:`mailintake.facts`)."""

    # The users among the addresses :func:`people_needed` names, by normalised address.
    users: Mapping[str, Person] = field(default_factory=dict)
    roles: Roles = field(default_factory=Roles)
    workspaces: frozenset[str] = frozenset()  # the workspaces there are (the default one always is)
    # The existing items the subject's markers, then In-Reply-To/References name, best first. The rules
    # stop at the first the author may see, so a loader may read them as they are asked for.
    candidates: Iterable[ItemFacts] = ()
    # The item an activity script chose to comment on, when it is none of the candidates.
    item_by_number: Callable[[int], ItemFacts | None] = _no_item


@dataclass(frozen=True)
class Scripts:
    """The guard and activity scripts of the mailbox, None where none is configured. Each raises
    :class:`~mailintake.scripts.ScriptFailure` when the script fails; the guard returns the rejection
    reason, or None to accept; the activity script changes the plan in place."""

    guard: Callable[[MessageView], str | None] | None = None
    activity: Callable[[MessageView, Plan], None] | None = None


def subject_is_empty(subject: str) -> bool:
    return not _PREFIXES.sub("", subject).strip()


def message_view(parsed: ParsedMessage, ctx: Context) -> MessageView:
    return MessageView(
        mailbox=ctx.mailbox_name, system_mailbox=ctx.system_mailbox,
        workspace=ctx.workspace, sender=parsed.sender.email, sender_name=parsed.sender.name,
        to=tuple(a.email for a in parsed.to), cc=tuple(a.email for a in parsed.cc), subject=parsed.subject,
        text=parsed.text, html=parsed.html, headers=dict(parsed.headers),
        attachments=tuple(AttachmentInfo(a.filename, a.content_type, a.size) for a in parsed.attachments),
        size=ctx.size, params=ctx.config.script_params(),
    )


@dataclass(frozen=True)
class _Sender:
    address: str  # normalised; "" when From names no single valid address
    proof: authentication.Verdict | None  # None with sender authentication off
    treat_unknown: bool  # an unauthenticated user's address is judged as an unknown sender's, not refused


def _judge_sender(parsed: ParsedMessage, ctx: Context) -> _Sender:
    sender = normalise(parsed.sender.email)
    trusted = ctx.config.names("intake.authservIds", ctx.scope)
    proof = authentication.verify(parsed.authentication_results, sender, trusted) if trusted else None
    return _Sender(sender, proof, ctx.config.get("intake.unauthenticatedSender", ctx.scope) != "reject")


def _cc_roles(config: Config) -> bool:
    return config.flag("item.emailReceived.addCcAsEditor") or config.flag("item.emailReceived.addCcAsReader")


def _relay_author(parsed: ParsedMessage) -> Address | None:
    """The one valid Reply-To address of a mail (a contact form's visitor), or None."""
    valid = [a for a in parsed.reply_to if is_address(normalise(a.email))]
    return valid[0] if len(valid) == 1 else None


def people_needed(parsed: ParsedMessage, ctx: Context) -> list[str]:
    """The addresses whose user records the rules may ask for: the sender, a forward's original sender, a
    Reply-To (when the sender may be a relay), the CCs when they become editors or readers, and the guest
    when the mail may be filed as the guest's."""
    who = _judge_sender(parsed, ctx)
    claimed = [parsed.forwarded.sender.email] if parsed.forwarded is not None else []
    relay = _relay_author(parsed)
    if relay is not None and ctx.config.get("intake.relaySenders", ctx.scope):
        claimed.append(relay.email)
    wanted = [who.address, *claimed, *(a.email for a in parsed.cc if _cc_roles(ctx.config))]
    if claimed:
        wanted.append(GUEST)
    guest_mode = ctx.config.get("intake.unknownSenders") == "guest"
    if guest_mode or not who.address or (who.proof is not None and not who.proof.passed and who.treat_unknown):
        wanted.append(GUEST)
    return wanted


@dataclass
class _Run:
    """One mail on its way through the steps: what they found so far."""

    parsed: ParsedMessage
    ctx: Context
    facts: Facts
    scripts: Scripts
    who: _Sender
    users: dict[str, Person]  # facts.users less an address that failed authentication
    workspace: str
    notes: list[str] = field(default_factory=list)
    withheld: str = ""
    unauthenticated: bool = False  # a user's address the receiving server did not authenticate
    problem: str = ""
    text: str | None = None
    reply_text: str | None = None
    attachments: list[Attachment] | None = None
    view: MessageView | None = None
    author: str = ""
    author_name: str = ""
    author_person: Person | None = None
    reporter: str = ""
    # Who the mail is from when that is not its From: a relay's Reply-To, a forward's original sender.
    claimed: Address | None = None
    claimed_unverified: bool = False  # a user's address nobody vouched for (a relay's Reply-To, auth on)
    forward: Forwarded | None = None  # the forward believed (take_forward)
    forwarder: Person | None = None
    new_users: list[tuple[str, str]] = field(default_factory=list)
    target: ItemFacts | None = None
    plan: Plan = field(default_factory=lambda: Plan(workspace=""))
    cc_readers: set[str] = field(default_factory=set)
    cc_editors: set[str] = field(default_factory=set)

    @property
    def config(self) -> Config:
        return self.ctx.config

    @property
    def sender(self) -> str:
        return self.who.address

    @property
    def guest_mode(self) -> bool:
        return self.config.get("intake.unknownSenders") == "guest"

    @property
    def seen_as(self) -> str:
        """The address whose party to an item counts: the reporter's for the guest, else the author's."""
        return self.reporter or self.author

    def acting(self) -> tuple[Person | None, str]:
        """Who acts, for threading and permission: the forwarder of a believed forward (the original sender
        did not write to us), else the author (the reporter's address for the guest)."""
        if self.forward is not None:
            return self.forwarder, self.sender
        return self.author_person, self.seen_as

    def message_view(self) -> MessageView:
        if self.view is None:
            self.view = message_view(self.parsed, self.ctx)
        return self.view

    def rejected(self, reason: str, step: str, told: str = "") -> Decision:
        return Decision("rejected", reason, step, self.workspace, notes=tuple(self.notes),
                        reply_withheld=self.withheld, told=told)

    def failed(self, reason: str, step: str) -> Decision:
        return Decision("failed", reason, step, self.workspace)

    def accepted(self) -> Decision:
        target, plan = self.target, self.plan
        return Decision(
            "comment" if target is not None else "item",
            step="thread" if target is not None else "new",
            workspace=self.workspace,
            item_number=target.number if target is not None else None,
            author=self.author, author_name=self.author_name, reporter=self.reporter,
            new_users=tuple(dict.fromkeys(self.new_users)),
            readers=frozenset(set(plan.readers) | self.cc_readers),
            editors=frozenset(set(plan.editors) | self.cc_editors), item_type=plan.item_type,
            priority=plan.priority, fields=tuple(sorted((str(k), str(v)) for k, v in plan.fields.items())),
            text=self.text, reply_text=self.reply_text, title=self._title(),
            attachments=tuple(self.attachments) if self.attachments is not None else None,
            notes=tuple(self.notes), reply_withheld=self.withheld,
        )

    def _title(self) -> str | None:
        if self.forward is None or self.target is not None:
            return None
        return self.forward.subject or forwards.strip_forward_prefix(self.parsed.subject)


def _start(parsed: ParsedMessage, ctx: Context, facts: Facts, scripts: Scripts) -> _Run:
    run = _Run(parsed, ctx, facts, scripts, _judge_sender(parsed, ctx), dict(facts.users), ctx.workspace)
    if not run.sender:
        # From was missing, or not exactly one mailbox (mailintake.addresses): an unknown sender with no
        # address, which nobody may be answered for (a Reply-To would only be the writer's choice).
        run.withheld = "the From header names no single valid address"
        run.notes.append("sender: From names no single valid address; an unknown sender")
    # With authentication on, only a From the receiving server vouched for is ever answered, whoever it
    # belongs to: any other may be a third party's address written in by someone else, and a reply or an
    # acknowledgement would reflect the mail to them.
    if run.who.proof is not None and not run.who.proof.passed:
        run.withheld = NOT_AUTHENTICATED
    return run


def _route_of(address: str, ctx: Context) -> tuple[str, str] | None:
    """(workspace, why) for mail to ``address``, or None: its own route, else its sub-address's, else the
    sub-address as a workspace name (subaddress on), else the route of the address without it."""
    if address in ctx.routes:
        return ctx.routes[address], f"route {address}"
    local, _, domain = address.partition("@")
    base, plus, detail = local.partition("+")
    if not plus or not detail:
        return None
    plain = f"{base}@{domain}"
    if plain not in ctx.mailbox_addresses and plain not in ctx.routes:
        return None  # someone else's sub-address (a CC'd customer's): not ours to read
    if f"+{detail}" in ctx.routes:
        return ctx.routes[f"+{detail}"], f"route +{detail} ({address})"
    if ctx.subaddress:
        return detail, f"sub-address {address}"
    if plain in ctx.routes:
        return ctx.routes[plain], f"route {plain} ({address})"
    return None


def recipients(parsed: ParsedMessage) -> list[str]:
    """Where the mail was sent, most reliable first: the envelope (X-Original-To, Delivered-To), To, Cc."""
    found = [*parsed.delivered_to, *(a.email for a in parsed.to), *(a.email for a in parsed.cc)]
    return list(dict.fromkeys(normalise(a) for a in found if a))


def route_by_recipient(run: _Run) -> Decision | None:
    """One mailbox, several workspaces: the first recipient the mailbox routes names the workspace; else
    the mailbox's own. A route to a workspace that does not exist is passed over, and noted."""
    ctx = run.ctx
    if not ctx.routes and not ctx.subaddress:
        return None
    for address in recipients(run.parsed)[:50]:
        route = _route_of(address, ctx)
        if route is None:
            continue
        workspace, why = route
        if not ctx.config.workspace_exists(workspace) and workspace not in run.facts.workspaces:
            run.notes.append(f"routing: {why} names workspace {workspace!r}, which does not exist")
            continue
        run.workspace = workspace
        run.notes.append(f"routing: workspace {workspace} by {why}")
        return None
    return None


def check_own_mail(run: _Run) -> Decision | None:
    """Loop protection: the system's own mail come back (an acknowledgement an auto-forward returned, a
    notification of the tracker delivered to its own mailbox) never becomes an item, and gets no reply."""
    message_id = run.parsed.message_id or ""
    domain = message_id.rpartition("@")[2].lower().rstrip(">")
    own_domains = {d.lower() for d in run.config.names("intake.ownMessageIdDomains")}
    if message_id and is_own_message_id(message_id):
        return Decision("discarded", "own mail: its Message-ID is one this system made", "loop", run.workspace)
    if domain and domain in own_domains:
        return Decision("discarded", f"own mail: Message-ID domain {domain} (intake.ownMessageIdDomains)", "loop",
                        run.workspace)
    if run.sender and run.sender in run.config.sending_addresses():
        return Decision("discarded", f"own mail: from {run.sender}, an address this system sends from", "loop",
                        run.workspace)
    return None


def check_authentication(run: _Run) -> Decision | None:
    """Only a user's address needs proof: it is what the address would be trusted with."""
    proof = run.who.proof
    if proof is None or run.sender not in run.users:
        return None
    if proof.passed:
        run.notes.append(f"authentication: {run.sender} authenticated ({proof.detail})")
        return None
    run.unauthenticated = True
    run.problem = f"sender {run.sender} is a user's address but not authenticated ({proof.detail})"
    if not run.who.treat_unknown:
        return run.rejected(run.problem, "authentication")
    run.notes.append(f"authentication: {run.problem}; treated as an unknown sender")
    del run.users[run.sender]  # from here on the address is nobody's: not known, not the author
    return None


def check_known_senders(run: _Run) -> Decision | None:
    if not run.config.flag("intake.knownSendersOnly", run.ctx.scope) or run.sender in run.users:
        return None
    if run.unauthenticated:
        return run.rejected(run.problem, "known-senders")
    return run.rejected(f"sender {run.sender or '(none)'} is not a known user", "known-senders")


def check_permitted(run: _Run) -> Decision | None:
    """The permitted-address pattern, on every mailbox."""
    permitted = run.config.permitted()
    if permitted is None:
        return None
    if not permitted.permits(run.sender):
        return run.rejected(f"sender not permitted (pattern {permitted.source})", "permitted")
    proof = run.who.proof
    if proof is not None and not proof.passed:
        # The pattern vouches for addresses, not for whoever writes one into From: an address the
        # receiving server did not authenticate is no better than one outside the pattern.
        return run.rejected(f"sender {run.sender} matches the permitted pattern {permitted.source} but is not"
                            f" authenticated ({proof.detail})", "permitted")
    return None


def check_subject(run: _Run) -> Decision | None:
    return run.rejected("empty subject", "subject") if subject_is_empty(run.parsed.subject) else None


def _automail_discard(verdict: automail.AutomailVerdict, config: Config, scope: str | None) -> str | None:
    """The discard reason for machine-made mail, or None when it is to be filed (never answered)."""
    if verdict.discard:
        return f"{verdict.kind}: {verdict.reason}"
    setting = LIST_SETTINGS.get(verdict.kind)
    if setting is not None and config.get(setting, scope) == "discard":
        return f"{verdict.description}: {verdict.reason} ({setting}=discard)"
    return None


def check_automail(run: _Run) -> Decision | None:
    """Machine-made mail: bounces, reports and auto-replies are discarded, with the signals that decided;
    list, bulk and generated mail is filed but never answered automatically, unless the mailbox's admin
    chose to discard list or bulk mail. An admin's `messages accept` overrides both discards."""
    verdict = automail.classify(run.parsed)
    admitted_over = run.ctx.admitted_over
    if verdict is not None:
        discard = _automail_discard(verdict, run.config, run.ctx.scope)
        if discard is not None and admitted_over is None:
            return Decision("discarded", discard, "automail", run.workspace,
                            notes=tuple(f"signal: {signal}" for signal in verdict.signals))
        run.withheld = run.withheld or f"{verdict.description}: never answered automatically"
        run.notes.append(f"no automatic answer: {verdict.description} ({'; '.join(verdict.signals)})")
    if admitted_over is not None:
        run.notes.append(f"accepted by an admin; it was {admitted_over}")
        run.withheld = run.withheld or "accepted by an admin after it was discarded"
    return None


def _reject_list_match(parsed: ParsedMessage, config: Config) -> str | None:
    checks = (("filter.rejectSubject", parsed.subject), ("filter.rejectSender", parsed.sender.email),
              ("filter.rejectSenderName", parsed.sender.name), ("filter.rejectBody", parsed.text))
    for key, value in checks:
        line = next((x for x in config.lines(key) if value and x.pattern.search(value)), None)
        if line is not None:
            return f"{line.describe()} matched"
    return None


def _cut_body(run: _Run) -> None:
    text, reply_text = run.parsed.text, run.parsed.reply_text
    for line in run.config.lines("filter.cutBody"):
        text, count = line.pattern.subn("", text)
        reply_text = line.pattern.sub("", reply_text)
        if count:
            run.notes.append(f"cut {count} part(s) by {line.describe()}")
    if text != run.parsed.text:
        run.text, run.reply_text = text, reply_text


def _drop_attachments(run: _Run) -> None:
    drop_lines = run.config.lines("filter.dropAttachments")
    if not drop_lines or not run.parsed.attachments:
        return
    kept: list[Attachment] = []
    for attachment in run.parsed.attachments:
        dropping = next((x for x in drop_lines if x.pattern.search(attachment.filename or "")), None)
        if dropping is None:
            kept.append(attachment)
        else:
            run.notes.append(f"dropped attachment {attachment.filename!r} by {dropping.describe()}")
    if len(kept) != len(run.parsed.attachments):
        run.attachments = kept


def apply_filters(run: _Run) -> Decision | None:
    """The filter lists: a reject list's match discards (not for mail an admin accepted); then the body is
    cut and attachments dropped."""
    if run.ctx.admitted_over is None:
        matched = _reject_list_match(run.parsed, run.config)
        if matched is not None:
            return Decision("discarded", f"filter {matched}", "filter", run.workspace)
    _cut_body(run)
    _drop_attachments(run)
    return None


def check_guard(run: _Run) -> Decision | None:
    if run.scripts.guard is None:
        return None
    try:
        reason = run.scripts.guard(run.message_view())
    except ScriptFailure as exc:
        return run.failed(str(exc), "guard")
    if reason is not None:
        return run.rejected(f"guard script: {reason}", "guard", told=reason)
    return None


def _vouched(run: _Run, address: str) -> bool:
    """Whether the receiving server vouched for ``address`` as the mail's From (always, with the check off)."""
    return run.who.proof is None or (run.who.proof.passed and address == run.sender)


def take_relay(run: _Run) -> Decision | None:
    """A contact form's relay (``intake.relaySenders``) sends every visitor's mail from one address and puts
    the visitor's in Reply-To: the author is the Reply-To address, never the relay. The visitor typed it
    into a form, so nothing vouches for it: the mail is never answered automatically, and with sender
    authentication on, a user's address there counts as an unknown sender's (as an unauthenticated From)."""
    pattern = run.config.globs("intake.relaySenders", run.ctx.scope)
    if pattern is None or not run.sender or not pattern.permits(run.sender):
        return None
    if not _vouched(run, run.sender):
        run.notes.append(f"relay: {run.sender} is a relay sender but not authenticated; an ordinary mail")
        return None
    visitor = _relay_author(run.parsed)
    if visitor is None:
        run.notes.append(f"relay: mail from relay sender {run.sender} without exactly one Reply-To address")
        return None
    address = normalise(visitor.email)
    if address in run.config.own_addresses():
        run.notes.append(f"relay: Reply-To {address} is this system's own address; an ordinary mail")
        return None
    run.claimed = Address(address, visitor.name)
    run.claimed_unverified = run.who.proof is not None and address in run.users
    run.notes.append(f"relay: from relay sender {run.sender}; the author is the Reply-To address {address}")
    run.withheld = run.withheld or "sent through a relay: its Reply-To address is not verified"
    return None


def may_forward(run: _Run) -> str | None:
    """Why the From may forward on someone's behalf (``intake.forwarders``, ``intake.forwarderAddresses``),
    or None. Only a From the receiving server vouched for (with sender authentication on) may."""
    if not run.sender or not _vouched(run, run.sender):
        return None
    extra = run.config.globs("intake.forwarderAddresses", run.ctx.scope)
    if extra is not None and extra.permits(run.sender):
        return "intake.forwarderAddresses"
    person, rule = run.users.get(run.sender), run.config.get("intake.forwarders", run.ctx.scope)
    if person is None or rule == "nobody":
        return None
    own = person.roles.get(run.workspace, person.roles.get("*"))
    if own is None or own == "none":
        return None  # only a role given to the person counts, not the defaults every sender gets
    allowed = SEES_ALL - {"reader"} if rule == "editors" else CAN_CREATE | SEES_ALL
    return f"role {own} in {run.workspace}" if own in allowed else None


def take_forward(run: _Run) -> Decision | None:
    """A forwarded mail belongs to its original sender when a person allowed to forward on someone's behalf
    forwarded it: the original sender is the author (by the usual author rules), the forwarder the
    reporter. From anyone else a forward is an ordinary mail."""
    forwarded = run.parsed.forwarded
    if forwarded is None or run.claimed is not None:
        return None
    original = normalise(forwarded.sender.email)
    if original == run.sender or original in run.config.own_addresses():
        return None  # one's own mail forwarded, or ours: nobody else to name
    why = may_forward(run)
    if why is None:
        run.notes.append(f"forward: of {original}'s mail, but {run.sender or 'the sender'} may not forward on "
                         "someone's behalf (intake.forwarders); an ordinary mail")
        return None
    run.forward, run.forwarder = forwarded, run.users.get(run.sender)
    run.claimed = Address(original, forwarded.sender.name)
    run.notes.append(f"forward: {forwarded.kind} forward ({forwarded.client}) of {original}'s mail by "
                     f"{run.sender} ({why})")
    text = forwards.description(forwarded, run.text if run.text is not None else run.parsed.text)
    if text != run.parsed.text:
        run.text = text
    return None


def choose_author(run: _Run) -> Decision | None:
    """Who writes (before threading: it decides whether a marker or a reference may be followed)."""
    if run.claimed is not None:
        _choose_claimed_author(run, run.claimed)
        return None
    person = run.users.get(run.sender)
    run.author, run.author_name = run.sender, run.parsed.sender.name
    if person is not None:
        run.author_name = person.name or run.author_name
    elif run.guest_mode or run.unauthenticated or not run.sender:
        # An unauthenticated user's address must not become a second user, nor be named as the author; a
        # mail without a valid From is nobody's either.
        person, run.author, run.author_name = run.users.get(GUEST), GUEST, "Guest"
    else:
        run.new_users.append((run.sender, run.parsed.sender.name))
    run.author_person = person
    # An unknown sender filed as the guest is still the one who wrote: recorded as the item's reporter, so
    # that their own replies thread into it (as much as any From address is believed; never for one that
    # authentication refused).
    run.reporter = run.sender if run.author == GUEST and run.sender and not run.unauthenticated else ""
    return None


def _choose_claimed_author(run: _Run, claimed: Address) -> None:
    """The author rules for a relay's visitor or a forward's original sender: a user; else a new user
    (``create``) or the guest. A forward's reporter is the forwarder; a guest's replies thread through
    their address, kept as the item's reporter (relay) or a reader (forward)."""
    address = claimed.email
    person = None if run.claimed_unverified else run.users.get(address)
    run.author, run.author_name = address, claimed.name
    if person is not None:
        run.author_name = person.name or claimed.name
    elif run.guest_mode or run.claimed_unverified:
        person, run.author, run.author_name = run.users.get(GUEST), GUEST, "Guest"
    else:
        run.new_users.append((address, claimed.name))
    run.author_person = person
    if run.forward is not None:
        run.reporter = run.sender
        if run.author == GUEST:
            run.cc_readers.add(address)
    else:
        run.reporter = address if run.author == GUEST and not run.claimed_unverified else ""


def find_thread(run: _Run) -> Decision | None:
    """A marker or a reference names an item, but only one the author may see is followed. Any other is
    passed over as if it did not exist, and the mail is judged as new mail (the permission step): so a
    stranger cannot write into someone else's item by its number, another tracker's marker cannot file a
    customer's mail into ours, and whether the item exists makes no difference the sender could observe.
    The ledger's notes tell the admin."""
    person, address = run.acting()
    for candidate in run.facts.candidates:
        if may_see(person, address, candidate, run.facts.roles):
            run.target = candidate
            break
        run.notes.append(f"not threaded into item {candidate.number}: {address or run.author} may not see it")
    run.plan = Plan(workspace=run.workspace)
    if run.target is not None:
        run.plan.action, run.plan.item_number = "comment", run.target.number
    return None


def _follow_plan(run: _Run) -> Decision | None:
    """Where the activity script's plan points: its item (to be checked yet), or a workspace that exists."""
    plan = run.plan
    if plan.action == "comment" and plan.item_number is not None and (
            run.target is None or run.target.number != plan.item_number):
        run.target = run.facts.item_by_number(int(plan.item_number))
        if run.target is None:
            return run.failed(f"activity script: no item {plan.item_number} to comment on", "activity")
    if plan.action != "comment":
        run.target = None
    if run.target is None and plan.workspace not in run.facts.workspaces | {run.config.default_workspace()}:
        return run.failed(f"activity script: no workspace {plan.workspace!r}", "activity")
    return None


def run_activity(run: _Run) -> Decision | None:
    if run.scripts.activity is not None:
        try:
            run.scripts.activity(run.message_view(), run.plan)
        except ScriptFailure as exc:
            return run.failed(str(exc), "activity")
        failure = _follow_plan(run)
        if failure is not None:
            return failure
    run.workspace = run.plan.workspace if run.target is None else run.target.workspace
    return None


def check_permission(run: _Run) -> Decision | None:
    """Before CC: a refused mail creates nobody. A target chosen by the activity script has not been
    checked yet; the words the sender reads are the same either way (mailintake.outgoing)."""
    target = run.target
    person, address = run.acting()
    who = run.sender if run.forward is not None else run.author
    if target is not None:
        if not may_see(person, address, target, run.facts.roles):
            return run.rejected(f"{who} may not see item {target.number}", "permission")
    elif not may_create(person, run.workspace, run.facts.roles):
        return run.rejected(f"{who} may not create items in workspace {run.workspace}", "permission")
    return None


def add_cc(run: _Run) -> Decision | None:
    """CC as editors or readers of a new item (a comment adds nobody); unknown CCs become users, but
    not in guest mode, where they are left out."""
    config = run.config
    if run.target is not None or not _cc_roles(config):
        return None
    own = config.own_addresses()
    as_editor, as_reader = config.flag("item.emailReceived.addCcAsEditor"), config.flag(
        "item.emailReceived.addCcAsReader")
    for cc in run.parsed.cc:
        address = normalise(cc.email)
        if not is_address(address) or address == run.sender or address in own:
            continue
        if address not in run.users:
            if run.guest_mode:
                continue
            run.new_users.append((address, cc.name))
        if as_editor:
            run.cc_editors.add(address)
        if as_reader:
            run.cc_readers.add(address)
    return None


Step = Callable[[_Run], "Decision | None"]
STEPS: tuple[Step, ...] = (
    route_by_recipient, check_own_mail, check_authentication, check_known_senders, check_permitted, check_subject,
    check_automail, apply_filters, check_guard, take_relay, take_forward, choose_author, find_thread, run_activity,
    check_permission, add_cc,
)
NO_SCRIPTS = Scripts()


def decide(parsed: ParsedMessage, ctx: Context, facts: Facts, scripts: Scripts = NO_SCRIPTS) -> Decision:
    """What ``parsed`` becomes: the first step that decides, else an item or a comment."""
    run = _start(parsed, ctx, facts, scripts)
    for step in STEPS:
        decision = step(run)
        if decision is not None:
            return decision
    return run.accepted()
