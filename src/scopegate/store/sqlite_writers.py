"""SQLite writers of one process take turns on a lock, not on SQLite's busy handler.

SQLite lets one writer at a time hold the database. A writer that finds it held waits
in SQLite's busy handler, which sleeps in growing steps (up to 100 ms) between tries:
when the holder commits, the lock stays idle until some sleeper wakes. Under a burst of
writes (mints, approvals) that idle time, not the work, bounded the rate. Writers of one
process therefore queue on a Python lock first, which hands over the moment it is
released; only writers of *other* processes still meet the busy handler. The wait is
bounded like SQLite's (``SCOPEGATE_SQLITE_BUSY_TIMEOUT_SECONDS``): past it, the request
is answered 503 with ``Retry-After``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from sqlalchemy.exc import TimeoutError as PoolTimeout


class SQLiteWriters:
    def __init__(self, timeout_seconds: float) -> None:
        self._lock = threading.Lock()
        self._timeout = timeout_seconds

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the process's write turn; ``PoolTimeout`` (503) if it does not come."""
        if not self._lock.acquire(timeout=self._timeout):
            raise PoolTimeout("no SQLite write turn within the busy timeout")
        try:
            yield
        finally:
            self._lock.release()


def write_turn(writers: SQLiteWriters | None) -> AbstractContextManager[None]:
    """The process's SQLite write turn, or, without one (PostgreSQL), nothing to wait for."""
    return writers.turn() if writers is not None else nullcontext()
