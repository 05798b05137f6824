"""The key-value table (``store/kv.py``) on SQLite and PostgreSQL: set/get, overwrite,
and expiry. Expiry is checked from the stored deadline (the row's ``expires_at``) and
from entries already past it, never by waiting.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scopegate.store import kv as store
from scopegate.store.db import make_engine, make_sessionmaker
from scopegate.store.models import KVEntry


class SQLKV:
    """The table's two functions, each in a transaction of its own."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory

    def get(self, key: str) -> str | None:
        with self._factory() as session:
            return store.read(session, key)

    def set(self, key: str, value: str, ttl_seconds: int) -> None:
        with self._factory() as session, session.begin():
            store.write(session, key, value, ttl_seconds)

# --- The contract ------------------------------------------------------------------------


def check_set_get(kv, key) -> None:
    assert kv.get(key("a")) is None
    kv.set(key("a"), "alpha", 60)
    kv.set(key("b"), "beta", 60)
    assert kv.get(key("a")) == "alpha"
    assert kv.get(key("b")) == "beta"


def check_overwrite(kv, key) -> None:
    kv.set(key("k"), "first", 60)
    kv.set(key("k"), "second", 60)
    assert kv.get(key("k")) == "second"


def check_values_round_trip(kv, key) -> None:
    for n, value in enumerate(["", "caf\u00e9 \u2603", "x" * 10_000, '{"json": [1, 2]}']):
        kv.set(key(f"v{n}"), value, 60)
        assert kv.get(key(f"v{n}")) == value


CONTRACT = [check_set_get, check_overwrite, check_values_round_trip]

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
