"""Peak memory of the fetch and the process handler for one large mail (default 25 MB), on the local stack.

    python bench/memory.py [--megabytes 25]

Each handler runs in a fresh interpreter (as in a Lambda container), and its peak resident set comes
from /proc/self/status VmHWM, which, unlike ru_maxrss, does not inherit the parent's figure across exec.
The mail is a text part plus one base64 attachment; the budget is 200 MB. Over the size limit (25 MiB by
default) the fetch still stores the whole mail (in parts) and processing rejects it reading only its header.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys

from common import ROOT, VMHWM, local_settings

CHILD = """
import json, sys
sys.argv = ["bench"]
from mailintake.cli import load_environment
load_environment()
from mailintake.localrun import invoke
from mailintake.runtime import bound_settings
settings = bound_settings()
baseline = {vmhwm}
mode = {mode!r}
if mode == "fetch":
    result = invoke("fetch", {{"mailbox": {mailbox!r}}})
else:
    from mailintake.aws_clients import client
    from mailintake.localrun import _queue_arn, sqs_event
    sqs = client("sqs", settings.region)
    messages = sqs.receive_message(QueueUrl=settings.queue_url, MaxNumberOfMessages=1,
                                   AttributeNames=["All"])["Messages"]
    result = invoke("process", sqs_event(messages, _queue_arn(settings), settings.region))
print(json.dumps({{"peak_mb": {vmhwm_expr} / 1024, "baseline_mb": baseline / 1024, "result": str(result)[:200]}}))
"""


def big_mail(megabytes: float) -> bytes:
    chunk = os.urandom(3 * 256 * 1024)
    encoded_chunk = base64.encodebytes(chunk).replace(b"\n", b"\r\n")
    parts = [b"From: Big Sender <big@example.org>\r\nTo: support@tracker.example\r\n"
             b"Subject: Scanned contract, all pages\r\nMessage-ID: <big-bench@example.org>\r\n"
             b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
             b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe scan is attached.\r\n"
             b"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=scan.pdf\r\n"
             b"Content-Transfer-Encoding: base64\r\n\r\n"]
    size = sum(len(p) for p in parts)
    while size + len(encoded_chunk) < megabytes * 1_000_000 - 100:
        parts.append(encoded_chunk)
        size += len(encoded_chunk)
    parts.append(b"--b--\r\n")
    return b"".join(parts)


def run(mode: str, mailbox: str) -> dict[str, object]:
    code = CHILD.format(mode=mode, mailbox=mailbox, vmhwm=VMHWM, vmhwm_expr=VMHWM)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=float, default=25)
    args = parser.parse_args()
    settings = local_settings()
    from mailintake import store
    from mailintake.localstack import dovecot, resources
    from mailintake.localstack.accounts import local_mailbox
    from mailintake.mailboxes import remove_mailbox

    resources.reset(ROOT)
    dovecot.clear_mail(ROOT)
    box = local_mailbox(ROOT, settings, "bench-memory", "imap", "ssl")
    raw = big_mail(args.megabytes)
    from aws_lambda_powertools.utilities import parameters
    dovecot.deliver(ROOT, box.username, str(parameters.get_secret(box.secret_name)), raw)
    print(f"mail: {len(raw) / 1e6:.1f} MB ({len(raw):,} bytes), one {len(raw) * 3 / 4 / 1e6:.1f} MB attachment")

    fetch = run("fetch", box.name)
    process = run("process", box.name)
    for name, figures in (("fetch", fetch), ("process", process)):
        print(f"{name:8} peak RSS {figures['peak_mb']:6.1f} MB (interpreter + imports {figures['baseline_mb']:.1f} MB;"
              f" budget 200 MB)")
    items = store.list_items()
    if items:
        attachment = items[0].attachments[0]
        print(f"item {int(items[0].number)}: {attachment.filename}, {int(attachment.size):,} bytes stored")
    else:  # over MAILINTAKE_MAX_MESSAGE_BYTES: stored raw, rejected unparsed
        print(f"no item: {store.list_ledger()[0].outcome}")
    remove_mailbox(box.name, settings)


if __name__ == "__main__":
    main()
