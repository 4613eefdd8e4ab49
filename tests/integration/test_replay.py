"""Replay over the real local stack: `mailintake messages reprocess` and `mailintake dlq redrive`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mailintake import cli, store
from mailintake.aws_clients import client

from .conftest import make_mail
from .fault_support import (
    assert_one_outcome_each,
    drain,
    enqueue,
    process,
    queue_bodies,
    record,
    recorded,
    stage,
    throttled,
)

pytestmark = pytest.mark.integration


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = cli.main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_reprocess_failed_after_the_fault_is_gone_makes_each_item_once(
    settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    raws = [make_mail("Failed during an outage"), make_mail("Large and failed", "z" * 20_000)]
    jobs = [stage(settings, raws[0]), stage(settings, raws[1], inline=False)]
    done = stage(settings, make_mail("Fine all along"))
    assert process(settings, [record(done)]) == set()
    with throttled(store.shared_connection().client, "dynamodb", "TransactWriteItems", times=100):
        for job, raw in zip(jobs, raws, strict=True):
            assert process(settings, [record(job, raw=raw)]) == {record(job)["MessageId"]}
    assert sorted(r.status for r in store.list_ledger()) == ["failed", "failed", "item"]

    code, results = run_cli(capsys, "messages", "reprocess", "--failed")

    assert code == 0
    assert sorted((r["key"], r["action"], r["status"]) for r in results) == sorted(
        (j.key, "reprocessed", "item") for j in jobs)
    expected = {jobs[0].key: "item", jobs[1].key: "item", done.key: "item"}
    assert_one_outcome_each(expected)

    # Again: nothing is failed any more, and naming final ones explicitly changes nothing either.
    assert run_cli(capsys, "messages", "reprocess", "--failed") == (0, [])
    code, results = run_cli(capsys, "messages", "reprocess", done.key, jobs[0].key)
    assert code == 0 and [r["action"] for r in results] == ["unchanged", "unchanged"]
    assert_one_outcome_each(expected)
    assert sorted(i.title for i in store.list_items()) == [
        "Failed during an outage", "Fine all along", "Large and failed"]


def test_reprocess_of_a_key_never_processed_and_of_a_missing_object(
    settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Stored by a fetch whose hand-over was lost: no ledger record yet.
    job = stage(settings, make_mail("Stored, never queued"), mailbox="lost")
    code, results = run_cli(capsys, "messages", "reprocess", job.key, "raw/lost/does-not-exist.eml")
    assert code == 1  # one of them could not be done
    assert [(r["action"], r["status"]) for r in results] == [("reprocessed", "item"), ("missing", "")]
    (item,) = store.list_items()
    assert (item.title, item.mailbox) == ("Stored, never queued", "lost")
    assert_one_outcome_each({job.key: "item"})


def test_dlq_redrive_moves_dead_letters_back_and_they_land_once(
    settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = make_mail("Object briefly missing", "w" * 20_000)
    job = stage(settings, raw, inline=False)
    healthy = stage(settings, make_mail("Healthy neighbour"))
    s3 = client("s3", settings.region)
    s3.delete_object(Bucket=settings.bucket, Key=job.key)
    enqueue(settings, job)
    enqueue(settings, healthy)
    assert sorted(drain(settings).failures.values()) == [5]
    assert len(queue_bodies(settings, settings.dlq_url)) == 1
    assert recorded(job.key).status == "failed"

    # The cause is fixed (the object restored), then the dead letters go back to the queue.
    s3.put_object(Bucket=settings.bucket, Key=job.key, Body=raw)
    code, moved = run_cli(capsys, "dlq", "redrive")
    assert code == 0 and [m["key"] for m in moved["redriven"]] == [job.key]
    assert queue_bodies(settings, settings.dlq_url) == []

    assert drain(settings).failures == {}
    assert_one_outcome_each({job.key: "item", healthy.key: "item"})
    # Redriving an empty DLQ is harmless.
    assert run_cli(capsys, "dlq", "redrive") == (0, {"redriven": []})
