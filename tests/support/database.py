"""Migrated test databases: what ``scopegate migrate`` does, and emptying one between tests."""

from __future__ import annotations

import os

from sqlalchemy import Engine, text

from scopegate.services.keys import KeyRing
from scopegate.store.db import make_engine, make_sessionmaker
from scopegate.store.migrate import upgrade
from scopegate.store.models import Base
from support.settings import SECRET


def prepare_engine(engine: Engine) -> None:
    """What ``scopegate migrate`` does: the schema, then the first signing key."""
    upgrade(engine)
    KeyRing(make_sessionmaker(engine), SECRET).ensure_active()


def truncate_pg(url: str) -> None:
    """Empty every table but the change counters (which migrations seed), then give the
    database its first signing key again: cheaper than migrating a new database."""
    engine = make_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables
                       if t.name != "change_versions")
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    KeyRing(make_sessionmaker(engine), SECRET).ensure_active()
    engine.dispose()


def worker_name() -> str:
    """A name unique to this test process: concurrent runs never share a database."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", str(os.getpid()))[:8]
    return f"{run}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
