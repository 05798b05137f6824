"""The start-up lock: one process at a time migrates and creates the first signing key.

N processes started together (``scopegate serve --workers N`` on several hosts, a
deployment's replicas) would otherwise race on the schema and on the key ring. On
PostgreSQL the lock is a session advisory lock on a dedicated connection; on SQLite an
exclusive ``flock`` on a file beside the database (``<db>.lock``); for an in-memory
database, a lock in this process.
"""

from __future__ import annotations

import fcntl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

#: The advisory lock's key: "scopegat" as a signed 64-bit integer.
ADVISORY_KEY = int.from_bytes(b"scopegat", "big", signed=True)
_memory_lock = threading.Lock()


class StartupLockTimeout(RuntimeError):
    """Another process held the start-up lock for longer than the wait allowed."""


@contextmanager
def startup_lock(engine: Engine, timeout_seconds: float = 120.0) -> Iterator[None]:
    """Hold the database's start-up lock for the duration of the block."""
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine, timeout_seconds):
            yield
        return
    database = engine.url.database
    if database in (None, "", ":memory:"):
        if not _memory_lock.acquire(timeout=timeout_seconds):
            raise StartupLockTimeout("the start-up lock was not released")
        try:
            yield
        finally:
            _memory_lock.release()
        return
    with _file_lock(Path(f"{database}.lock"), timeout_seconds):
        yield


@contextmanager
def _advisory_lock(engine: Engine, timeout_seconds: float) -> Iterator[None]:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("SELECT set_config('lock_timeout', :ms, false)"),
                     {"ms": f"{int(timeout_seconds * 1000)}ms"})
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_KEY})
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})


@contextmanager
def _file_lock(path: Path, timeout_seconds: float) -> Iterator[None]:
    with path.open("a") as handle:
        deadline = time.monotonic() + timeout_seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StartupLockTimeout(f"{path} is held by another process") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
