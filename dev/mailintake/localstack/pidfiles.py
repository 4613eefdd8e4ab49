"""The recorded pid of a local-stack daemon, and whether that process still runs."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def alive(pid: int, program: bytes) -> bool:
    """Whether ``pid`` runs and is still ``program`` (a part of its command line)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # After a reboot the recorded pid may belong to an unrelated process, which must never be signalled.
    with contextlib.suppress(OSError):
        if program not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return False
    # A zombie still answers kill(0); it is our own child when it was started from this process.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True
