"""The intake rules step by step, on plain data: each step's accept and reject path, with no table, no moto
and no network. The facts are made here as :mod:`mailintake.facts` would load them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mailintake import intake
from mailintake.access import GUEST, ItemFacts, Person, Roles, may_create, may_see, role_in
from mailintake.intake import Context, Decision, Facts, Scripts, decide
from mailintake.message import Address, Attachment, ParsedMessage
from mailintake.scripts import MessageView, Plan, ScriptFailure
from mailintake.system_settings import Config

ADA = Person("ada@example.org", "Ada Lovelace")
ITEM_7 = ItemFacts(7, "default", author="ada@example.org")
SOMEONE_ELSES = ItemFacts(8, "default", author="kim@example.org")
TRUSTED = {"intake.authservIds": "mx.tracker.example"}
PASS = "mx.tracker.example; dmarc=pass header.from=example.org"
FAIL = "mx.tracker.example; dmarc=fail header.from=example.org"


def mail(sender: str = "ada@example.org", subject: str = "Printer jams", **kw: Any) -> ParsedMessage:
    kw.setdefault("text", "The printer jams.")
    kw.setdefault("reply_text", kw["text"])
    return ParsedMessage("m1@example.org", subject, Address(sender, kw.pop("name", "Ada")), **kw)


def judge(parsed: ParsedMessage | None = None, settings: dict[str, str] | None = None,
          users: tuple[Person, ...] = (), candidates: Any = (), scripts: Scripts = intake.NO_SCRIPTS,
          items: dict[int, ItemFacts] | None = None, roles: Roles | None = None,
          workspaces: frozenset[str] = frozenset(), **ctx: Any) -> Decision:
    config = Config(system=dict(settings or {}))
    facts = Facts(users={p.address: p for p in users}, roles=roles or Roles(config.get("intake.defaultRole")),
                  workspaces=workspaces, candidates=candidates, item_by_number=(items or {}).get)
    return decide(parsed or mail(), Context("support", config, **ctx), facts, scripts)


def test_plain_mail_from_a_stranger_becomes_an_item_and_makes_the_stranger_a_user() -> None:
    decision = judge()
    assert (decision.action, decision.step, decision.workspace) == ("item", "new", "default")
    assert (decision.author, decision.new_users, decision.wants_reply) == ("ada@example.org",
                                                                           (("ada@example.org", "Ada"),), False)


# authentication
def test_authentication_accepts_a_users_address_the_server_vouched_for() -> None:
    decision = judge(mail(authentication_results=[PASS]), TRUSTED, users=(ADA,))
    assert decision.action == "item" and decision.author_name == "Ada Lovelace"
    assert decision.notes == ("authentication: ada@example.org authenticated (mx.tracker.example: dmarc=pass)",)


def test_authentication_rejects_an_unvouched_users_address_when_told_to_without_a_reply() -> None:
    decision = judge(mail(authentication_results=[FAIL]), {**TRUSTED, "intake.unauthenticatedSender": "reject"},
                     users=(ADA,))
    assert (decision.action, decision.step) == ("rejected", "authentication")
    assert decision.reply_withheld == intake.NOT_AUTHENTICATED and not decision.wants_reply


def test_authentication_files_an_unvouched_users_address_as_the_guest_not_as_the_user() -> None:
    decision = judge(mail(authentication_results=[FAIL]), TRUSTED, users=(ADA, Person(GUEST, "Guest")))
    assert (decision.action, decision.author, decision.reporter, decision.new_users) == ("item", GUEST, "", ())


# known-senders
def test_known_senders_only_accepts_a_user() -> None:
    assert judge(settings={"intake.knownSendersOnly": "true"}, users=(ADA,)).action == "item"


def test_known_senders_only_rejects_a_stranger_with_a_reply() -> None:
    decision = judge(mail("eve@example.net"), {"intake.knownSendersOnly": "true"}, users=(ADA,))
    assert (decision.action, decision.step, decision.wants_reply) == ("rejected", "known-senders", True)


def test_known_senders_only_can_be_switched_on_for_one_workspace_mailbox() -> None:
    config = Config(overrides={"support": {"intake.knownSendersOnly": "true"}})
    facts = Facts()
    assert decide(mail(), Context("support", config), facts).action == "item"
    ctx = Context("support", config, mailbox_workspace="support")
    assert decide(mail(), ctx, facts).step == "known-senders"


# permitted
def test_permitted_pattern_accepts_a_matching_address() -> None:
    assert judge(settings={"intake.permittedAddresses": "*@example.org"}).action == "item"


def test_permitted_pattern_rejects_an_address_outside_it() -> None:
    decision = judge(mail("eve@example.net"), {"intake.permittedAddresses": "*@example.org"})
    assert (decision.action, decision.step) == ("rejected", "permitted")


def test_permitted_pattern_rejects_a_matching_address_that_is_not_authenticated() -> None:
    decision = judge(mail(authentication_results=[FAIL]), {**TRUSTED, "intake.permittedAddresses": "*@example.org"})
    assert (decision.step, decision.reply_withheld) == ("permitted", intake.NOT_AUTHENTICATED)


# subject
def test_subject_with_words_is_accepted() -> None:
    assert judge(mail(subject="Re: printer")).action == "item"


def test_subject_of_only_reply_prefixes_is_rejected() -> None:
    decision = judge(mail(subject="Re: AW: Fwd:"))
    assert (decision.action, decision.step, decision.wants_reply) == ("rejected", "subject", True)


# automail
def test_automail_files_list_mail_but_never_answers_it() -> None:
    decision = judge(mail(headers={"list-id": "<l.example.org>"}))
    assert decision.action == "item" and decision.reply_withheld.startswith("mailing-list mail")


def test_automail_discards_an_auto_reply_with_its_signals() -> None:
    decision = judge(mail(headers={"auto-submitted": "auto-replied"}))
    assert (decision.action, decision.step) == ("discarded", "automail")
    assert decision.notes == ("signal: Auto-Submitted: auto-replied",)


def test_automail_discards_list_mail_where_the_mailbox_says_so_unless_an_admin_accepted_it() -> None:
    listed = mail(headers={"list-id": "<l.example.org>"})
    assert judge(listed, {"intake.listMail": "discard"}).step == "automail"
    decision = judge(listed, {"intake.listMail": "discard"}, admitted_over="discarded: list")
    assert decision.action == "item" and "accepted by an admin; it was discarded: list" in decision.notes


# filter lists
def test_filter_lists_cut_the_body_and_drop_attachments_of_accepted_mail() -> None:
    exe = Attachment("run.exe", "run.exe", "application/octet-stream", b"MZ")
    pdf = Attachment("a.pdf", "a.pdf", "application/pdf", b"%PDF")
    decision = judge(mail(text="Hello\n-- \nsig", attachments=[exe, pdf]),
                     {"filter.cutBody": "--\\s*\\n.*", "filter.dropAttachments": "\\.exe$"})
    assert (decision.action, decision.text, decision.attachments) == ("item", "Hello\n", (pdf,))
    assert len(decision.notes) == 2


def test_filter_lists_discard_a_subject_on_the_reject_list_unless_an_admin_accepted_it() -> None:
    settings = {"filter.rejectSubject": "^win a prize"}
    decision = judge(mail(subject="Win a prize now"), settings)
    assert (decision.action, decision.step, decision.wants_reply) == ("discarded", "filter", False)
    assert judge(mail(subject="Win a prize now"), settings, admitted_over="discarded: filter").action == "item"


# guard script
def test_guard_script_that_returns_nothing_accepts_and_sees_the_message() -> None:
    seen: list[MessageView] = []
    decision = judge(scripts=Scripts(guard=lambda view: seen.append(view)))
    assert decision.action == "item" and seen[0].subject == "Printer jams" and seen[0].mailbox == "support"


def test_guard_script_reason_rejects_and_is_what_the_sender_is_told() -> None:
    decision = judge(scripts=Scripts(guard=lambda view: "no invoices here"))
    assert (decision.action, decision.step, decision.told) == ("rejected", "guard", "no invoices here")


def test_guard_script_failure_fails_the_mail() -> None:
    def broken(view: MessageView) -> str | None:
        raise ScriptFailure("script x raised")

    assert judge(scripts=Scripts(guard=broken)) == Decision("failed", "script x raised", "guard", "default")


# author
def test_author_is_the_known_user_under_the_users_own_name() -> None:
    decision = judge(users=(ADA,))
    assert (decision.author, decision.author_name, decision.new_users) == ("ada@example.org", "Ada Lovelace", ())


def test_author_is_the_guest_in_guest_mode_with_the_sender_as_reporter() -> None:
    decision = judge(settings={"intake.unknownSenders": "guest"}, users=(Person(GUEST),))
    assert (decision.author, decision.author_name, decision.reporter, decision.new_users) == (
        GUEST, "Guest", "ada@example.org", ())


def test_author_of_mail_without_a_valid_from_is_the_guest_and_nobody_is_answered() -> None:
    decision = judge(mail(""))
    assert (decision.author, decision.reporter, decision.new_users) == (GUEST, "", ())
    assert decision.reply_withheld == "the From header names no single valid address"


# thread
def test_thread_follows_an_item_the_author_is_party_to() -> None:
    decision = judge(candidates=(ITEM_7,))
    assert (decision.action, decision.step, decision.item_number) == ("comment", "thread", 7)


def test_thread_passes_over_an_item_the_author_may_not_see_and_makes_a_new_item() -> None:
    decision = judge(candidates=(SOMEONE_ELSES,))
    assert (decision.action, decision.item_number) == ("item", None)
    assert decision.notes == ("not threaded into item 8: ada@example.org may not see it",)


def test_thread_reads_no_candidate_past_the_first_the_author_may_see() -> None:
    def candidates() -> Iterator[ItemFacts]:
        yield SOMEONE_ELSES
        yield ITEM_7
        raise AssertionError("read past the first visible candidate")

    assert judge(candidates=candidates()).item_number == 7


# activity script
def test_activity_script_routes_a_new_item_to_another_workspace_with_its_plan() -> None:
    def route(view: MessageView, plan: Plan) -> None:
        plan.workspace, plan.priority, plan.fields["team"] = "billing", "high", "ops"

    decision = judge(scripts=Scripts(activity=route), workspaces=frozenset({"billing"}))
    assert (decision.action, decision.workspace, decision.priority, decision.fields) == (
        "item", "billing", "high", (("team", "ops"),))


def test_activity_script_naming_a_workspace_that_does_not_exist_fails_the_mail() -> None:
    def route(view: MessageView, plan: Plan) -> None:
        plan.workspace = "billing"

    decision = judge(scripts=Scripts(activity=route))
    assert (decision.action, decision.step, decision.workspace) == ("failed", "activity", "default")


def test_activity_script_may_comment_on_an_item_it_names() -> None:
    def to_item_7(view: MessageView, plan: Plan) -> None:
        plan.action, plan.item_number = "comment", 7

    decision = judge(scripts=Scripts(activity=to_item_7), items={7: ITEM_7})
    assert (decision.action, decision.item_number) == ("comment", 7)


def test_activity_script_naming_a_missing_item_fails_the_mail() -> None:
    def to_item_9(view: MessageView, plan: Plan) -> None:
        plan.action, plan.item_number = "comment", 9

    decision = judge(scripts=Scripts(activity=to_item_9))
    assert (decision.action, decision.step, decision.reason) == (
        "failed", "activity", "activity script: no item 9 to comment on")


def test_activity_script_failure_fails_the_mail() -> None:
    def broken(view: MessageView, plan: Plan) -> None:
        raise ScriptFailure("script y ran past its time budget of 5 s")

    decision = judge(scripts=Scripts(activity=broken))
    assert (decision.action, decision.step, decision.reason) == (
        "failed", "activity", "script y ran past its time budget of 5 s")


# permission
def test_permission_lets_a_reporter_create_items() -> None:
    assert judge(roles=Roles("reporter")).action == "item"


def test_permission_refuses_new_items_from_a_role_that_may_not_create_with_a_reply() -> None:
    decision = judge(roles=Roles("none"))
    assert (decision.action, decision.step, decision.wants_reply) == ("rejected", "permission", True)
    assert decision.reason == "ada@example.org may not create items in workspace default"


def test_permission_refuses_a_comment_the_activity_script_aimed_at_an_item_the_author_may_not_see() -> None:
    def to_item_8(view: MessageView, plan: Plan) -> None:
        plan.action, plan.item_number = "comment", 8

    decision = judge(scripts=Scripts(activity=to_item_8), items={8: SOMEONE_ELSES})
    assert (decision.step, decision.reason) == ("permission", "ada@example.org may not see item 8")


# CC as editors/readers
CC = [Address("kim@example.org", "Kim"), Address("support@tracker.example"), Address("ada@example.org")]


def test_cc_become_editors_and_users_of_a_new_item_but_not_the_sender_or_our_own_address() -> None:
    decision = judge(mail(cc=CC), {"item.emailReceived.addCcAsEditor": "true",
                                   "intake.ownAddresses": "support@tracker.example"})
    assert (decision.editors, decision.readers) == (frozenset({"kim@example.org"}), frozenset())
    assert decision.new_users == (("ada@example.org", "Ada"), ("kim@example.org", "Kim"))


def test_cc_add_nobody_to_a_comment_nor_unknown_people_in_guest_mode() -> None:
    settings = {"item.emailReceived.addCcAsReader": "true"}
    assert judge(mail(cc=CC), settings, candidates=(ITEM_7,)).readers == frozenset()
    guest = judge(mail(cc=CC), {**settings, "intake.unknownSenders": "guest"}, users=(Person(GUEST),))
    assert (guest.readers, guest.new_users) == (frozenset(), ())


# the permission rules themselves
def test_roles_come_from_the_person_then_star_then_the_workspace_then_the_system() -> None:
    roles = Roles("reporter", {"ops": "reader"})
    assert role_in(Person("a", roles={"ops": "editor", "*": "none"}), "ops", roles) == "editor"
    assert role_in(Person("a", roles={"*": "none"}), "ops", roles) == "none"
    assert (role_in(None, "ops", roles), role_in(None, "default", roles)) == ("reader", "reporter")
    assert may_create(None, "default", roles) and not may_create(None, "ops", roles)


def test_party_to_an_item_sees_it_and_the_guest_is_party_to_nothing() -> None:
    item = ItemFacts(1, "default", author=GUEST, reporter="Ada@Example.org", readers=frozenset({"kim@example.org"}))
    assert may_see(None, "ada@example.org", item, Roles()) and may_see(None, "kim@example.org", item, Roles())
    assert not may_see(None, GUEST, item, Roles())
    assert may_see(Person(GUEST, roles={"*": "reader"}), GUEST, item, Roles())

