"""The state a container keeps (mailintake.runtime.Runtime) lives in objects, each cache with one owner.

No network, no AWS: the table reads are replaced by counters, time by a hand-moved clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any

import pytest

from mailintake import directory, runtime, store, system_settings
from mailintake.directory import UserCache
from mailintake.settings import Settings
from mailintake.store import UserRecord
from mailintake.system_settings import Config, ConfigCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def user(address: str) -> UserRecord:
    return UserRecord(*UserRecord.key(address), kind="user", sort=address, email=address, name="", roles={})


@pytest.fixture()
def reads(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every BatchGetItem of users, by its keys; only ada@example.org exists."""
    seen: list[list[str]] = []

    def read(keys: list[str]) -> dict[str, UserRecord]:
        seen.append(list(keys))
        return {k: user(k) for k in keys if k == "ada@example.org"}

    monkeypatch.setattr(directory, "_read", read)
    return seen


@pytest.fixture()
def loads(monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    """Every settings snapshot read from the table."""
    made: list[Config] = []

    def load(settings: Settings) -> Config:
        made.append(Config(system={"n": str(len(made))}))
        return made[-1]

    monkeypatch.setattr(system_settings, "load", load)
    return made


# --- users --------------------------------------------------------------------------------------------


def test_a_user_cache_reads_each_address_once_within_its_max_age_then_again(reads: list[list[str]]) -> None:
    clock = Clock()
    users = UserCache(60, clock)

    assert set(users.lookup(["Ada@Example.org", "bob@example.org"])) == {"ada@example.org"}
    clock.now += 59
    assert set(users.lookup(["ada@example.org", "bob@example.org"])) == {"ada@example.org"}
    assert reads == [["ada@example.org", "bob@example.org"]]  # the unknown sender is remembered too

    clock.now += 1
    users.lookup(["ada@example.org"])
    assert reads[-1] == ["ada@example.org"]
    assert len(reads) == 2


def test_a_user_cache_of_max_age_zero_always_reads(reads: list[list[str]]) -> None:
    users = UserCache(0, Clock())
    users.lookup(["ada@example.org"])
    users.lookup(["ada@example.org"])
    assert len(reads) == 2


def test_two_user_caches_share_nothing(reads: list[list[str]]) -> None:
    first, second = UserCache(60, Clock()), UserCache(60, Clock())
    first.lookup(["ada@example.org"])
    second.lookup(["ada@example.org"])
    assert len(reads) == 2

    first.forget()
    second.lookup(["ada@example.org"])
    assert len(reads) == 2  # forgetting in one owner leaves the other's entries
    first.lookup(["ada@example.org"])
    assert len(reads) == 3


def test_a_user_cache_forgets_one_address(reads: list[list[str]]) -> None:
    users = UserCache(60, Clock())
    users.remember("Ada@example.org", user("ada@example.org"))
    users.remember("bob@example.org", None)
    users.forget("ADA@example.org")
    assert users.lookup(["bob@example.org"]) == {}
    assert reads == []
    users.lookup(["ada@example.org"])
    assert reads == [["ada@example.org"]]


# --- the settings snapshot ------------------------------------------------------------------------------


def test_a_config_cache_keeps_its_snapshot_for_config_cache_seconds(loads: list[Config]) -> None:
    clock = Clock()
    config = ConfigCache(Settings(config_cache_seconds=30), clock)

    first = config.current()
    clock.now += 29
    assert config.current() is first
    clock.now += 1
    assert config.current() is not first
    assert len(loads) == 2

    config.clear()
    config.current()
    assert len(loads) == 3


def test_config_cache_seconds_zero_reads_every_time(loads: list[Config]) -> None:
    config = ConfigCache(Settings(config_cache_seconds=0), Clock())
    config.current()
    config.current()
    assert len(loads) == 2


def test_two_config_caches_share_nothing(loads: list[Config]) -> None:
    first, second = ConfigCache(Settings(), Clock()), ConfigCache(Settings(), Clock())
    assert first.current() is not second.current()
    first.clear()
    assert second.current() is loads[1]
    assert first.current() is loads[2]


# --- item numbers ----------------------------------------------------------------------------------------


def test_item_numbers_are_each_owners_own() -> None:
    first, second = store.Numbering(), store.Numbering()
    first.last = 41
    assert first.next() == 42
    assert second.last is None


# --- the runtime -------------------------------------------------------------------------------------------


@pytest.fixture()
def binds(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    seen: list[Settings] = []

    def bind(settings: Settings) -> Any:
        seen.append(settings)
        return object()

    monkeypatch.setattr(store, "bind", bind)
    return seen


def test_a_runtime_binds_the_store_once_and_owns_its_caches(binds: list[Settings]) -> None:
    settings = Settings(table="t", bucket="b", queue_url="q", config_cache_seconds=7)
    one = runtime.Runtime(settings)
    assert binds == [settings]
    assert one.users.max_age == 7
    assert one.config.settings is settings


def test_two_runtimes_share_no_cache(binds: list[Settings], reads: list[list[str]], loads: list[Config]) -> None:
    settings = Settings(table="t", bucket="b", queue_url="q")
    one, two = runtime.Runtime(settings), runtime.Runtime(settings)
    assert one.users is not two.users and one.config is not two.config and one.numbering is not two.numbering

    one.users.lookup(["ada@example.org"])
    two.users.lookup(["ada@example.org"])
    assert len(reads) == 2
    assert one.config.current() is not two.config.current()


def test_a_runtime_reads_its_settings_from_the_environment(binds: list[Settings]) -> None:
    made = runtime.Runtime.from_environment({"MAILINTAKE_TABLE": "t", "MAILINTAKE_BUCKET": "b",
                                             "MAILINTAKE_QUEUE_URL": "q", "MAILINTAKE_CONFIG_CACHE_SECONDS": "5"})
    assert (made.settings.table, made.settings.config_cache_seconds) == ("t", 5)


# --- the store's one binding -----------------------------------------------------------------------------


@pytest.fixture()
def unbound() -> Iterator[None]:
    """The models as they were, after a test that binds them."""
    saved = (store._TableMeta.table_name, store._TableMeta.region,
             [(model, model._connection) for model in store._MODELS])
    yield
    store._TableMeta.table_name, store._TableMeta.region = saved[0], saved[1]
    for model, connection in saved[2]:
        model._connection = connection


def test_binding_the_same_table_again_keeps_the_one_connection(unbound: None) -> None:
    first = store.bind(Settings(table="one", region="eu-west-1"))
    assert store.bind(Settings(table="one", region="eu-west-1")) is first
    assert store.shared_connection() is first
    assert all(model._get_connection().connection is first for model in store._MODELS)

    other = store.bind(Settings(table="two", region="eu-west-1"))
    assert other is not first
    assert store.UserRecord.Meta.table_name == "two"
    assert all(model._get_connection().connection is other for model in store._MODELS)


# --- the dev entry points ----------------------------------------------------------------------------------


def test_forget_and_invalidate_reach_the_local_runners_containers(
        binds: list[Settings], reads: list[list[str]], loads: list[Config]) -> None:
    from mailintake import localrun

    containers: list[ModuleType] = []
    for name in ("fetch", "process"):
        module = ModuleType(f"fake_{name}")
        module.runtime = runtime.Runtime(Settings())  # type: ignore[attr-defined]
        containers.append(module)
    localrun.CONTAINERS._modules.update({("fetch", 90): containers[0], ("process", 90): containers[1]})
    try:
        runtimes: Iterable[runtime.Runtime] = [m.runtime for m in containers]
        for held in runtimes:
            held.users.lookup(["ada@example.org"])
            held.config.current()
        directory.forget()
        system_settings.invalidate()
        for held in runtimes:
            held.users.lookup(["ada@example.org"])
            held.config.current()
        assert (len(reads), len(loads)) == (4, 4)

        localrun.forget_users("ada@example.org")  # what an admin's change to one user does
        containers[0].runtime.users.lookup(["ada@example.org"])
        assert len(reads) == 5
    finally:
        localrun.fresh_containers()
    assert localrun.CONTAINERS.runtimes() == []
