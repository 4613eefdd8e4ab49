"""`mailintake explain FILE.eml`: what processing would make of a raw mail with the current settings,
writing nothing.

It runs the process function's own judgement, :meth:`mailintake.processing.Processor.judge` (parse, load
the facts, the intake rules' ``decide``), on the file, and then asks the one question processing answers
only while writing (its transaction's condition): is this very mail stored already? That is a read here
(:func:`mailintake.store.get_stored_copy`), so the verdict is the one processing would record, without the
transaction. Nothing is written: no item, user, ledger record, reply or S3 object (the scripts run, as in
processing, on a read-only view of the mail).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

from mailintake.handover import QueuedMessage
from mailintake.intake import Decision
from mailintake.markers import make_marker
from mailintake.processing import Processor, Verdict
from mailintake.runtime import Runtime
from mailintake.store import get_stored_copy

# Outside raw/: a key no fetched mail has, so it can never be taken for a stored copy of itself.
EXPLAIN_PREFIX = "explain/"


@dataclass
class Explanation:
    """What a mail would become; ``status`` and ``outcome`` are worded as its ledger record would be."""

    mailbox: str
    status: str  # item | comment | rejected | discarded | failed
    outcome: str  # "new item in workspace W", "comment on item 12", "rejected: empty subject", ...
    step: str  # the rule that decided ("new", "thread", "automail", "duplicate", "size", ...)
    reason: str
    item_number: int | None
    workspace: str
    title: str
    text: str  # what the item's description or the comment would show
    sender: str
    author: str
    attachments: list[dict[str, Any]] = field(default_factory=list)
    new_users: list[str] = field(default_factory=list)
    readers: list[str] = field(default_factory=list)
    editors: list[str] = field(default_factory=list)
    reply: str = ""  # whether the sender would be answered, and why not
    notes: list[str] = field(default_factory=list)
    simplified: list[str] = field(default_factory=list)
    duplicate_of: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def lines(self) -> list[str]:
        lines = [f"verdict:     {self.outcome}", f"decided by:  {self.step}" + (f" ({self.reason})" if self.reason
                                                                                 and self.reason not in self.outcome
                                                                                 else ""),
                 f"mailbox:     {self.mailbox}", f"from:        {self.sender or '(no valid address)'}",
                 f"author:      {self.author}", f"title:       {self.title}", f"reply:       {self.reply}"]
        lines += [f"new user:    {u}" for u in self.new_users]
        lines += [f"attachment:  {a['filename']} ({a['content_type']}, {a['size']} bytes)"
                  + ("" if a["kept"] else " dropped") for a in self.attachments]
        lines += [f"note:        {n}" for n in self.notes + [f"simplified: {s}" for s in self.simplified]]
        lines += ["text:", *("  " + line for line in self.text.splitlines())]
        lines.append("(nothing was written)")
        return lines


def default_mailbox(runtime: Runtime) -> str:
    """The system mailbox, else the first by name, else a name no mailbox has (judged as processing judges
    mail of an unknown mailbox)."""
    mailboxes = runtime.config.current().mailboxes
    system = [name for name, record in mailboxes.items() if record.system]
    return (system or sorted(mailboxes) or ["(none)"])[0]


def explain(runtime: Runtime, raw: bytes, mailbox: str | None = None, name: str = "mail.eml") -> Explanation:
    """The verdict on ``raw`` as mail of ``mailbox``, by the same judgement processing uses."""
    mailbox = mailbox or default_mailbox(runtime)
    digest = hashlib.sha256(raw).hexdigest()
    job = QueuedMessage(runtime.settings.bucket, f"{EXPLAIN_PREFIX}{digest[:16]}/{name}", mailbox, digest, len(raw),
                        base64.b64encode(raw).decode("ascii"))
    verdict = Processor(runtime).judge(job)
    return _explained(verdict, runtime, mailbox)


def _explained(verdict: Verdict, runtime: Runtime, mailbox: str) -> Explanation:
    parsed, decision, source = verdict.parsed, verdict.decision, verdict.source
    status, step, reason, number = decision.action, decision.step, decision.reason, decision.item_number
    duplicate: str | None = None
    if status in ("item", "comment"):
        # What processing's transaction would find: this very mail already stored.
        stored = get_stored_copy(source)
        if stored is not None:
            duplicate = str(stored.source_key)
            status, step, reason = "discarded", "duplicate", f"duplicate of {duplicate}"
            number = int(stored.item_number) if stored.item_number is not None else None
    if status == "item":
        outcome = f"new item in workspace {decision.workspace}"
    elif status == "comment":
        marker = make_marker(int(number or 0), runtime.settings.marker_format)
        outcome = f"comment on item {number} {marker}"
    else:
        outcome = f"{status}: {reason}"
    kept = decision.attachments if decision.attachments is not None else parsed.attachments
    kept_ids = {id(a) for a in kept}
    comment_text = decision.reply_text if decision.reply_text is not None else parsed.reply_text
    text = decision.text if decision.text is not None else parsed.text
    return Explanation(
        mailbox=mailbox, status=status, outcome=outcome, step=step, reason=reason, item_number=number,
        workspace=decision.workspace, title=decision.title or parsed.subject,
        text=(comment_text or text) if status == "comment" else text,
        sender=parsed.sender.email, author=decision.author or parsed.sender.email,
        attachments=[{"filename": a.filename, "content_type": a.content_type, "size": a.size,
                      "inline": a.inline, "kept": id(a) in kept_ids} for a in parsed.attachments],
        new_users=[address for address, _ in decision.new_users] if status == "item" or status == "comment" else [],
        readers=sorted(decision.readers), editors=sorted(decision.editors), reply=_reply(decision, status),
        notes=list(decision.notes), simplified=list(parsed.simplified), duplicate_of=duplicate,
    )


def _reply(decision: Decision, status: str) -> str:
    if status == "rejected":
        if decision.wants_reply:
            return "a rejection reply (within the reply limits)"
        return f"no reply: {decision.reply_withheld or 'none for this step'}"
    if status == "item":
        return (f"no acknowledgement: {decision.reply_withheld}" if decision.reply_withheld
                else "an acknowledgement, if reply.acknowledgeItems is on")
    return "none"
