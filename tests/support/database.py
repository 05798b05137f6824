"""Migrated test databases: what ``scopegate migrate`` does, and emptying one between tests."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from scopegate.services.keys import KeyRing
from scopegate.store.db import make_engine, make_sessionmaker
from scopegate.store.migrate import upgrade
from scopegate.store.models import Base
from support.settings import PG_URL, SECRET, require_service
from support.world import World, build_world_quick


def prepare_engine(engine: Engine, secret: str = SECRET) -> None:
    """What ``scopegate migrate`` does: the schema, then the first signing key (sealed
    under ``secret``, the servers' ``SCOPEGATE_SECRET_KEY``)."""
    upgrade(engine)
    KeyRing(make_sessionmaker(engine), secret).ensure_active()


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


@contextmanager
def scratch_database(admin_url: str, name: str) -> Iterator[str]:
    """An empty PostgreSQL database ``name`` beside ``admin_url``'s, dropped afterwards."""
    base = make_url(admin_url)
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def statements(*engines: Engine) -> Iterator[list[tuple[str, str]]]:
    """``(thread name, SQL)`` of every statement ``engines`` send meanwhile."""
    sent: list[tuple[str, str]] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        sent.append((threading.current_thread().name, statement))

    for engine in engines:
        event.listen(engine, "before_cursor_execute", seen)
    try:
        yield sent
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", seen)


@contextmanager
def world_database(label: str, secret: str = SECRET) -> Iterator[tuple[str, World]]:
    """For a module's server processes: a scratch PostgreSQL database (named after
    ``label`` and this test process), migrated, with its first signing key and acme's
    world (``build_world_quick``); dropped afterwards. ``secret``: the servers'
    ``SCOPEGATE_SECRET_KEY``. Under CI, no PostgreSQL fails."""
    admin_url = require_service(PG_URL, "PostgreSQL", "SCOPEGATE_TEST_DATABASE_URL")
    name = f"{make_url(admin_url).database or 'test'}_sg_{label}_{worker_name()}"
    with scratch_database(admin_url, name) as url:
        engine = make_engine(url)
        try:
            prepare_engine(engine, secret)
            with make_sessionmaker(engine)() as session:
                world = build_world_quick(session)
        finally:
            engine.dispose()
        yield url, world
