"""A moto server on loopback standing in for the AWS APIs the stack uses (DynamoDB, S3, SQS, Scheduler,
IAM, ...). It keeps everything in memory: a restart starts from empty, so run ``up`` again after one."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from mailintake.localstack import pidfiles

HOST = "127.0.0.1"
DEFAULT_PORT = 5055
PORT_ENV = "MAILINTAKE_MOTO_PORT"

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0


class MotoServerError(RuntimeError):
    """The moto server could not be started or stopped."""


def port() -> int:
    """The port the local moto server listens on (``MAILINTAKE_MOTO_PORT``, default 5055)."""
    raw = os.environ.get(PORT_ENV, "")
    return int(raw) if raw else DEFAULT_PORT


def endpoint_url() -> str:
    """The ``AWS_ENDPOINT_URL`` clients use to reach the local moto server."""
    return f"http://{HOST}:{port()}"


def _local(root: Path | str) -> Path:
    return Path(root).resolve() / ".local"


def _pid_file(root: Path | str) -> Path:
    return _local(root) / "moto.pid"


def _log_file(root: Path | str) -> Path:
    return _local(root) / "moto.log"


def _read_pid(root: Path | str) -> int | None:
    return pidfiles.read_pid(_pid_file(root))


def _alive(pid: int) -> bool:
    return pidfiles.alive(pid, b"moto")


def answers() -> bool:
    """Whether something answers HTTP on the moto port."""
    conn = http.client.HTTPConnection(HOST, port(), timeout=1)
    try:
        # Any HTTP response will do: moto's dashboard page is static. (Its data.json dumps every backend's
        # state and can take seconds once the stack holds a few thousand records.)
        conn.request("GET", "/moto-api/")
        conn.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        conn.close()


def is_running(root: Path | str) -> bool:
    """Whether the moto server started for ``root`` is alive."""
    pid = _read_pid(root)
    return pid is not None and _alive(pid)


def _command() -> list[str]:
    # moto's own server, with the transaction fix described in moto_launch.
    return [sys.executable, "-m", "mailintake.localstack.moto_launch", "-H", HOST, "-p", str(port())]


def _log_tail(root: Path | str, lines: int = 30) -> str:
    try:
        return "\n".join(_log_file(root).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def start(root: Path | str) -> str:
    """Start the moto server in the background unless it runs already; returns its endpoint URL."""
    if is_running(root):
        if _wait_until_answers(lambda: is_running(root)):
            return endpoint_url()
        raise MotoServerError(f"moto server (pid {_read_pid(root)}) runs but does not answer HTTP")
    if answers():
        raise MotoServerError(
            f"port {port()} answers HTTP but is not this root's moto server; stop it or set {PORT_ENV}"
        )
    _local(root).mkdir(parents=True, exist_ok=True)
    with _log_file(root).open("ab") as log:
        process = subprocess.Popen(
            _command(),
            stdin=subprocess.DEVNULL,
            # Tests reset the queues between cases, more often than AWS's one purge per minute allows.
            env={**os.environ, "MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR": "false"},
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session, so it outlives the `up` command and a Ctrl-C in that terminal.
            start_new_session=True,
        )
    _pid_file(root).write_text(f"{process.pid}\n")
    # Our own child: poll() rather than the pid file, whose /proc check races with the exec.
    if not _wait_until_answers(lambda: process.poll() is None):
        stop(root)
        raise MotoServerError(
            f"moto server did not answer on {endpoint_url()} within {START_TIMEOUT_SECONDS:.0f}s\n"
            f"log tail:\n{_log_tail(root)}"
        )
    return endpoint_url()


def _wait_until_answers(alive: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if answers():
            return True
        if not alive():
            return False
        time.sleep(0.1)
    return False


def stop(root: Path | str) -> None:
    """Stop the moto server started for ``root``, if any."""
    pid = _read_pid(root)
    if pid is not None and _alive(pid):
        # Only the pid this module recorded is signalled.
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while _alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.1)
    with contextlib.suppress(FileNotFoundError):
        _pid_file(root).unlink()
