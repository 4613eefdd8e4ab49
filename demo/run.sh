#!/usr/bin/env bash
# `make demo`: two local mailboxes (IMAP over TLS, POP3 with STARTTLS), sample mail delivered into them,
# one scheduled cycle, then the items and comments it made. Run from the repository root after `make reset`.
set -euo pipefail
cd "$(dirname "$0")/.."
mi=.venv/bin/mailintake

echo "== workspaces and mailboxes (a mailbox naming a missing workspace fails the configuration check)"
$mi workspaces add operations --title "Operations"
# Margaret works in operations: as an editor there she sees, and so may answer, every item of it. Anyone
# else's reply threads only into items they are party to (author, reader or editor).
$mi users add margaret@example.net --name Margaret --role operations=editor
$mi local mailbox helpdesk --protocol imap --security ssl --after seen
$mi local mailbox ops --protocol pop3 --security starttls --after delete --workspace operations
$mi mailbox list

echo; echo "== delivering sample mail"
$mi local send demo/mail/1-plain.eml demo/mail/2-html.eml demo/mail/3-attachments.eml \
    demo/mail/4-reply-marker.eml --mailbox helpdesk
$mi local send demo/mail/5-pop3-plain.eml demo/mail/6-pop3-reply-thread.eml --mailbox ops

echo; echo "== one scheduled cycle (the schedules' events through the fetch and process handlers)"
$mi poll

echo; echo "== the ledger: one outcome per fetched message"
$mi messages list

echo; echo "== items"
$mi items list
for n in $($mi items list --json | python3 -c 'import json,sys; print(" ".join(str(i["number"]) for i in json.load(sys.stdin)))'); do
    echo; echo "---------------------------------------------------------------- item $n"
    $mi item show "$n"
done

echo; echo "== a second cycle changes nothing"
$mi poll
