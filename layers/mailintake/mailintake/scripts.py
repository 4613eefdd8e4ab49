"""Guard and activity scripts: admin-provided Python hooks, named ``module:function``, loaded by import.

In Lambda the scripts layer is unpacked under ``/opt/python``, which is on ``sys.path``; locally the
``mailintake_scripts`` package is installed with the project. Any importable module works.

API (see docs/intake.md):

* ``guard(message: MessageView) -> None | Reject | str | bool``: None or True accepts; a :class:`Reject`,
  a string (the reason) or False rejects.
* ``activity(message: MessageView, plan: Plan) -> None``: changes ``plan`` in place.

A script runs with a time budget. In the main thread (Lambda's, and the local runner's) a SIGALRM
interrupts it; elsewhere it runs in a worker thread that is abandoned when the budget is spent, since a
thread cannot be killed: a script stuck in a loop there keeps using CPU until the container ends. A
script that raises or runs out of time fails the message (status ``failed``), never the batch.
"""

from __future__ import annotations

import importlib
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, cast


@dataclass(frozen=True)
class AttachmentInfo:
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True)
class MessageView:
    """What a script sees of a message (read-only)."""

    mailbox: str
    system_mailbox: bool
    workspace: str  # where it would go: the mailbox's workspace, or the default one
    sender: str
    sender_name: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    text: str
    html: str | None
    headers: Mapping[str, str]
    attachments: tuple[AttachmentInfo, ...]
    size: int  # bytes of the raw message
    params: Mapping[str, str] = field(default_factory=dict)  # the `script.*` system settings


@dataclass
class Plan:
    """What the message will do; an activity script may change any of it."""

    workspace: str
    action: str = "item"  # item | comment
    item_number: int | None = None  # the item a comment goes to
    item_type: str | None = None
    priority: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    readers: set[str] = field(default_factory=set)
    editors: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Reject:
    reason: str


class ScriptFailure(Exception):
    """A script raised, timed out, or could not be loaded."""


class _Timeout(BaseException):
    # BaseException, so a script's own `except Exception` cannot swallow the interruption.
    pass


def load(spec: str) -> Callable[..., Any]:
    module_name, sep, function_name = spec.partition(":")
    if not sep:
        raise ScriptFailure(f"script {spec!r} is not module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ScriptFailure(f"script {spec}: cannot import {module_name}: {type(exc).__name__}: {exc}") from exc
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ScriptFailure(f"script {spec}: {module_name} has no function {function_name}")
    return cast(Callable[..., Any], function)


def call(spec: str, timeout: float, *args: Any) -> Any:
    """Call the script ``spec`` with ``args`` within ``timeout`` seconds; ScriptFailure otherwise."""
    function = load(spec)
    if timeout <= 0:
        timeout = 1
    try:
        if threading.current_thread() is threading.main_thread():
            return _call_with_alarm(function, timeout, args)
        return _call_in_thread(function, timeout, args)
    except _Timeout:
        raise ScriptFailure(f"script {spec} ran past its time budget of {timeout:g} s") from None
    except ScriptFailure:
        raise
    except Exception as exc:
        raise ScriptFailure(f"script {spec} raised {type(exc).__name__}: {exc}") from exc


def _call_with_alarm(function: Callable[..., Any], timeout: float, args: tuple[Any, ...]) -> Any:
    def expire(signum: int, frame: FrameType | None) -> None:
        raise _Timeout()

    previous_handler = signal.signal(signal.SIGALRM, expire)
    # Someone else's timer (pytest-timeout, say) is put back afterwards with what is left of it.
    previous_delay, previous_interval = signal.setitimer(signal.ITIMER_REAL, timeout)
    started = time.monotonic()
    try:
        return function(*args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay:
            left = max(previous_delay - (time.monotonic() - started), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left, previous_interval)


def _call_in_thread(function: Callable[..., Any], timeout: float, args: tuple[Any, ...]) -> Any:
    result: list[Any] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(function(*args))
        except BaseException as exc:
            error.append(exc)

    worker = threading.Thread(target=run, name="mailintake-script", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise _Timeout()
    if error:
        raise error[0]
    return result[0] if result else None


def guard_verdict(result: Any) -> str | None:
    """The rejection reason a guard's return value means, or None for accept."""
    if result is None or result is True:
        return None
    if isinstance(result, Reject):
        return result.reason or "rejected by the guard script"
    if result is False:
        return "rejected by the guard script"
    if isinstance(result, str):
        return result or "rejected by the guard script"
    raise ScriptFailure(f"guard script returned {type(result).__name__}; expected None, Reject, str or bool")
