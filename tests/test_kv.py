"""The key-value store: ``SQLKV`` (SQLite and PostgreSQL) and ``RedisKV`` keep one contract.

set/get/delete, overwrite, and expiry. Expiry is checked from the stored deadline (the
row's ``expires_at``, Redis's ``TTL``) and from entries already past it, never by waiting.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from conftest import REDIS_URL, make_settings, require_service
from scopegate.store.db import make_engine, make_sessionmaker
from scopegate.store.kv import SQLKV, RedisKV
from scopegate.store.models import KVEntry
from scopegate.web.app import create_app

# --- The contract both stores keep ---------------------------------------------------------


def check_set_get_delete(kv, key) -> None:
    assert kv.get(key("a")) is None
    kv.set(key("a"), "alpha", 60)
    kv.set(key("b"), "beta", 60)
    assert kv.get(key("a")) == "alpha"
    assert kv.get(key("b")) == "beta"
    kv.delete(key("a"))
    assert kv.get(key("a")) is None
    assert kv.get(key("b")) == "beta"
    kv.delete(key("never-set"))  # deleting what is absent is not an error


def check_overwrite(kv, key) -> None:
    kv.set(key("k"), "first", 60)
    kv.set(key("k"), "second", 60)
    assert kv.get(key("k")) == "second"


def check_values_round_trip(kv, key) -> None:
    for n, value in enumerate(["", "caf\u00e9 \u2603", "x" * 10_000, '{"json": [1, 2]}']):
        kv.set(key(f"v{n}"), value, 60)
        assert kv.get(key(f"v{n}")) == value


CONTRACT = [check_set_get_delete, check_overwrite, check_values_round_trip]

# --- SQLKV on SQLite and PostgreSQL ---------------------------------------------------------


@pytest.fixture
def sql(database_url) -> Iterator[tuple[SQLKV, object]]:
    engine = make_engine(database_url)
    factory = make_sessionmaker(engine)
    yield SQLKV(factory), factory
    engine.dispose()


def _sql_key(name: str) -> str:
    return f"test:{name}"


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__.removeprefix("check_"))
def test_sql_kv_keeps_the_contract(check, sql):
    kv, _ = sql
    check(kv, _sql_key)


def _expires_at(factory, key: str) -> datetime | None:
    with factory() as session:
        return session.scalar(select(KVEntry.expires_at).where(KVEntry.key == key))


def test_sql_kv_stores_the_deadline_ttl_seconds_ahead(sql):
    kv, factory = sql
    before = datetime.now(UTC)
    kv.set("test:ttl", "v", 90)
    after = datetime.now(UTC)
    deadline = _expires_at(factory, "test:ttl")
    assert before + timedelta(seconds=90) <= deadline <= after + timedelta(seconds=90)


def test_sql_kv_overwrite_moves_the_deadline(sql):
    kv, factory = sql
    kv.set("test:ttl", "v", 60)
    kv.set("test:ttl", "v", 3600)
    assert _expires_at(factory, "test:ttl") > datetime.now(UTC) + timedelta(seconds=3000)


@pytest.mark.parametrize("ttl", [0, -1, -3600])
def test_sql_kv_an_entry_whose_ttl_has_run_out_reads_as_absent(ttl, sql):
    kv, _ = sql
    kv.set("test:gone", "v", ttl)
    assert kv.get("test:gone") is None


def test_sql_kv_an_expired_row_reads_as_absent_and_is_purged_on_the_next_write(sql):
    kv, factory = sql
    with factory() as session, session.begin():
        session.add(KVEntry(key="test:stale", value="old",
                            expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert kv.get("test:stale") is None
    kv.set("test:fresh", "new", 60)
    with factory() as session:
        keys = set(session.scalars(select(KVEntry.key)))
    assert "test:stale" not in keys
    assert "test:fresh" in keys


def test_sql_kv_setting_an_expired_key_again_revives_it(sql):
    kv, _ = sql
    kv.set("test:k", "old", -1)
    kv.set("test:k", "new", 60)
    assert kv.get("test:k") == "new"


# --- RedisKV ---------------------------------------------------------------------------------


@pytest.fixture
def redis_kv():
    import redis

    url = require_service(REDIS_URL, "Redis", "SCOPEGATE_TEST_REDIS_URL")
    raw = redis.Redis.from_url(url, decode_responses=True)
    prefix = f"scopegate-test:{uuid.uuid4().hex}:"
    yield RedisKV(url), raw, (lambda name: prefix + name)
    for key in raw.scan_iter(prefix + "*"):
        raw.delete(key)
    raw.close()


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__.removeprefix("check_"))
def test_redis_kv_keeps_the_contract(check, redis_kv):
    kv, _, key = redis_kv
    check(kv, key)


def test_redis_kv_stores_the_ttl(redis_kv):
    kv, raw, key = redis_kv
    kv.set(key("ttl"), "v", 90)
    assert 85 <= raw.ttl(key("ttl")) <= 90


def test_redis_kv_overwrite_moves_the_ttl(redis_kv):
    kv, raw, key = redis_kv
    kv.set(key("ttl"), "v", 60)
    kv.set(key("ttl"), "v", 3600)
    assert raw.ttl(key("ttl")) > 3000


@pytest.mark.parametrize("ttl", [0, -5])
def test_redis_kv_a_spent_ttl_lives_at_most_a_second(ttl, redis_kv):
    kv, raw, key = redis_kv
    kv.set(key("short"), "v", ttl)
    assert raw.pttl(key("short")) <= 1000  # -2 (already gone) also satisfies this


def test_redis_kv_delete_removes_the_key(redis_kv):
    kv, raw, key = redis_kv
    kv.set(key("k"), "v", 60)
    kv.delete(key("k"))
    assert raw.exists(key("k")) == 0


def test_the_app_keeps_its_kv_in_redis_when_configured(sqlite_url):
    url = require_service(REDIS_URL, "Redis", "SCOPEGATE_TEST_REDIS_URL")
    with_redis = create_app(make_settings(sqlite_url, redis_url=url), migrate=False)
    without = create_app(make_settings(sqlite_url), migrate=False)
    try:
        assert isinstance(with_redis.state.runtime.kv, RedisKV)
        assert isinstance(without.state.runtime.kv, SQLKV)
    finally:
        with_redis.state.runtime.engine.dispose()
        without.state.runtime.engine.dispose()
