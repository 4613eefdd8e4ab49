"""Example activity: route mail to a workspace by keyword or recipient, and set its priority.

Configure: ``mailintake scripts set --activity mailintake_scripts.routing:route`` and the rules in the
system setting ``script.routes``, one per line, first match wins, ``#`` comments::

    subject:outage|down      -> ops priority=high
    to:billing@tracker.example -> billing
    body:invoice             -> billing type=question

``subject:``, ``body:``, ``to:`` (To and CC) and ``from:`` take a case-insensitive regular expression;
after ``->`` come the workspace (``-`` keeps it) and optional ``priority=``/``type=``/``<field>=``.
Independently, a subject containing ``urgent`` or ``asap`` gets priority high. Replies to existing
items (comments) are left alone.
"""

from __future__ import annotations

import re

from mailintake.scripts import MessageView, Plan

URGENT = re.compile(r"\b(urgent|asap|dringend)\b", re.IGNORECASE)


def _texts(message: MessageView, where: str) -> list[str]:
    if where == "subject":
        return [message.subject]
    if where == "body":
        return [message.text]
    if where == "to":
        return [*message.to, *message.cc]
    if where == "from":
        return [message.sender]
    raise ValueError(f"script.routes: unknown field {where!r} (subject, body, to, from)")


def route(message: MessageView, plan: Plan) -> None:
    if plan.action == "comment":
        return
    if URGENT.search(message.subject):
        plan.priority = "high"
    for raw in message.params.get("script.routes", "").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        condition, arrow, target = line.partition("->")
        where, colon, expression = condition.strip().partition(":")
        if not arrow or not colon:
            raise ValueError(f"script.routes: cannot read {line!r}")
        if not any(re.search(expression.strip(), t, re.IGNORECASE) for t in _texts(message, where.strip().lower())):
            continue
        workspace, *assignments = target.split()
        if workspace != "-":
            plan.workspace = workspace
        for assignment in assignments:
            name, _, value = assignment.partition("=")
            if name == "priority":
                plan.priority = value
            elif name == "type":
                plan.item_type = value
            else:
                plan.fields[name] = value
        return
