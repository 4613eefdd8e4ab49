"""`make demo`'s script, run for real: it must keep showing what the README promises."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.integration


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "mailintake").exists(), reason="needs `make install`")
def test_demo_makes_items_and_comments_over_imap_and_pop3_and_a_second_cycle_changes_nothing(settings: Any) -> None:
    from mailintake.localstack import dovecot

    dovecot.clear_mail(ROOT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILINTAKE_", "AWS_", "POWERTOOLS_"))}
    for passthrough in ("MAILINTAKE_LOCAL_PORT_OFFSET", "MAILINTAKE_MOTO_PORT"):
        if passthrough in os.environ:
            env[passthrough] = os.environ[passthrough]
    out = subprocess.run(["bash", "demo/run.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300, check=True).stdout

    assert "helpdesk: fetched 4 (done)" in out and "ops: fetched 2 (done)" in out
    assert "processed 6, failed 0" in out
    for outcome in ("item 1 created", "item 3 created", "comment on item 1", "item 4 created", "comment on item 4"):
        assert outcome in out
    assert "<script" not in out and "tracker.evil" not in out
    assert "screenshot.png (image/png, 66 bytes)" in out
    assert out.rstrip().endswith("processed 0, failed 0")
