"""Engine and session factory for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

#: Execution option: open the transaction with ``BEGIN IMMEDIATE`` on SQLite, taking
#: the write lock up front (SQLite's stand-in for ``SELECT ... FOR UPDATE``).
SQLITE_IMMEDIATE = "sqlite_immediate"


def make_engine(
    url: str, *, pool_timeout: float = 30.0, sqlite_busy_timeout: float = 30.0, **kwargs: Any
) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys, a busy timeout and explicit BEGIN.

    ``pool_timeout`` bounds the wait for a pooled connection and ``sqlite_busy_timeout``
    the wait for SQLite's write lock: past either, the request fails (the web layer
    answers 503 with ``Retry-After``) instead of queueing without end.
    """
    kwargs["pool_timeout"] = pool_timeout
    # Room for every worker thread (AnyIO's default limit is 40) plus background work, so
    # a thread never waits for a connection that only another thread can give back.
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 40)
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": sqlite_busy_timeout},
            **kwargs,
        )
        _configure_sqlite(engine, int(sqlite_busy_timeout * 1000))
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN IMMEDIATE is possible.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms:d}")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(SQLITE_IMMEDIATE):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once, after the session's current transaction commits.

    For process-local caches that must forget a change only once other readers can see
    it: forgetting earlier would let a concurrent read cache the old row again.
    """
    event.listen(session, "after_commit", lambda _session: callback(), once=True)
