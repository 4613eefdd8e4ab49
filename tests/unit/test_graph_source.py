"""Microsoft Graph's pure parts, fast: Retry-After, Graph's errors, folding delta pages, and the cursor's
rules (moved only past settled stretches; settled mails skipped for a round and the next) over a fake
Graph that answers from a script."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mailintake import graph_api
from mailintake.graph_api import GraphAuthError, GraphNotFound, GraphSyncReset, GraphUnavailable
from mailintake.mailboxes import MailboxConfigError, MailboxSpec
from mailintake.sources import graph
from mailintake.sources.graph import Change, GraphSource, changes_of, digest
from mailintake.store import MailboxRecord

from .test_fetch_loop import FakeCursors, World


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    assert graph_api.retry_after_seconds("7") == 7.0
    assert graph_api.retry_after_seconds("Wed, 25 Nov 2026 22:00:30 GMT", now=1795644000.0) == 30.0
    assert graph_api.retry_after_seconds("Wed, 25 Nov 2026 21:00:00 GMT", now=1795644000.0) == 0.0
    assert graph_api.retry_after_seconds("soon") is None
    assert graph_api.retry_after_seconds(None) is None


@pytest.mark.parametrize(("status", "kind"), [
    (401, GraphAuthError), (403, GraphAuthError), (404, GraphNotFound), (410, GraphSyncReset),
    (500, GraphUnavailable), (502, GraphUnavailable),
])
def test_graph_errors_become_ours_by_status(status: int, kind: type[Exception]) -> None:
    body = b'{"error": {"code": "ErrorSomething", "message": "said Graph"}}'
    error = graph_api._error_of(status, body, "GET /users/x")
    assert isinstance(error, kind)
    assert "ErrorSomething" in str(error) and "said Graph" in str(error)


def test_a_server_gone_or_throttled_is_an_interruption_of_the_mail_sources() -> None:
    from mailintake.sources import INTERRUPTIONS

    assert issubclass(graph_api.GraphUnavailable, INTERRUPTIONS)
    assert issubclass(graph_api.GraphThrottled, INTERRUPTIONS)
    assert not issubclass(graph_api.GraphAuthError, INTERRUPTIONS)


def test_delta_pages_fold_into_one_change_per_mail_and_a_removal_takes_it_out() -> None:
    into: dict[str, Change] = {}
    changes_of({"value": [
        {"id": "a", "receivedDateTime": "2026-11-25T10:00:00Z",
         "singleValueExtendedProperties": [{"id": "Integer 0x0e08", "value": "1234"}]},
        {"id": "b", "receivedDateTime": "2026-11-25T09:00:00Z"},
        {"id": "c", "receivedDateTime": "2026-11-25T11:00:00Z"},
    ]}, into)
    changes_of({"value": [
        {"id": "a", "receivedDateTime": "2026-11-25T10:00:00Z", "isRead": True},  # reported again
        {"id": "c", "@removed": {"reason": "deleted"}},
        {"receivedDateTime": "no id"},
    ]}, into)
    assert [(c.id, c.size) for c in into.values()] == [("b", 0), ("a", 0)]


class FakeGraph:
    """Answers delta requests from pages (each with the link that follows it), records what is done."""

    def __init__(self, ids: list[str], page: int = 2) -> None:
        self.ids = ids
        self.page = page
        self.done: list[tuple[str, str]] = []
        self.expired: set[str] = set()
        self.pool = self

    def clear(self) -> None:
        """(the connection pool's)"""

    def json(self, method: str, path: str, payload: Any = None, headers: Any = None) -> Any:
        if "/mailFolders/" in path and "delta" not in path:
            return {"id": "folder-" + path.split("/mailFolders/")[1].split("?")[0]}
        if "/messages/delta" in path:
            if "deltatoken%3Dlatest" in path or "%24deltatoken=latest" in path:
                return {"value": [], "@odata.deltaLink": f"delta/messages/delta?at={len(self.ids)}"}
            if path in self.expired:
                raise GraphSyncReset(410, "SyncStateNotFound", "gone", path)
            start = int(path.rsplit("at=", 1)[1]) if "at=" in path else 0
            rows = [{"id": i, "receivedDateTime": f"2026-11-25T10:{n:02d}:00Z"}
                    for n, i in enumerate(self.ids[start:start + self.page], start)]
            following = start + self.page
            if following < len(self.ids):
                return {"value": rows, "@odata.nextLink": f"next/messages/delta?at={following}"}
            return {"value": rows, "@odata.deltaLink": f"delta/messages/delta?at={len(self.ids)}"}
        self.done.append((method, path.rsplit("/", 2)[-2] if path.endswith("/move") else path.rsplit("/", 1)[-1]))
        return None

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        self.done.append((method, path.rsplit("/", 1)[-1]))
        return self

    def release_conn(self) -> None:
        """(the response's)"""


def mailbox(after: str = "seen") -> MailboxRecord:
    return MailboxRecord(*MailboxRecord.key("support"), name="support", protocol="graph",
                         host="https://graph.example", port=443, security="ssl", username="support@contoso.example",
                         secret_name="s", after=after, move_to="Processed" if after == "move" else None,
                         folder="INBOX")


class NoTokens:
    def token(self) -> str:
        return "token"

    def invalidate(self, token: str) -> None:
        """(nothing to renew)"""


def open_source(fake: FakeGraph, cursors: FakeCursors, after: str = "seen") -> GraphSource:
    return GraphSource(mailbox(after), NoTokens(), cursors, lambda: 100.0, client=fake)  # type: ignore[arg-type]


def read(source: GraphSource, settle_first: int | None = None) -> list[str]:
    """Read like the fetch loop: take each pending mail, settle in tens, remember; ``settle_first`` stops
    after settling that many (a run cut short)."""
    seen: list[str] = []
    batch = []
    pending: Iterator[Any] = source.pending()
    for item in pending:
        seen.append(item.ref)
        batch.append(item)
        if len(batch) == 10 or (settle_first is not None and len(seen) == settle_first):
            source.settle(batch)
            batch = []
            source.remember()
            if settle_first is not None and len(seen) == settle_first:
                return seen
    if batch:
        source.settle(batch)
    source.remember()
    return seen


def test_the_cursor_moves_only_past_wholly_settled_stretches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graph, "STRETCH", 3)
    ids = [f"m{n:02d}" for n in range(12)]
    fake, cursors = FakeGraph(ids), FakeCursors(World())
    with open_source(fake, cursors) as source:
        assert read(source, settle_first=5) == ids[:5]
    # Stretches of two pages (four mails): the first is settled, the second only in part.
    assert cursors.load_delta("support").link == "next/messages/delta?at=4"
    assert not cursors.load_delta("support").done

    with open_source(fake, cursors) as source:
        assert read(source) == ids[5:]  # m04 was settled: skipped, not read again
    cursor = cursors.load_delta("support")
    assert (cursor.link, cursor.done) == ("delta/messages/delta?at=12", True)
    assert [op for op in fake.done if op[0] == "PATCH"] == [("PATCH", i) for i in ids]


