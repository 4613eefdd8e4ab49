"""What mail and idle mailboxes cost at AWS list prices, from requests and durations measured on the local
stack.

    python bench/cost.py [--mails 500] [--idle-runs 20]

Three workloads run through the real handlers (the local runner, as `mailintake poll` does):
1. ``plain``: N plain mails (bench/common.plain_mail) fetched over IMAP+TLS and processed;
2. ``mixed``: N mails of the peer benchmark's mixed mailbox (../shared/bench-peers seed_mailbox.py: a third
   with an HTML alternative, a tenth with a 50 KB attachment);
3. ``idle``: the same mailbox, now empty, fetched ``--idle-runs`` times by one warm container (as a
   mailbox's schedule does between mails), to price an idle mailbox per month at 1- and 5-minute intervals.

Measured in this process, per workload: every AWS request (botocore, so boto3 and pynamodb alike), the
sizes of what each DynamoDB request writes and reads (for request units), SQS payload sizes (billed per
64 KB), each handler invocation's wall time and CPU time, and the bytes the handlers log (INFO, as deployed,
with the EMF metrics line). Priced with LIST_PRICES (us-east-1; see PRICE_DATE), free tiers left out.

Lambda's billed duration is not the local wall time: here moto and Dovecot answer in a millisecond from the
same two cores, in AWS each request waits on the network, and a 512 MB function gets about 512/1769 of a
vCPU. So duration is modelled as the measured CPU time scaled to the function's share of a vCPU plus, for
each measured request, a typical in-region latency (LATENCY_MS; the mail server's round trips for the fetch
at MAIL_SERVER_RTT_MS each), and the larger of that and the local wall time is billed.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from common import ROOT, deliver_plain, local_settings

PRICE_DATE = "2026-10 (AWS public price pages, us-east-1; DynamoDB on-demand after its November 2024 cut)"
LIST_PRICES = {
    "lambda_gb_second": 0.0000166667,  # x86_64
    "lambda_request": 0.20 / 1e6,
    "dynamodb_wru": 0.625 / 1e6,  # on-demand write request unit
    "dynamodb_rru": 0.125 / 1e6,  # on-demand read request unit
    "s3_put": 0.005 / 1000,  # PUT, COPY, POST, LIST
    "s3_get": 0.0004 / 1000,  # GET and others
    "sqs_fifo_request": 0.50 / 1e6,  # per 64 KB chunk of a request
    "secrets_api_call": 0.05 / 10000,
    "secret_month": 0.40,  # per secret stored
    "scheduler_invocation": 1.00 / 1e6,
    "logs_ingested_gb": 0.50,
    "xray_trace_recorded": 5.00 / 1e6,
}
MEMORY_MB = {"fetch": 512, "process": 512}  # template.yaml


def traced_functions() -> set[str]:
    """The functions Lambda records an X-Ray trace of every invocation for, as template.yaml deploys them."""
    from mailintake.localstack.resources import load_template

    template = load_template(ROOT)
    defaults = {name: spec.get("Default") for name, spec in template.get("Parameters", {}).items()}
    tracing_default = template.get("Globals", {}).get("Function", {}).get("Tracing", "PassThrough")
    traced = set()
    for function, resource in (("fetch", "FetchFunction"), ("process", "ProcessFunction")):
        mode = template["Resources"][resource]["Properties"].get("Tracing", tracing_default)
        if isinstance(mode, dict) and "Ref" in mode:
            mode = defaults.get(mode["Ref"])
        if mode == "Active":
            traced.add(function)
    return traced


TRACED = traced_functions()
FULL_VCPU_MB = 1769  # Lambda: 1,769 MB of memory gets one vCPU; less gets a share of it
# Typical in-region latencies of the requests, milliseconds (p50 as commonly observed from Lambda).
LATENCY_MS = {
    "dynamodb:TransactWriteItems": 15, "dynamodb:BatchGetItem": 8, "dynamodb:Query": 8,
    "dynamodb": 6, "s3:PutObject": 25, "s3:GetObject": 15, "s3": 20, "sqs": 10, "secretsmanager": 15,
    "ses": 30, "scheduler": 20,
}
MAIL_SERVER_RTT_MS = 30  # to the mail server, per IMAP round trip (connect, TLS, login, select, search, ...)
# TCP connect, TLS handshake (2), CAPABILITY, LOGIN, SELECT, UID SEARCH (the logout is not waited on)
IMAP_ROUND_TRIPS_IDLE = 7
LAMBDA_LOG_BYTES_PER_INVOCATION = 350  # START, END and REPORT lines Lambda writes itself
LOG_EVENT_OVERHEAD_BYTES = 26  # CloudWatch Logs bills each event's size plus 26 bytes
SECONDS_PER_MONTH = 30 * 24 * 3600


@dataclass
class Usage:
    requests: Counter[str] = field(default_factory=Counter)
    wru: float = 0.0
    rru: float = 0.0
    sqs_billed: int = 0
    invocations: Counter[str] = field(default_factory=Counter)
    wall: Counter[str] = field(default_factory=Counter)  # seconds per function
    cpu: Counter[str] = field(default_factory=Counter)
    request_ms: Counter[str] = field(default_factory=Counter)  # modelled AWS latency per function
    log_bytes: int = 0
    log_lines: int = 0


def _kb(size: int, unit: int = 1024) -> int:
    return max(1, math.ceil(size / unit))


def _item_bytes(item: dict[str, Any]) -> int:
    from mailintake.store import _value_size

    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _write_units(operation: str, params: dict[str, Any]) -> float:
    """DynamoDB write request units of one request: 1 per KB written (2 in a transaction), plus the by-kind
    index's copy of a record that has ``kind`` (a standard write, 1 per KB)."""
    def put(item: dict[str, Any], factor: int) -> float:
        size = _item_bytes(item)
        return factor * _kb(size) + (_kb(size) if "kind" in item else 0)

    if operation == "PutItem":
        return put(params["Item"], 1)
    if operation in ("UpdateItem", "DeleteItem"):
        return 1.0
    if operation == "BatchWriteItem":
        return sum(put(r["PutRequest"]["Item"], 1) if "PutRequest" in r else 1.0
                   for requests in params["RequestItems"].values() for r in requests)
    if operation == "TransactWriteItems":
        units = 0.0
        for op in params["TransactItems"]:
            ((kind, action),) = op.items()
            units += put(action["Item"], 2) if kind == "Put" else 2.0
        return units
    return 0.0


