"""mailintake: turns mail in IMAP/POP3 mailboxes into issue-tracker items and comments."""
