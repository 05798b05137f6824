"""Engine and session factory for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from scopegate.store import audit_links

# Every session links new audit rows into their hash chain (``store/audit_links.py``).
audit_links.install()

#: Execution option: open the transaction with ``BEGIN IMMEDIATE`` on SQLite, taking
#: the write lock up front (SQLite's stand-in for ``SELECT ... FOR UPDATE``).
SQLITE_IMMEDIATE = "sqlite_immediate"
#: Execution option: no ``BEGIN`` on SQLite, each statement its own transaction (see
#: ``autocommit``).
SQLITE_AUTOCOMMIT = "sqlite_autocommit"
#: libpq options: give up connecting after 2 s, and on a silent peer after ~5 s.
POSTGRES_CONNECT_ARGS = {
    "connect_timeout": 2, "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
    "keepalives_count": 2, "tcp_user_timeout": 5000,
}


def make_engine(
    url: str, *, pool_timeout: float = 30.0, sqlite_busy_timeout: float = 30.0, **kwargs: Any
) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys, a busy timeout and explicit BEGIN.

    ``pool_timeout`` bounds the wait for a pooled connection and ``sqlite_busy_timeout``
    the wait for SQLite's write lock: past either, the request fails (the web layer
    answers 503 with ``Retry-After``) instead of queueing without end.
    """
    kwargs["pool_timeout"] = pool_timeout
    # The runtime sizes the pool to its worker threads plus background work
    # (``runtime/process.py``), so a thread never waits for a connection that only
    # another thread can give back; no overflow beyond that.
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 0)
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": sqlite_busy_timeout},
            **kwargs,
        )
        _configure_sqlite(engine, int(sqlite_busy_timeout * 1000))
        return engine
    # No ping per checkout (a round trip on every request): a connection the server
    # dropped fails its statement, SQLAlchemy discards the pool's stale connections, and
    # that request is answered 503 (``web/errors.py``). A database that stops answering
    # (a partition) is noticed within seconds, not at the kernel's TCP timeout: requests
    # fail (503) instead of holding their threads.
    connect_args = kwargs.pop("connect_args", {})
    if url.startswith("postgresql"):
        connect_args = {**POSTGRES_CONNECT_ARGS, **connect_args}
    return create_engine(url, connect_args=connect_args, **kwargs)


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
        options = connection.get_execution_options()
        if options.get(SQLITE_AUTOCOMMIT) or options.get("isolation_level") == "AUTOCOMMIT":
            return  # each statement is its own transaction
        if options.get(SQLITE_IMMEDIATE):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")


def autocommit(engine: Engine) -> Engine:
    """``engine`` for read-only work: every statement its own transaction, so a
    single-statement read is one round trip, with no ``BEGIN``/``COMMIT`` around it.

    On PostgreSQL that is the driver's autocommit mode (an attribute of the connection,
    set at checkout, no round trip). On SQLite our ``begin`` listener already issues every
    ``BEGIN``, so it only has to leave it out: asking SQLAlchemy for the ``AUTOCOMMIT``
    isolation level there would instead run ``PRAGMA read_uncommitted`` each time a
    connection goes back to the pool (a statement on every read request).
    """
    if engine.dialect.name == "sqlite":
        return engine.execution_options(**{SQLITE_AUTOCOMMIT: True})
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def make_loop_reader(url: str, *, pool_size: int, pool_timeout: float) -> AsyncEngine | None:
    """An autocommit engine for reads run on the event loop, on PostgreSQL with psycopg:
    the read waits for its round trip without a worker thread (no hop, no contention for
    the GIL with the loop). ``None`` elsewhere: SQLite reads already run on the loop (no
    network to wait on), and other drivers' reads hop to a thread.

    Its connections belong to the event loop that opened them, so the app's lifespan
    makes it and disposes of it (``Runtime.open_loop_readers``).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql" or parsed.get_driver_name() != "psycopg":
        return None
    return create_async_engine(
        parsed.set(drivername="postgresql+psycopg_async"), isolation_level="AUTOCOMMIT",
        pool_size=pool_size, max_overflow=0, pool_timeout=pool_timeout,
        connect_args=dict(POSTGRES_CONNECT_ARGS),
    )


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)