def _read_units(operation: str, params: dict[str, Any], response: dict[str, Any]) -> float:
    """Read request units: per 4 KB read, half for an eventually consistent read."""
    factor = 1.0 if params.get("ConsistentRead") else 0.5
    if operation == "GetItem":
        return factor * _kb(_item_bytes(response.get("Item", {})), 4096)
    if operation in ("Query", "Scan"):
        return factor * _kb(sum(_item_bytes(i) for i in response.get("Items", [])), 4096)
    if operation == "BatchGetItem":
        return sum(0.5 * _kb(_item_bytes(i), 4096) for items in response.get("Responses", {}).values()
                   for i in items)
    return 0.0


def _sqs_billed(operation: str, params: dict[str, Any], response: dict[str, Any]) -> int:
    """SQS bills each 64 KB chunk of a request's payload as one request."""
    if operation == "SendMessageBatch":
        size = sum(len(e["MessageBody"].encode()) for e in params["Entries"])
    elif operation == "ReceiveMessage":
        size = sum(len(m["Body"].encode()) for m in response.get("Messages", []))
    else:
        size = 0
    return _kb(size, 64 * 1024)


@contextmanager
def measured(usage: Usage) -> Iterator[None]:
    """Count requests (and their units) and time handler invocations, by function, into ``usage``."""
    from botocore.client import BaseClient

    from mailintake import localrun

    original_call = BaseClient._make_api_call
    original_invoke = localrun.invoke
    current = threading.local()
    lock = threading.Lock()

    def counting(self: BaseClient, operation: str, params: Any) -> Any:
        service = self.meta.service_model.service_name
        response = original_call(self, operation, params)
        name = f"{service}:{operation}"
        with lock:
            usage.requests[name] += 1
            if service == "dynamodb":
                usage.wru += _write_units(operation, params)
                usage.rru += _read_units(operation, params, response)
            elif service == "sqs":
                usage.sqs_billed += _sqs_billed(operation, params, response)
            function = getattr(current, "function", None)
            if function is not None:
                usage.request_ms[function] += LATENCY_MS.get(name, LATENCY_MS.get(service, 10))
        return response

    def timed(name: str, event: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        current.function = name
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return original_invoke(name, event, *args, **kwargs)
        finally:
            with lock:
                usage.invocations[name] += 1
                usage.wall[name] += time.perf_counter() - wall
                usage.cpu[name] += time.thread_time() - cpu
            current.function = None

    BaseClient._make_api_call = counting  # type: ignore[method-assign]
    localrun.invoke = timed
    try:
        yield
    finally:
        BaseClient._make_api_call = original_call  # type: ignore[method-assign]
        localrun.invoke = original_invoke


class _LogCounter(io.TextIOBase):
    """Where the handlers' log lines and EMF metrics go while measuring: counted, not shown."""

    def __init__(self, usage: Usage) -> None:
        self.usage = usage

    def write(self, text: str) -> int:
        self.usage.log_bytes += len(text.encode())
        self.usage.log_lines += text.count("\n")
        return len(text)


@contextmanager
def logs_counted(usage: Usage) -> Iterator[None]:
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = _LogCounter(usage)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def billed_seconds(usage: Usage, function: str, extra_ms: float = 0.0) -> float:
    """The duration billed for all of ``function``'s invocations: the modelled AWS duration (CPU scaled to the
    function's vCPU share, plus request latencies) or the local wall time, whichever is longer."""
    share = min(1.0, MEMORY_MB[function] / FULL_VCPU_MB)
    modelled = usage.cpu[function] / share + (usage.request_ms[function] + extra_ms) / 1000
    return max(modelled, usage.wall[function])


def costs(usage: Usage, extra_fetch_ms: float = 0.0) -> dict[str, float]:
    """Dollars per service for what ``usage`` holds."""
    p = LIST_PRICES
    gb_seconds = sum(billed_seconds(usage, f, extra_fetch_ms if f == "fetch" else 0.0) * MEMORY_MB[f] / 1024
                     for f in usage.invocations)
    invocations = sum(usage.invocations.values())
    s3_puts = sum(n for op, n in usage.requests.items() if op in ("s3:PutObject", "s3:UploadPart",
                                                                   "s3:CreateMultipartUpload",
                                                                   "s3:CompleteMultipartUpload"))
    s3_gets = sum(n for op, n in usage.requests.items() if op.startswith("s3:")) - s3_puts
    secrets = sum(n for op, n in usage.requests.items() if op.startswith("secretsmanager:"))
    log_bytes = usage.log_bytes + invocations * LAMBDA_LOG_BYTES_PER_INVOCATION + (
        usage.log_lines + 3 * invocations) * LOG_EVENT_OVERHEAD_BYTES
    return {
        "Lambda duration": gb_seconds * p["lambda_gb_second"],
        "Lambda requests": invocations * p["lambda_request"],
        "DynamoDB writes": usage.wru * p["dynamodb_wru"],
        "DynamoDB reads": usage.rru * p["dynamodb_rru"],
        "S3 requests": s3_puts * p["s3_put"] + s3_gets * p["s3_get"],
        "SQS requests": usage.sqs_billed * p["sqs_fifo_request"],
        "Secrets Manager calls": secrets * p["secrets_api_call"],
        "CloudWatch Logs": log_bytes / 1e9 * p["logs_ingested_gb"],
        "X-Ray traces": sum(n for f, n in usage.invocations.items() if f in TRACED) * p["xray_trace_recorded"],
    }


def report(title: str, usage: Usage, per: float, unit: str, extra_fetch_ms: float = 0.0,
           scale: float = 1.0) -> float:
    lines = costs(usage, extra_fetch_ms)
    total = sum(lines.values()) * scale / per
    print(f"\n{title}: ${total:.4f} {unit}")
    print("  requests: " + ", ".join(f"{op} {n / per:.3g}" for op, n in usage.requests.most_common()))
    print(f"  DynamoDB WRU {usage.wru / per:.3g}, RRU {usage.rru / per:.3g}; SQS billed {usage.sqs_billed / per:.3g};"
          f" handlers' log bytes {usage.log_bytes / per:.0f}, all {unit}")
    for function in sorted(usage.invocations):
        n = usage.invocations[function]
        extra = extra_fetch_ms if function == "fetch" else 0.0
        print(f"  {function}: {n} invocations, local wall {usage.wall[function] / n * 1000:.1f} ms, CPU "
              f"{usage.cpu[function] / n * 1000:.1f} ms, billed (modelled) "
              f"{billed_seconds(usage, function, extra) / n * 1000:.1f} ms each at {MEMORY_MB[function]} MB")
    for name, dollars in sorted(lines.items(), key=lambda kv: -kv[1]):
        print(f"    {name:24} ${dollars * scale / per:.5f}")
    return total


def fresh_stack(settings: Any) -> Any:
    from aws_lambda_powertools.utilities import parameters

    from mailintake import directory, system_settings
    from mailintake.localrun import fresh_containers
    from mailintake.localstack import dovecot, resources
    from mailintake.localstack.accounts import local_mailbox

    resources.reset(ROOT)
    parameters.clear_caches()  # a new stack gives the mailbox a new password
    directory.forget()
    system_settings.invalidate()
    fresh_containers()
    dovecot.clear_mail(ROOT)
    return local_mailbox(ROOT, settings, "cost", "imap", "ssl")


def password(box: Any) -> str:
    from aws_lambda_powertools.utilities import parameters

    return str(parameters.get_secret(box.secret_name, force_fetch=True))


def measure_mail(settings: Any, seed: Callable[[Any], None]) -> Usage:
    from mailintake.localrun import run_cycle

    box = fresh_stack(settings)
    seed(box)
    usage = Usage()
    with measured(usage), logs_counted(usage):
        run_cycle(settings)
    return usage


def seed_mixed(count: int) -> Callable[[Any], None]:
    def seed(box: Any) -> None:
        from mailintake.localstack import dovecot

        info = dovecot.info(ROOT)
        script = ROOT.parent / "shared" / "bench-peers" / "django-helpdesk" / "seed_mailbox.py"
        subprocess.run([sys.executable, str(script), info.host, str(info.imap_port), box.username, password(box),
                        str(count)], check=True, capture_output=True)
    return seed




def measure_idle(settings: Any, runs: int, minutes: int) -> Usage:
    """A mailbox with nothing new, fetched ``runs`` times by one warm container (the first run, which
    starts the container, is not counted), as its schedule runs it every ``minutes``: what a container
    caches for less than that (the settings snapshot, ConfigCacheSeconds; the password, an hour) has
    expired at each run and is read again, as in AWS."""
    from aws_lambda_powertools.utilities.parameters.base import DEFAULT_PROVIDERS

    from mailintake import localrun
    from mailintake.fetching import PASSWORD_MAX_AGE_SECONDS

    fresh_stack(settings)
    event = {"mailbox": "cost"}
    localrun.invoke("fetch", event)
    usage = Usage()
    with measured(usage), logs_counted(usage):
        for n in range(runs):
            if minutes * 60 >= settings.config_cache_seconds:
                localrun.invalidate_config()
            if (n * minutes * 60) % PASSWORD_MAX_AGE_SECONDS < minutes * 60 and "secrets" in DEFAULT_PROVIDERS:
                # The cached password is older than its max age by now (the provider and its client stay).
                DEFAULT_PROVIDERS["secrets"].clear_cache()
            localrun.invoke("fetch", event)
    return usage


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mails", type=int, default=500)
    parser.add_argument("--idle-runs", type=int, default=20)
    parser.add_argument("--idle-only", action="store_true", help="only the idle mailbox")
    args = parser.parse_args()

    settings = local_settings()
    # As deployed: INFO logs and the EMF metrics line (counted, not shown); no X-Ray daemon here.
    os.environ["POWERTOOLS_LOG_LEVEL"] = "INFO"
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "false"
    print(f"prices: us-east-1 list prices, {PRICE_DATE}; free tiers left out; X-Ray traces of "
          f"{', '.join(sorted(TRACED)) or 'no function'} (template.yaml)")

    plain_cost = mixed_cost = float("nan")
    if not args.idle_only:
        plain = measure_mail(settings, lambda box: deliver_plain(ROOT, box.username, password(box), args.mails))
        plain_cost = report(f"plain mail ({args.mails} mails)", plain, args.mails / 1000, "per 1,000 mails")
        mixed = measure_mail(settings, seed_mixed(args.mails))
        mixed_cost = report(f"mixed mailbox ({args.mails} mails: 1/3 HTML, 1/10 with 50 KB attachment)", mixed,
                            args.mails / 1000, "per 1,000 mails")

    imap_ms = IMAP_ROUND_TRIPS_IDLE * MAIL_SERVER_RTT_MS * args.idle_runs
    results = {}
    for minutes in (1, 5):
        idle = measure_idle(settings, args.idle_runs, minutes)
        runs_per_month = SECONDS_PER_MONTH / 60 / minutes
        lines = costs(idle, imap_ms)
        scheduler = runs_per_month * LIST_PRICES["scheduler_invocation"]
        per_run = sum(lines.values()) / args.idle_runs
        results[minutes] = per_run * runs_per_month + scheduler
        print(f"\nidle mailbox, every {minutes} min ({runs_per_month:,.0f} runs a month): "
              f"${results[minutes]:.4f} per month (the secret's storage, ${LIST_PRICES['secret_month']:.2f}, aside)")
        for name, dollars in sorted(lines.items(), key=lambda kv: -kv[1]):
            print(f"    {name:24} ${dollars / args.idle_runs * runs_per_month:.5f}")
        print(f"    {'EventBridge Scheduler':24} ${scheduler:.5f}")
        if "fetch" in TRACED:
            xray = lines["X-Ray traces"] / args.idle_runs * runs_per_month
            print(f"  without X-Ray traces of idle runs (FetchTracing=PassThrough, the default): "
                  f"${results[minutes] - xray:.4f} per month")
        else:
            traces = runs_per_month * LIST_PRICES["xray_trace_recorded"]
            print(f"  with FetchTracing=Active (a trace of every idle run): ${results[minutes] + traces:.4f} a month")
        n = idle.invocations["fetch"]
        print("  per idle run: " + ", ".join(f"{op} {c / n:.2f}" for op, c in idle.requests.most_common())
              + f"; local wall {idle.wall['fetch'] / n * 1000:.1f} ms, CPU {idle.cpu['fetch'] / n * 1000:.1f} ms, "
              f"billed (modelled, with {IMAP_ROUND_TRIPS_IDLE} mail-server round trips of {MAIL_SERVER_RTT_MS} ms) "
              f"{billed_seconds(idle, 'fetch', imap_ms) / n * 1000:.1f} ms; log bytes {idle.log_bytes / n:.0f}")

    print(f"\ncost: plain ${plain_cost:.4f} and mixed ${mixed_cost:.4f} per 1,000 mails (goal 0.02); idle mailbox "
          f"${results[1]:.4f}/month at 1 min, ${results[5]:.4f}/month at 5 min (goal 0.10 at 5 min)")


if __name__ == "__main__":
    main()
