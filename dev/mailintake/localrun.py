"""The docker-less local runner: the real handlers in functions/, called with the events Lambda sends.

``sam local invoke`` needs a Docker engine; this gives the same thing without one. A scheduled cycle
is: every enabled schedule in the group invokes the fetch handler with its own input, then the intake
queue is drained in Lambda's SQS event shape until no visible message is left.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from mailintake.aws_clients import client
from mailintake.batches import BatchFailed
from mailintake.localstack.resources import load_template
from mailintake.mailboxes import scheduled_fetch_events
from mailintake.runtime import Runtime
from mailintake.settings import Settings

FUNCTIONS = {"fetch": "FetchFunction", "process": "ProcessFunction"}


@cache
def function_limits(name: str) -> tuple[int, int]:
    """(timeout seconds, memory MB) of a function, as template.yaml declares them."""
    template = load_template(project_root())
    defaults = (template.get("Globals") or {}).get("Function", {})
    properties = template["Resources"][FUNCTIONS[name]]["Properties"]
    return (int(properties.get("Timeout", defaults.get("Timeout", 3))),
            int(properties.get("MemorySize", defaults.get("MemorySize", 128))))


def project_root() -> Path:
    """The checkout holding template.yaml and functions/: $MAILINTAKE_ROOT, the cwd, or the package's own."""
    candidates = [os.environ.get("MAILINTAKE_ROOT"), os.getcwd(), str(Path(__file__).resolve().parents[2])]
    for candidate in candidates:
        if candidate and (Path(candidate) / "functions").is_dir() and (Path(candidate) / "template.yaml").is_file():
            return Path(candidate)
    raise FileNotFoundError("cannot find the project root (template.yaml and functions/); set MAILINTAKE_ROOT")


@dataclass
class LocalContext:
    """The LambdaContext fields handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))


class Containers:
    """The handler containers this process runs: functions/<name>/app.py imported once per (name, instance).

    Each instance is a separate import, with its own module state and so its own
    :class:`mailintake.runtime.Runtime`, like a separate Lambda container; it lives until :meth:`fresh`.
    """

    def __init__(self) -> None:
        self._modules: dict[tuple[str, int], ModuleType] = {}
        self._lock = threading.Lock()

    def get(self, name: str, instance: int = 0) -> ModuleType:
        with self._lock:
            module = self._modules.get((name, instance))
            if module is None:
                module = self._modules[(name, instance)] = _import_function(name, instance)
            return module

    def runtimes(self) -> list[Runtime]:
        with self._lock:
            return [module.runtime for module in self._modules.values()]

    def fresh(self) -> None:
        """Retire every container: the next invocation of each starts a new one (a cold start)."""
        with self._lock:
            self._modules.clear()


# The containers of this process's runs, tests and benchmarks. Dev code: the runtime code never sees it.
CONTAINERS = Containers()


def load_function(name: str, instance: int = 0) -> ModuleType:
    """The handler module of container ``instance`` of function ``name`` (imported on first use)."""
    return CONTAINERS.get(name, instance)


def fresh_containers() -> None:
    """Dev, test and bench entry point: start every handler container afresh (after the stack was reset)."""
    CONTAINERS.fresh()


def forget_users(address: str | None = None) -> None:
    """Drop one user (or every one) from the caches of the containers (mailintake.directory.forget)."""
    for runtime in CONTAINERS.runtimes():
        runtime.users.forget(address)


def invalidate_config() -> None:
    """Drop the containers' settings snapshots (mailintake.system_settings.invalidate)."""
    for runtime in CONTAINERS.runtimes():
        runtime.config.clear()


def _import_function(name: str, instance: int) -> ModuleType:
    """Import functions/<name>/app.py as Lambda would, under a private module name."""
    path = project_root() / "functions" / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"mailintake_function_{name}_{instance}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # Keep stdout for the CLI's own output: handler logs go to stderr locally. Whatever sys.stderr is when
    # a line is written, not when the handler was loaded: a test's captured stderr is closed after it.
    for handler in logging.getLogger(os.environ.get("POWERTOOLS_SERVICE_NAME", "mailintake")).handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler.stream, _Stderr):
            handler.setStream(_Stderr())
    return module