def test_settled_mails_reported_again_are_skipped_for_that_round_and_the_next() -> None:
    ids = ["a", "b", "c"]
    fake, cursors = FakeGraph(ids), FakeCursors(World())
    with open_source(fake, cursors) as source:
        assert read(source) == ids
    # The next round reports them changed (marked read), and one new mail.
    fake.ids = ["a", "b", "c", "d"]
    with open_source(fake, cursors) as source:
        assert read(source) == ["d"]
    # The round after: what the first round settled is forgotten, what the second settled is kept.
    assert set().union(*cursors.load_uidls("support").values()) == {digest("d")}


def test_an_expired_delta_link_reads_the_folder_again() -> None:
    fake, cursors = FakeGraph(["a", "b"]), FakeCursors(World())
    with open_source(fake, cursors) as source:
        read(source)
    fake.expired.add(str(cursors.load_delta("support").link))
    fake.ids = ["a", "b", "c"]
    with open_source(fake, cursors) as source:
        # Read from the start; a and b were settled in the last round, so only c is new to read.
        assert read(source) == ["c"]


@pytest.mark.parametrize(("after", "operation"), [("seen", "PATCH"), ("move", "POST"), ("delete", "DELETE")])
def test_settling_does_the_mailboxs_action(after: str, operation: str) -> None:
    fake, cursors = FakeGraph(["a"]), FakeCursors(World())
    with open_source(fake, cursors, after) as source:
        read(source)
    assert (operation, "a") in fake.done


def test_a_crash_leaves_the_cursor_where_it_was() -> None:
    fake, cursors = FakeGraph(["a", "b", "c"]), FakeCursors(World())
    with pytest.raises(RuntimeError), open_source(fake, cursors) as source:
        next(source.pending())
        raise RuntimeError("crash before settling")
    assert cursors.load_delta("support").link is None
    assert cursors.load_uidls("support") == {}


def test_graph_mailbox_spec_takes_a_url_not_a_host_and_port() -> None:
    spec = MailboxSpec(name="support", protocol="graph", host="", username="support@contoso.com")
    spec.validate()
    assert (spec.host, spec.port, spec.security, spec.after) == ("https://graph.microsoft.com/v1.0", 443, "ssl",
                                                                 "seen")
    local = MailboxSpec(name="t", protocol="graph", host="http://127.0.0.1:8080/v1.0/", username="u@x")
    local.validate()
    assert (local.host, local.port, local.security) == ("http://127.0.0.1:8080/v1.0", 8080, "none")
    for host in ("http://graph.example/v1.0", "graph.microsoft.com", "https://graph.example/v1.0?x=1"):
        with pytest.raises(MailboxConfigError, match="Graph URL"):
            MailboxSpec(name="t", protocol="graph", host=host, username="u@x").validate()
    with pytest.raises(MailboxConfigError, match="no port"):
        MailboxSpec(name="t", protocol="graph", host="", username="u@x", port=993).validate()
    with pytest.raises(MailboxConfigError, match="user"):
        MailboxSpec(name="t", protocol="graph", host="", username="").validate()
    with pytest.raises(MailboxConfigError, match="after must be"):
        MailboxSpec(name="t", protocol="graph", host="", username="u@x", after="keep").validate()


def test_starting_with_new_takes_a_delta_link_of_now_and_unread_is_refused() -> None:
    from mailintake.sources import StartNotSupported

    fake, cursors = FakeGraph(["old-1", "old-2"]), FakeCursors(World())
    with open_source(fake, cursors) as source:
        assert source.begin("new").first_run == 0
        with pytest.raises(StartNotSupported, match="new or all"):
            source.begin("unread")
    assert cursors.load_delta("support").done
    fake.ids = ["old-1", "old-2", "arrived"]
    with open_source(fake, cursors) as source:
        assert read(source) == ["arrived"]
