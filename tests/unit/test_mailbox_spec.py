from __future__ import annotations

import pytest

from mailintake.mailboxes import MailboxConfigError, MailboxSpec


def spec(**kwargs: object) -> MailboxSpec:
    values: dict[str, object] = {"name": "support", "protocol": "imap", "host": "mail.example.org",
                                 "username": "support"}
    values.update(kwargs)
    return MailboxSpec(**values)  # type: ignore[arg-type]


def test_defaults_follow_protocol_and_security() -> None:
    imap, pop3 = spec(), spec(protocol="pop3", security="starttls")
    imap.validate()
    pop3.validate()
    assert (imap.port, imap.after) == (993, "seen")
    assert (pop3.port, pop3.after) == (110, "delete")


@pytest.mark.parametrize(
    "kwargs",
    [{"protocol": "smtp"}, {"security": "tls"}, {"protocol": "pop3", "after": "seen"}, {"after": "move"},
     {"name": "../x"}, {"port": 70000}, {"poll_minutes": 0}],
)
def test_unworkable_configuration_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(MailboxConfigError):
        spec(**kwargs).validate()