class _Stderr:
    """sys.stderr as it is at each write."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def invoke(name: str, event: dict[str, Any], timeout_seconds: int | None = None, instance: int = 0) -> Any:
    timeout, memory = function_limits(name)
    handler: Callable[[dict[str, Any], LocalContext], Any] = load_function(name, instance).lambda_handler
    context = LocalContext(f"mailintake-{FUNCTIONS[name]}", memory, timeout_seconds or timeout)
    # Callers running locally set POWERTOOLS_METRICS_DISABLED: EMF metrics would print to stdout.
    return handler(event, context)


def sqs_event(messages: Sequence[Mapping[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """Lambda's event source mapping shape for SQS records."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


@dataclass
class CycleReport:
    fetches: list[dict[str, Any]] = field(default_factory=list)
    processed: int = 0
    failed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, processed: int, failed: int) -> None:
        with self._lock:
            self.processed += processed
            self.failed += failed


def _process_batch(settings: Settings, queue_arn: str, report: CycleReport, handler_instance: int) -> bool:
    """Receive one batch and hand it to the process handler, as the event source mapping does."""
    sqs = client("sqs", settings.region)
    received = sqs.receive_message(
        QueueUrl=settings.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
    ).get("Messages", [])
    if not received:
        return False
    try:
        result = invoke("process", sqs_event(received, queue_arn, settings.region), instance=handler_instance)
    except BatchFailed:
        # The handler raises when every record of the batch failed; Lambda then returns them all to the queue.
        result = {"batchItemFailures": [{"itemIdentifier": m["MessageId"]} for m in received]}
    failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
    done = [m for m in received if m["MessageId"] not in failed]
    report.count(len(done), len(failed))
    if done:
        # The event source mapping deletes what the function did not report as failed; the failed ones
        # come back after the visibility timeout, and after maxReceiveCount go to the dead-letter queue.
        sqs.delete_message_batch(
            QueueUrl=settings.queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
        )
    return True


def _queue_arn(settings: Settings) -> str:
    attributes = client("sqs", settings.region).get_queue_attributes(
        QueueUrl=settings.queue_url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def drain_queue(settings: Settings, report: CycleReport, fetching_done: threading.Event | None = None,
                handler_instance: int = 0) -> None:
    """Process batches until the queue is empty (and, when given, the fetches are done)."""
    queue_arn = _queue_arn(settings)
    while True:
        if _process_batch(settings, queue_arn, report, handler_instance):
            continue
        if fetching_done is None or fetching_done.is_set():
            # One more look: a fetch may have handed over a batch just before it finished.
            if not _process_batch(settings, queue_arn, report, handler_instance):
                return
        else:
            time.sleep(0.02)


def run_cycle(settings: Settings, workers: int = 1) -> CycleReport:
    """One scheduled cycle, to the end: every enabled mailbox fetched, the queue drained.

    As in AWS, processing runs while the fetches are still handing over mail: ``workers`` concurrent
    consumers (each its own instance of the process handler, like separate Lambda containers; the FIFO
    queue gives each message group to one consumer at a time).
    """
    report = CycleReport()
    fetching_done = threading.Event()
    errors: list[BaseException] = []

    def consume(instance: int) -> None:
        try:
            drain_queue(settings, report, fetching_done, instance)
        except BaseException as exc:  # surfaced in the calling thread below
            errors.append(exc)

    consumers = [threading.Thread(target=consume, args=(i,), daemon=True) for i in range(workers)]
    for consumer in consumers:
        consumer.start()
    try:
        # Sorted by mailbox, so a local cycle runs in the same order every time.
        for event in sorted(scheduled_fetch_events(settings), key=lambda e: str(e.get("mailbox"))):
            report.fetches.append(invoke("fetch", event))
    finally:
        fetching_done.set()
        for consumer in consumers:
            consumer.join()
    if errors:
        raise errors[0]
    return report
