"""Worst-case mail: CPU seconds and peak memory of the process handler for generated pathological mail.

    python bench/worst_case.py [--sizes 1,limit] [--families a,b] [--cpu-limit 150] [--parse-only]

Each family is a shape an attacker (or a broken mailer) can send at any size: deep nesting of HTML, of
multipart and of message/rfc822; many parts; floods of encoded words, quote markers, headers, recipients;
long lines; and, for comparison, ordinary shapes (flat HTML, plain text, one attachment). Every mail is
generated at each size asked for (default 1 MB and the size limit, 25 MiB), stored in the local stack's
bucket as the fetch function stores it, and handed to the process handler (``functions/process/app.py``
through ``mailintake.localrun``, as Lambda calls it) in a fresh interpreter, like a cold Lambda container.

The child measures its own CPU time (user + system, ``resource.getrusage``) around the handler call alone,
not the imports, and its peak resident set (VmHWM, which includes the interpreter and imports, ~60 MB).
Wall time is not reported: the machine is shared. A child over ``--cpu-limit`` seconds of CPU is stopped
by RLIMIT_CPU and shown as ``>limit``. The outcome column is what the ledger recorded.

Goal (issue 10): no family over 2 s of CPU per MB, none over 200 MB peak. ``--parse-only`` times
``parse_message`` in this process instead (no stack needed; for profiling a family quickly).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator

from common import ROOT, VMHWM

MB = 1_000_000

# --------------------------------------------------------------------------------------------------------
# Families: each makes a mail of about ``size`` bytes (never more), CRLF line ends as IMAP delivers them.


def _head(family: str, extra: bytes = b"", content_type: bytes = b"text/plain; charset=utf-8") -> bytes:
    return (b"From: Mallory <mallory@example.org>\r\nTo: support@tracker.example\r\n"
            b"Subject: Worst case: " + family.encode() + b"\r\nDate: Tue, 24 Nov 2026 09:12:00 +0000\r\n"
            b"Message-ID: <" + uuid.uuid4().hex.encode() + b"@worst.example>\r\nMIME-Version: 1.0\r\n"
            + extra + b"Content-Type: " + content_type + b"\r\n\r\n")


def _fill(head: bytes, unit: Callable[[int], bytes], tail: bytes, size: int, line: int = 0) -> bytes:
    """head + unit(0) + unit(1) + ... + tail, as many units as fit in ``size``; CRLF every ``line`` bytes."""
    parts = [head]
    total = len(head) + len(tail)
    run = 0
    i = 0
    while True:
        chunk = unit(i)
        if line and run + len(chunk) > line:
            chunk = b"\r\n" + chunk
            run = 0
        if total + len(chunk) > size:
            break
        parts.append(chunk)
        total += len(chunk)
        run += len(chunk)
        i += 1
    parts.append(tail)
    return b"".join(parts)


def html_deep(size: int) -> bytes:
    # Opened, never closed: 300,000 of these in 1.5 MB took ~240 s in parse_message.
    return _fill(_head("html-deep", content_type=b"text/html; charset=utf-8") + b"<html><body>",
                 lambda i: b"<div>", b"deep text</body></html>\r\n", size, line=900)


def html_deep_quote(size: int) -> bytes:
    # Nested quotes with a little text each: what quoting.cut_html_quotes looks into.
    return _fill(_head("html-deep-quote", content_type=b"text/html; charset=utf-8") + b"<html><body><p>Reply</p>",
                 lambda i: b'<blockquote type="cite">On Mon, Bob wrote:<br>', b"end</body></html>\r\n", size,
                 line=900)


def html_malformed(size: int) -> bytes:
    # Tags that never close ("<a " over and over): Python's HTMLParser rescans the rest at each one.
    return _fill(_head("html-malformed", content_type=b"text/html; charset=utf-8") + b"<html><body><p>hi</p>",
                 lambda i: b"<a ", b"\r\n", size, line=900)


def html_flat(size: int) -> bytes:
    para = (b"<p>The printer on the <b>second floor</b> jams on every duplex job; <i>single-sided</i> jobs "
            b"work fine. See <a href=\"https://example.org/kb/42\">the article</a>.</p>\r\n")
    return _fill(_head("html-flat", content_type=b"text/html; charset=utf-8") + b"<html><body>",
                 lambda i: para, b"</body></html>\r\n", size)


def html_long_line(size: int) -> bytes:
    return _fill(_head("html-long-line", content_type=b"text/html; charset=utf-8") + b"<html><body><p>",
                 lambda i: b"word <b>bold</b> ", b"</p></body></html>\r\n", size)


def multipart_deep(size: int) -> bytes:
    # Alternately mixed and alternative, each level opening the next; the text leaf at the bottom.
    kinds = (b"mixed", b"alternative")
    return _fill(_head("multipart-deep", content_type=b"multipart/mixed; boundary=\"b0\"") + b"--b0\r\n",
                 lambda i: b"Content-Type: multipart/" + kinds[(i + 1) % 2] + b"; boundary=\"b%d\"\r\n\r\n--b%d\r\n"
                 % (i + 1, i + 1),
                 b"Content-Type: text/plain\r\n\r\nthe text at the bottom\r\n", size)


def rfc822_deep(size: int) -> bytes:
    return _fill(_head("rfc822-deep", content_type=b"message/rfc822"),
                 lambda i: b"From: level%d@example.org\r\nSubject: level %d\r\nContent-Type: message/rfc822\r\n\r\n"
                 % (i, i),
                 b"From: bottom@example.org\r\nSubject: bottom\r\n\r\nthe text at the bottom\r\n", size)


def many_attachments(size: int) -> bytes:
    return _fill(_head("many-attachments", content_type=b"multipart/mixed; boundary=\"b\"")
                 + b"--b\r\nContent-Type: text/plain\r\n\r\nMany files.\r\n",
                 lambda i: b"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; "
                 b"filename=\"f%d.bin\"\r\n\r\nx\r\n" % i, b"--b--\r\n", size)


def many_inline_parts(size: int) -> bytes:
    # Plain and HTML body parts side by side in a multipart/mixed: all of them are the body.
    def unit(i: int) -> bytes:
        if i % 2:
            return b"--b\r\nContent-Type: text/html\r\n\r\n<p>part %d</p>\r\n" % i
        return b"--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i

    return _fill(_head("many-inline-parts", content_type=b"multipart/mixed; boundary=\"b\""), unit, b"--b--\r\n", size)


def encoded_words(size: int) -> bytes:
    # A Subject of encoded words in one charset, each splitting a character (so all must be joined), folded.
    def unit(i: int) -> bytes:
        return b" =?utf-8?q?caf=C3?=\r\n" if i % 2 == 0 else b" =?utf-8?q?=A9?=\r\n"

    head = (b"From: Mallory <mallory@example.org>\r\nTo: support@tracker.example\r\nDate: Tue, 24 Nov 2026 "
            b"09:12:00 +0000\r\nMessage-ID: <" + uuid.uuid4().hex.encode() + b"@worst.example>\r\nSubject:")
    return _fill(head, unit, b"\r\n\r\nbody\r\n", size)


def long_header(size: int) -> bytes:
    # One unfolded Subject line of the whole size.
    head = (b"From: Mallory <mallory@example.org>\r\nTo: support@tracker.example\r\nDate: Tue, 24 Nov 2026 "
            b"09:12:00 +0000\r\nMessage-ID: <" + uuid.uuid4().hex.encode() + b"@worst.example>\r\nSubject: ")
    return _fill(head, lambda i: b"long subject ", b"\r\n\r\nbody\r\n", size)


def text_long_line(size: int) -> bytes:
    return _fill(_head("text-long-line"), lambda i: b"one endless line of words ", b"\r\n", size)


def quote_markers(size: int) -> bytes:
    # Every kind of history marker the reply cutting looks for, over and over.
    block = (b"Thanks, that helps.\r\n"
             b"On Mon, 23 Nov 2026 at 10:00, Bob Example <bob@example.org> wrote:\r\n"
             b"> quoted line\r\n>> deeper\r\n"
             b"-----Original Message-----\r\nFrom: Bob <bob@example.org>\r\nSent: Monday, 23 Nov 2026 10:00\r\n"
             b"To: support@tracker.example\r\nSubject: Re: printer\r\n\r\n"
             b"---------- Forwarded message ---------\r\n-- \r\nSent from my phone\r\n__________\r\n")
    return _fill(_head("quote-markers"), lambda i: block, b"", size)


def many_headers(size: int) -> bytes:
    head = (b"From: Mallory <mallory@example.org>\r\nTo: support@tracker.example\r\nSubject: Worst case: "
            b"many-headers\r\nMessage-ID: <" + uuid.uuid4().hex.encode() + b"@worst.example>\r\n")
    return _fill(head, lambda i: b"X-Header-%d: value =?utf-8?q?caf=C3=A9?=\r\n" % i, b"\r\nbody\r\n", size)


def many_recipients(size: int) -> bytes:
    head = (b"From: Mallory <mallory@example.org>\r\nSubject: Worst case: many-recipients\r\nMessage-ID: <"
            + uuid.uuid4().hex.encode() + b"@worst.example>\r\nTo: support@tracker.example")
    half = size // 2
    to = _fill(head, lambda i: b",\r\n \"Person %d\" <person%d@example.org>" % (i, i), b"\r\nCc: x@example.org", half)
    return _fill(to, lambda i: b",\r\n =?utf-8?q?P=C3=A9rson_%d?= <cc%d@example.org>" % (i, i), b"\r\n\r\nbody\r\n",
                 size)


def undeclared_8bit(size: int) -> bytes:
    # Latin-1 and GBK bytes mixed, no charset declared anywhere: the charset guessing's hard case.
    line = "Grüße aus Köln, 你好世界 ".encode("latin-1", "replace") + "你好世界。".encode("gbk") + b"\r\n"
    return _fill(_head("undeclared-8bit", content_type=b"text/plain"), lambda i: line, b"", size)


def plain(size: int) -> bytes:
    line = b"The printer jams on every duplex job; single-sided jobs work fine.\r\n"
    return _fill(_head("plain"), lambda i: line, b"", size)


def attachment(size: int) -> bytes:
    chunk = base64.encodebytes(os.urandom(57 * 100)).replace(b"\n", b"\r\n")
    return _fill(_head("attachment", content_type=b"multipart/mixed; boundary=\"b\"")
                 + b"--b\r\nContent-Type: text/plain\r\n\r\nThe scan is attached.\r\n--b\r\nContent-Type: "
                 b"application/pdf\r\nContent-Disposition: attachment; filename=scan.pdf\r\n"
                 b"Content-Transfer-Encoding: base64\r\n\r\n", lambda i: chunk, b"--b--\r\n", size)


FAMILIES: dict[str, Callable[[int], bytes]] = {
    "html-deep": html_deep,
    "html-deep-quote": html_deep_quote,
    "html-malformed": html_malformed,
    "html-flat": html_flat,
    "html-long-line": html_long_line,
    "multipart-deep": multipart_deep,
    "rfc822-deep": rfc822_deep,
    "many-attachments": many_attachments,
    "many-inline-parts": many_inline_parts,
    "encoded-words": encoded_words,
    "long-header": long_header,
    "text-long-line": text_long_line,
    "quote-markers": quote_markers,
    "many-headers": many_headers,
    "many-recipients": many_recipients,
    "undeclared-8bit": undeclared_8bit,
    "plain": plain,
    "attachment": attachment,
}

# --------------------------------------------------------------------------------------------------------
# Running the handler in a fresh interpreter


CHILD = """
import json, resource, sys, time
sys.argv = ["bench"]
from mailintake.cli import load_environment
load_environment()
from mailintake.localrun import invoke
from mailintake.runtime import bound_settings
settings = bound_settings()
warm, event = json.loads(sys.stdin.read())
# A container's first mail pays for clients, settings and caches (about 1 s here): paid first, not counted.
invoke("process", warm)
baseline = {vmhwm}
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
started = cpu()
try:
    result = invoke("process", event)
