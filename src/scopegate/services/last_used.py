"""When each stored credential was last used, without a write on the request path.

Authenticating notes the use in memory (``note``); a background flush writes the noted
times in one short transaction (``flush``), at most once per ``INTERVAL_SECONDS`` per
credential. A crash loses at most the last interval's notes: ``last_used_at`` is a hint
for people cleaning up old tokens, never a security decision.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

from sqlalchemy import Table, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from scopegate.store.types import utcnow

INTERVAL_SECONDS = 60.0
_MAX_REMEMBERED = 100_000


class LastUsed:
    def __init__(self, interval_seconds: float = INTERVAL_SECONDS) -> None:
        self._interval = interval_seconds
        self._pending: dict[Table, set[int]] = defaultdict(set)
        self._written: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()

    def note(self, table: Table, row_id: int) -> None:
        """Record a use now; cheap enough for every request."""
        key = (table.name, row_id)
        written = self._written.get(key)
        if written is not None and time.monotonic() - written < self._interval:
            return
        with self._lock:
            self._pending[table].add(row_id)
            self._written[key] = time.monotonic()
            if len(self._written) > _MAX_REMEMBERED:
                self._written.clear()

    def flush(self, factory: sessionmaker[Session]) -> int:
        """Write the noted uses; returns how many rows were touched."""
        with self._lock:
            pending, self._pending = self._pending, defaultdict(set)
        if not pending:
            return 0
        now = utcnow()
        try:
            with factory() as db, db.begin():
                for table, ids in pending.items():
                    db.execute(update(table).where(table.c.id.in_(sorted(ids)))
                               .values(last_used_at=now))
        except SQLAlchemyError:
            with self._lock:  # keep the notes for the next flush
                for table, ids in pending.items():
                    self._pending[table] |= ids
            raise
        return sum(len(ids) for ids in pending.values())
