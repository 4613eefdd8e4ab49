"""Reading Authentication-Results and judging a From address by them, over real and forged headers."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailintake.authentication import aligned, parse, verify
from mailintake.parsing import parse_message
from mailintake.system_settings import Config, SettingError, validate

TRUSTED = ["mx.tracker.example"]
ADA = "ada@example.org"

# As the big providers write them (values shortened, structure kept: comments, quoted strings, folding).
GMAIL = """mx.google.com;
       dkim=pass header.i=@example.org header.s=20230601 header.b=AbCdEf12;
       spf=pass (google.com: domain of ada@example.org designates 209.85.220.41 as permitted sender)\
 smtp.mailfrom=ada@example.org;
       dmarc=pass (p=NONE sp=NONE dis=NONE) header.from=example.org"""
MICROSOFT = ("spf=pass (sender IP is 40.107.22.59) smtp.mailfrom=example.org; dkim=pass (signature was verified)"
             " header.d=example.org;dmarc=pass action=none header.from=example.org;compauth=pass reason=100")
FASTMAIL = """mx6.messagingengine.com;
    dkim=pass (2048-bit rsa key sha256) header.d=example.org header.i=@example.org header.b="AbC/dE+f"
      header.a=rsa-sha256 header.s=fm1 x-bits=2048;
    dmarc=pass policy.published-domain-policy=none (p=none,d=none,d.eval=none) policy.policy-from=p
      header.from=example.org;
    iprev=pass smtp.remote-ip=192.0.2.7 (mail.example.org);
    spf=pass smtp.mailfrom=ada@example.org smtp.helo=mail.example.org;
    x-aligned-from=pass (Address match)"""


def test_gmail_header_reads_with_comments_and_folding() -> None:
    results = parse(GMAIL)
    assert results.authserv_id == "mx.google.com"
    assert [(r.method, r.result) for r in results.results] == [("dkim", "pass"), ("spf", "pass"), ("dmarc", "pass")]
    assert results.results[0].get("header.i") == "@example.org"
    assert results.results[1].get("smtp.mailfrom") == "ada@example.org"


def test_fastmail_header_keeps_quoted_values_and_every_property_after_them() -> None:
    dkim, dmarc, iprev, spf, aligned_from = parse(FASTMAIL).results
    assert dkim.get("header.b") == "AbC/dE+f"
    assert dkim.get("header.d") == "example.org" and dkim.get("header.s") == "fm1"
    assert dmarc.get("header.from") == "example.org"
    assert spf.get("smtp.helo") == "mail.example.org"
    assert (iprev.method, aligned_from.method) == ("iprev", "x-aligned-from")


def test_microsoft_header_without_authserv_id_reads_but_can_never_be_trusted() -> None:
    results = parse(MICROSOFT)
    assert results.authserv_id is None
    assert [r.method for r in results.results] == ["spf", "dkim", "dmarc", "compauth"]
    assert not verify([MICROSOFT], ADA, TRUSTED).passed


def test_yahoo_legacy_header_keeps_its_authserv_id() -> None:
    # From the corpus: before RFC 5451 Yahoo put "from=" next to the id.
    results = parse("mta1474.mail.gq1.yahoo.com from=yahoo.com; domainkeys=pass (ok); from=yahoo.com; dkim=pass (ok)")
    assert results.authserv_id == "mta1474.mail.gq1.yahoo.com"
    assert ("dkim", "pass") in [(r.method, r.result) for r in results.results]


def test_no_header_at_all_is_not_authenticated() -> None:
    verdict = verify([], ADA, TRUSTED)
    assert not verdict.passed
    assert verdict.detail == "no Authentication-Results from mx.tracker.example"


def test_pass_from_an_untrusted_server_counts_for_nothing() -> None:
    forged = "mx.attacker.example; dmarc=pass header.from=example.org; spf=pass smtp.mailfrom=example.org"
    assert not verify([forged], ADA, TRUSTED).passed


def test_forged_trusted_header_below_the_real_one_is_ignored() -> None:
    real = "mx.tracker.example; spf=fail smtp.mailfrom=attacker.example; dkim=none; dmarc=fail header.from=example.org"
    forged = "mx.tracker.example; dmarc=pass header.from=example.org; spf=pass smtp.mailfrom=example.org"
    verdict = verify([real, forged], ADA, TRUSTED)
    assert not verdict.passed
    assert verdict.detail == "mx.tracker.example: spf=fail; dkim=none; dmarc=fail"


def test_forged_trusted_header_is_believed_only_where_the_server_wrote_none() -> None:
    # Why the admin must trust only servers that always write the header (and strip forged ones).
    forged = "mx.tracker.example; dmarc=pass header.from=example.org"
    assert verify(["mx.other.example; spf=fail", forged], ADA, TRUSTED).passed


def test_topmost_trusted_header_decides_past_untrusted_ones_above_it() -> None:
    outer = "relay.partner.example; dmarc=fail header.from=example.org"
    real = "mx.tracker.example; dmarc=pass header.from=example.org"
    forged = "mx.tracker.example; dmarc=fail header.from=example.org"
    verdict = verify([outer, real, forged], ADA, [*TRUSTED, "other.example"])
    assert verdict.passed
    assert verdict.detail == "mx.tracker.example: dmarc=pass"


def test_dmarc_pass_for_the_from_domain_is_enough() -> None:
    assert verify(["mx.tracker.example; dmarc=pass header.from=example.org"], ADA, TRUSTED).passed
    assert verify(["mx.tracker.example; dmarc=pass header.from=EXAMPLE.org."], ADA, TRUSTED).passed


def test_dmarc_pass_without_header_from_is_not() -> None:
    # The server may have judged another From (a second header, another reading of a broken one): a pass
    # that does not say for which domain proves nothing about this one. Before the fix it was trusted for
    # whatever domain From had, so mail really sent from attacker.example passed as ada@example.org.
    verdict = verify(["mx.tracker.example; spf=pass smtp.mailfrom=attacker.example; dmarc=pass"], ADA, TRUSTED)
    assert not verdict.passed
    assert verdict.detail == ("mx.tracker.example: spf=pass for attacker.example, not aligned with example.org;"
                              " dmarc=pass without header.from")


@pytest.mark.parametrize("header_from", ["mail.example.org", "org", "example.org.attacker.example",
                                         "example.org header.from=attacker.example"])
def test_dmarc_pass_binds_to_exactly_the_from_domain(header_from: str) -> None:
    # A subdomain or a parent is another domain to DMARC (it found that From, not ours); two header.from
    # values that disagree leave it open which one passed.
    assert not verify([f"mx.tracker.example; dmarc=pass header.from={header_from}"], ADA, TRUSTED).passed


def test_dmarc_pass_for_another_from_domain_is_not() -> None:
    verdict = verify(["mx.tracker.example; dmarc=pass header.from=attacker.example"], ADA, TRUSTED)
    assert not verdict.passed
    assert "dmarc=pass for attacker.example, not example.org" in verdict.detail


def test_spf_pass_counts_only_for_an_aligned_mail_from() -> None:
    assert verify(["mx.tracker.example; spf=pass smtp.mailfrom=bounce@example.org"], ADA, TRUSTED).passed
    assert verify(["mx.tracker.example; spf=pass smtp.mailfrom=mail.example.org"], ADA, TRUSTED).passed
    other = verify(["mx.tracker.example; spf=pass smtp.mailfrom=bounce@attacker.example"], ADA, TRUSTED)
    assert not other.passed
    assert other.detail == "mx.tracker.example: spf=pass for attacker.example, not aligned with example.org"
    # A HELO-only pass says nothing about the From domain.
    assert not verify(["mx.tracker.example; spf=pass smtp.helo=example.org"], ADA, TRUSTED).passed


@pytest.mark.parametrize(("signer", "sender", "passes"), [
    ("header.d=example.org", ADA, True),
    ("header.d=mail.example.org", ADA, True),  # subdomain of the From domain
    ("header.d=example.org", "ada@eu.example.org", True),  # parent of the From domain
    ("header.i=@example.org", ADA, True),  # Gmail names only the identity
    ("header.d=attacker.example", ADA, False),
    ("header.d=notexample.org", ADA, False),  # a suffix of the name, not a parent domain
    ("header.d=org", ADA, False),  # a bare top-level domain aligns nothing
    ("", ADA, False),
])
def test_dkim_pass_counts_only_for_an_aligned_signing_domain(signer: str, sender: str, passes: bool) -> None:
    assert verify([f"mx.tracker.example; dkim=pass {signer}"], sender, TRUSTED).passed is passes


def test_dmarc_fail_overrules_a_pass_we_would_align_ourselves() -> None:
    # The domain may publish strict alignment (aspf=s), which only the server applied.
    header = "mx.tracker.example; spf=pass smtp.mailfrom=mail.example.org; dmarc=fail header.from=example.org"
    assert not verify([header], ADA, TRUSTED).passed


def test_failed_results_never_pass() -> None:
    header = "mx.tracker.example; dkim=fail header.d=example.org; spf=softfail smtp.mailfrom=example.org; dmarc=none"
    verdict = verify([header], ADA, TRUSTED)
    assert not verdict.passed
    assert verdict.detail == "mx.tracker.example: dkim=fail; spf=softfail; dmarc=none"


def test_names_methods_results_and_domains_compare_without_case() -> None:
    header = "MX.Tracker.EXAMPLE; DKIM=PASS Header.D=Mail.Example.ORG"
    assert verify([header], "Ada@EXAMPLE.org", ["mx.TRACKER.example"]).passed


def test_version_after_the_authserv_id_and_after_a_method_is_read_past() -> None:
    results = parse("mx.tracker.example 1; dkim/1=pass header.d=example.org")
    assert results.authserv_id == "mx.tracker.example"
    assert verify(["mx.tracker.example 1; dkim/1=pass header.d=example.org"], ADA, TRUSTED).passed


def test_semicolons_inside_comments_and_quoted_strings_do_not_split_results() -> None:
    header = 'mx.tracker.example; dkim=fail (bad; really) header.b="a;b=c" header.d=example.org; spf=none'
    dkim, spf = parse(header).results
    assert (dkim.result, dkim.get("header.b"), dkim.get("header.d")) == ("fail", "a;b=c", "example.org")
    assert spf.result == "none"


@pytest.mark.parametrize("value", [
    "", "none", ";;;", "garbage ;;; = = (", "(((", ")))", '"', 'mx.tracker.example; dkim="unterminated',
    "mx.tracker.example; =pass", "mx.tracker.example; dkim=", "mx.tracker.example; dkim==pass header.d=example.org",
    "\udcff\x00; spf=pass",
])
def test_malformed_headers_read_as_what_they_can_and_pass_nothing(value: str) -> None:
    assert not verify([value], ADA, TRUSTED).passed


@given(st.text())
def test_parsing_never_raises(value: str) -> None:
    parse(value)
    verify([value, "mx.tracker.example; " + value], ADA, TRUSTED)


def test_an_unparsable_top_header_still_shields_the_forged_one_below() -> None:
    # The real header is judged on what can be read of it; a reader that gave up on it would fall
    # through to the forged pass below.
    real = "mx.tracker.example; dkim=pass header.d=(unclosed; dmarc=pass header.from=example.org"
    forged = "mx.tracker.example; dmarc=pass header.from=example.org"
    assert not verify([real, forged], ADA, TRUSTED).passed


def test_relaxed_alignment() -> None:
    assert aligned("example.org", "EXAMPLE.ORG.")
    assert aligned("a.b.example.org", "example.org")
    assert not aligned("a.example.org", "b.example.org")
    assert not aligned("example.org", "org")
    assert not aligned("", "example.org")


def test_parsed_message_keeps_every_header_top_first() -> None:
    raw = (b"Authentication-Results: mx.tracker.example; dmarc=fail\r\n"
           b"Received: from x by y\r\n"
           b"From: Ada <ada@example.org>\r\nSubject: hi\r\n"
           b"Authentication-Results: mx.tracker.example;\r\n dmarc=pass\r\n\r\nbody\r\n")
    parsed = parse_message(io.BytesIO(raw))
    assert [v.split(";")[1].strip() for v in parsed.authentication_results] == ["dmarc=fail", "dmarc=pass"]
    assert not verify(parsed.authentication_results, parsed.sender.email, TRUSTED).passed


def test_authserv_ids_setting_takes_a_list_and_refuses_header_syntax() -> None:
    value = validate("intake.authservIds", "mx.google.com, mx6.messagingengine.com\n# ours\nmx.tracker.example")
    assert Config(system={"intake.authservIds": value}).names("intake.authservIds") == [
        "mx.google.com", "mx6.messagingengine.com", "mx.tracker.example"]
    assert Config().names("intake.authservIds") == []  # the default: the check is off
    assert validate("intake.unauthenticatedSender", "reject", mailbox="support") == "reject"
    with pytest.raises(SettingError):
        validate("intake.authservIds", "mx.tracker.example; dmarc=pass")
    with pytest.raises(SettingError):
        validate("intake.unauthenticatedSender", "bounce")


def _received(from_value: str, result: str, extra: str = "") -> bytes:
    return (f"Authentication-Results: mx.tracker.example; {result}\r\n{extra}From: {from_value}\r\n"
            "Subject: Re: [#7] salaries\r\n\r\nbody\r\n").encode()


PASS_FOR_SECRET = "dkim=pass header.d=secret.example; spf=pass smtp.mailfrom=intern@secret.example; " \
                  "dmarc=pass header.from=secret.example"


@pytest.mark.parametrize("from_value", [
    "boss@secret.example <intern@secret.example>",  # the display name is an address
    "<boss@secret.example> intern@secret.example",  # the angle-addr first, the real one after it
    "boss@secret.example, intern@secret.example",  # several mailboxes
    "Board: boss@secret.example, intern@secret.example;",  # a group
    "Board: intern@secret.example;",  # a group of one is still a group
])
def test_forged_from_shapes_are_no_sender_and_authenticate_nobody(from_value: str) -> None:
    # Before the fix the boss's address was read out of these, and the intern's own pass for secret.example
    # recorded the mail as "boss@secret.example authenticated".
    parsed = parse_message(io.BytesIO(_received(from_value, PASS_FOR_SECRET)))
    assert parsed.sender.email == ""
    verdict = verify(parsed.authentication_results, parsed.sender.email, TRUSTED)
    assert (verdict.passed, verdict.detail) == (False, "no From domain to authenticate")


def test_two_from_headers_are_no_sender_whatever_the_server_passed() -> None:
    raw = _received("intern@secret.example", PASS_FOR_SECRET, extra="From: boss@secret.example\r\n")
    parsed = parse_message(io.BytesIO(raw))
    assert parsed.sender.email == ""
    assert not verify(parsed.authentication_results, parsed.sender.email, TRUSTED).passed


def test_a_quoted_address_as_display_name_is_only_a_name_and_the_addr_spec_is_judged() -> None:
    parsed = parse_message(io.BytesIO(_received('"boss@secret.example" <intern@other.example>',
                                                "dmarc=pass header.from=secret.example")))
    assert (parsed.sender.email, parsed.sender.name) == ("intern@other.example", "")
    verdict = verify(parsed.authentication_results, parsed.sender.email, TRUSTED)
    assert (verdict.passed, verdict.detail) == (False, "mx.tracker.example: dmarc=pass for secret.example, not"
                                                       " other.example")


@pytest.mark.parametrize(("result", "detail"), [
    ("spf=pass smtp.mailfrom=eve@attacker.example",
     "spf=pass for attacker.example, not aligned with example.org"),
    ("dkim=pass header.d=attacker.example header.i=@attacker.example",
     "dkim=pass for attacker.example, not aligned with example.org"),
    ("dkim=pass header.d=attacker.example; spf=pass smtp.mailfrom=attacker.example; dmarc=pass",
     "dkim=pass for attacker.example, not aligned with example.org; spf=pass for attacker.example, not"
     " aligned with example.org; dmarc=pass without header.from"),
    ("dmarc=pass header.from=attacker.example", "dmarc=pass for attacker.example, not example.org"),
])
def test_passes_for_another_domain_do_not_authenticate_a_from_address(result: str, detail: str) -> None:
    parsed = parse_message(io.BytesIO(_received("Ada <ada@example.org>", result)))
    verdict = verify(parsed.authentication_results, parsed.sender.email, TRUSTED)
    assert (verdict.passed, verdict.detail) == (False, f"mx.tracker.example: {detail}")
