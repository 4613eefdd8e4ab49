"""Cold import time of each Lambda handler module (budget: 300 ms).

Each measurement is a fresh interpreter importing functions/<name>/app.py the way the runtime does, timed
from inside the interpreter (so interpreter start-up is not counted). Median of several runs.

    python bench/cold_import.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

from common import ROOT

PROBE = """
import importlib.util, time
t = time.perf_counter()
spec = importlib.util.spec_from_file_location("app", {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print((time.perf_counter() - t) * 1000)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    # What Lambda sets; the table etc. need not exist, nothing is called at import.
    env = {**os.environ, "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
           "POWERTOOLS_SERVICE_NAME": "mailintake", "MAILINTAKE_TABLE": "t", "MAILINTAKE_BUCKET": "b",
           "AWS_LAMBDA_FUNCTION_NAME": "bench", "PYTHONDONTWRITEBYTECODE": "0"}
    for name in ("fetch", "process"):
        path = str(ROOT / "functions" / name / "app.py")
        subprocess.run([sys.executable, "-c", PROBE.format(path=path)], env=env, check=True,
                       capture_output=True)  # warm the .pyc cache, as a deployed layer has it
        times = [
            float(subprocess.run([sys.executable, "-c", PROBE.format(path=path)], env=env, check=True,
                                 capture_output=True, text=True).stdout.strip().splitlines()[-1])
            for _ in range(args.runs)
        ]
        print(f"{name:8} cold import: median {statistics.median(times):6.1f} ms, "
              f"min {min(times):6.1f}, max {max(times):6.1f} (budget 300 ms, {args.runs} runs)")


if __name__ == "__main__":
    main()