except Exception as exc:
    result = repr(exc)
used = cpu() - started
print(json.dumps({{"cpu": used, "peak_mb": {vmhwm} / 1024, "baseline_mb": baseline / 1024,
                  "result": str(result)[:300]}}))
"""


def _limits(cpu_seconds: int, memory_mb: int) -> Callable[[], None]:
    # So that a family the code cannot bound yet neither runs for hours nor takes the machine's memory.
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))

    return apply


def run_family(settings: object, raw: bytes, cpu_limit: int, memory_limit: int) -> dict[str, object]:
    from mailintake import store
    from mailintake.aws_clients import client
    from mailintake.handover import QueuedMessage
    from mailintake.localrun import _queue_arn, sqs_event

    def staged(mail: bytes) -> tuple[str, dict[str, object]]:
        key = f"raw/worst-case/{uuid.uuid4().hex}.eml"
        client("s3", settings.region).put_object(Bucket=settings.bucket, Key=key, Body=mail)  # type: ignore[attr-defined]
        job = QueuedMessage.of(settings.bucket, key, "worst-case", mail)  # type: ignore[attr-defined]
        message = {"MessageId": uuid.uuid4().hex, "ReceiptHandle": "r", "Body": job.to_json(),
                   "Attributes": {"ApproximateReceiveCount": "1", "MessageGroupId": uuid.uuid4().hex}}
        return key, sqs_event([message], _queue_arn(settings), settings.region)  # type: ignore[arg-type, attr-defined]

    _, warm = staged(plain(3000))
    key, event = staged(raw)
    code = CHILD.format(vmhwm=VMHWM)
    env = {**os.environ, "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_TRACE_DISABLED": "true",
           "POWERTOOLS_LOG_LEVEL": "WARNING"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, input=json.dumps([warm, event]), env=env,
                          capture_output=True, text=True, preexec_fn=_limits(cpu_limit, memory_limit))
    if proc.returncode != 0 or not proc.stdout.strip():
        tail = (proc.stderr.strip().splitlines() or [""])[-1]
        return {"cpu": None, "peak_mb": None, "outcome": f"killed (rc {proc.returncode}) {tail[:80]}"}
    figures = dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    ledger = store.get_ledger(key)
    figures["outcome"] = ledger.outcome[:70] if ledger is not None else "no ledger record"
    return figures


def parse_only(raw: bytes) -> dict[str, object]:
    from mailintake.parsing import parse_message

    started = time.process_time()
    parsed = parse_message(io.BytesIO(raw))
    return {"cpu": time.process_time() - started, "peak_mb": None,
            "outcome": f"{len(parsed.text)} chars, {len(parsed.attachments)} att, {len(parsed.defects)} defects"}


def _sizes(spec: str, limit: int) -> Iterator[int]:
    for token in spec.split(","):
        token = token.strip()
        yield limit if token == "limit" else int(float(token) * MB)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,limit", help="in MB, comma-separated; 'limit' is the size limit")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--cpu-limit", type=int, default=150, help="CPU seconds a child may use")
    parser.add_argument("--memory-limit", type=int, default=3000, help="address space (MB) a child may use")
    parser.add_argument("--parse-only", action="store_true")
    args = parser.parse_args()
    settings = None
    limit = 25 * 1024 * 1024
    if not args.parse_only:
        from common import local_settings

        settings = local_settings()
        limit = settings.max_message_bytes
    print(f"{'family':18} {'MB':>6} {'CPU s':>8} {'s/MB':>6} {'peak MB':>8}  outcome")
    worst: list[tuple[str, float, float]] = []
    for size in _sizes(args.sizes, limit):
        for name in args.families.split(","):
            raw = FAMILIES[name](size)
            megabytes = len(raw) / MB
            figures = (parse_only(raw) if args.parse_only
                       else run_family(settings, raw, args.cpu_limit, args.memory_limit))
            cpu = figures["cpu"]
            peak = figures["peak_mb"]
            cpu_text = f"{cpu:8.2f}" if isinstance(cpu, float) else f"{'>' + str(args.cpu_limit):>8}"
            per_mb = f"{cpu / megabytes:6.2f}" if isinstance(cpu, float) else f"{'-':>6}"
            peak_text = f"{peak:8.1f}" if isinstance(peak, float) else f"{'-':>8}"
            print(f"{name:18} {megabytes:6.2f} {cpu_text} {per_mb} {peak_text}  {figures['outcome']}", flush=True)
            worst.append((name, cpu / megabytes if isinstance(cpu, float) else float("inf"),
                          peak if isinstance(peak, float) else 0.0))
    over_cpu = [n for n, s, _ in worst if s > 2]
    over_mem = [n for n, _, p in worst if p > 200]
    print(f"over 2 s/MB: {', '.join(sorted(set(over_cpu))) or 'none'}; "
          f"over 200 MB: {', '.join(sorted(set(over_mem))) or 'none'}")


if __name__ == "__main__":
    main()
