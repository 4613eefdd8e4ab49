"""The intake rules: what a parsed message becomes (item, comment, rejected, discarded, failed) and why.

The checks run in a fixed order and the first that decides names itself in ``Decision.step``:

``authentication`` -> ``known-senders`` -> ``permitted`` -> ``subject`` -> ``automail`` -> ``filter``
(reject lists; then the body is cut and attachments dropped) -> ``guard`` -> author -> ``thread`` (only
into an item the author may see) / ``new`` -> ``activity`` -> ``permission`` -> CC.

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

from mailintake import authentication, automail
from mailintake.access import GUEST, ItemFacts, Person, Roles, may_create, may_see, normalise
from mailintake.addresses import is_address
from mailintake.message import Attachment, ParsedMessage
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

    mailbox_name: str
    config: Config
    size: int = 0
    # The earlier outcome of a mail an admin accepted (`messages accept`): its discard no longer applies.
    admitted_over: str | None = None
    # The workspace of a workspace mailbox; None for a system mailbox or one that is not known.
    mailbox_workspace: str | None = None
    system_mailbox: bool = False

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


def people_needed(parsed: ParsedMessage, ctx: Context) -> list[str]:
    """The addresses whose user records the rules may ask for: the sender, the CCs when they become
    editors or readers, and the guest when the mail may be filed as the guest's."""
    who = _judge_sender(parsed, ctx)
    wanted = [who.address, *(a.email for a in parsed.cc if _cc_roles(ctx.config))]
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
            text=self.text, reply_text=self.reply_text,
            attachments=tuple(self.attachments) if self.attachments is not None else None,
            notes=tuple(self.notes), reply_withheld=self.withheld,
        )


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


def choose_author(run: _Run) -> Decision | None:
    """Who writes (before threading: it decides whether a marker or a reference may be followed)."""
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


def find_thread(run: _Run) -> Decision | None:
    """A marker or a reference names an item, but only one the author may see is followed. Any other is
    passed over as if it did not exist, and the mail is judged as new mail (the permission step): so a
    stranger cannot write into someone else's item by its number, another tracker's marker cannot file a
    customer's mail into ours, and whether the item exists makes no difference the sender could observe.
    The ledger's notes tell the admin."""
    for candidate in run.facts.candidates:
        if may_see(run.author_person, run.seen_as, candidate, run.facts.roles):
            run.target = candidate
            break
        run.notes.append(f"not threaded into item {candidate.number}: {run.author} may not see it")
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
    if target is not None:
        if not may_see(run.author_person, run.seen_as, target, run.facts.roles):
            return run.rejected(f"{run.author} may not see item {target.number}", "permission")
    elif not may_create(run.author_person, run.workspace, run.facts.roles):
        return run.rejected(f"{run.author} may not create items in workspace {run.workspace}", "permission")
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
    check_authentication, check_known_senders, check_permitted, check_subject, check_automail, apply_filters,
    check_guard, choose_author, find_thread, run_activity, check_permission, add_cc,
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
