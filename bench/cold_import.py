"""Cold import time of each Lambda handler module (budget: 300 ms).

Each measurement is a fresh interpreter importing the handler the way the runtime does, timed from inside
the interpreter (so interpreter start-up is not counted); median of several runs. When `sam build` has run
and the runtime's Python (3.12) is on this machine, it imports the built function and layer with that
Python and nothing else on the path: what Lambda imports. Otherwise it falls back to the development venv
(which also holds test-only packages, so it reads high).

    python bench/cold_import.py [--runs 7]
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys

from common import ROOT

PROBE = """
import sys, time
sys.path[:0] = {paths!r}
t = time.perf_counter()
import app
print((time.perf_counter() - t) * 1000)
"""


def runtime_python() -> str | None:
    candidates = [shutil.which("python3.12"),
                  *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))]
    for candidate in candidates:
        if candidate and subprocess.run([candidate, "-c", ""], capture_output=True).returncode == 0:
            return candidate
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    # What Lambda sets (tracing on, so the X-Ray SDK is imported as in AWS); nothing is called at import.
    # LAMBDA_TASK_ROOT above all: without it the X-Ray SDK takes itself to be outside Lambda and, at import,
    # sets up centralized sampling, making two botocore X-Ray clients (about 400 ms here) that Lambda's own
    # sampling never needs.
    env = {"PATH": os.environ.get("PATH", ""), "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
           "POWERTOOLS_SERVICE_NAME": "mailintake", "MAILINTAKE_TABLE": "t", "MAILINTAKE_BUCKET": "b",
           "MAILINTAKE_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/q.fifo",
           "AWS_LAMBDA_FUNCTION_NAME": "bench", "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
           "_HANDLER": "app.lambda_handler"}
    built = ROOT / ".aws-sam" / "build"
    python = runtime_python()
    use_build = python is not None and (built / "MailintakeLayer" / "python").is_dir()
    print("importing the sam build with " + str(python) if use_build
          else "no sam build or python3.12: importing from the development venv")
    for name in ("fetch", "process"):
        task_root = built / f"{name.capitalize()}Function" if use_build else ROOT / "functions" / name
        env["LAMBDA_TASK_ROOT"] = str(task_root)
        if use_build:
            assert python is not None
            command = [python, "-S", "-c", PROBE.format(paths=[
                str(built / f"{name.capitalize()}Function"), str(built / "MailintakeLayer" / "python"),
                str(built / "ScriptsLayer" / "python")])]
        else:
            command = [sys.executable, "-c", PROBE.format(paths=[str(ROOT / "functions" / name)])]
        subprocess.run(command, env=env, check=True, capture_output=True)  # bytecode in place, as deployed
        times = [float(subprocess.run(command, env=env, check=True, capture_output=True, text=True)
                       .stdout.strip().splitlines()[-1]) for _ in range(args.runs)]
        print(f"{name:8} cold import: median {statistics.median(times):6.1f} ms, "
              f"min {min(times):6.1f}, max {max(times):6.1f} (budget 300 ms, {args.runs} runs)")


if __name__ == "__main__":
    main()
