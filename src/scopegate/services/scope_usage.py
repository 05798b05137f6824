"""Counting which scope admitted each call, without a write on the request path.

The gate calls ``ScopeUsageRecorder.record`` for every call it admits on an
organization endpoint: one dictionary increment under a lock, keyed by (UTC day,
organization, credential, method, endpoint template, admitting scope). The upkeep
thread writes the counts every few seconds (``flush``): one upsert per key that adds to
the day's row, so any number of processes add up. A crash loses what was counted since
the last flush (at most ``USAGE_FLUSH_SECONDS`` of calls); usage informs people
narrowing credentials, never a security decision.

The buffer is bounded: past ``MAX_KEYS`` distinct keys between two flushes, new keys
are dropped (counted, and logged once at the next flush); keys already there keep
counting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import date, timedelta

from sqlalchemy import Insert, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from scopegate.core.access import Principal
from scopegate.core.scope_usage import admitted_by, subject_of
from scopegate.store.integration_models import ENDPOINT_MAX, SUBJECT_MAX, ScopeUsage

log = logging.getLogger("scopegate.scope_usage")
#: Distinct keys held between two flushes (a key is ~300 bytes: ~30 MB at most).
MAX_KEYS = 100_000
#: Rows per upsert statement.
FLUSH_BATCH = 500
_EPOCH = date(1970, 1, 1)
_DAY_SECONDS = 86_400
_NOTHING: frozenset[str] = frozenset()

#: (day number, org id, subject, method, endpoint, admitted_by)
Key = tuple[int, int, str, str, str, str]


class ScopeUsageRecorder:
    """Per-day call counts of every credential, buffered in memory until ``flush``."""

    def __init__(self, max_keys: int = MAX_KEYS,
                 clock: Callable[[], float] = time.time) -> None:
        self._max_keys = max_keys
        self._clock = clock
        self._calls: dict[Key, int] = {}
        #: Per key: what the endpoint accepts and what the credential held at its
        #: latest call.
        self._context: dict[Key, tuple[tuple[str, ...], frozenset[str]]] = {}
        self._dropped = 0
        self._lock = threading.Lock()

    def record(self, principal: Principal, org_id: int, method: str, endpoint: str,
               sufficient: tuple[str, ...], held: frozenset[str]) -> None:
        """Count one admitted call; cheap enough for every request (two dictionary
        writes under a lock). ``held`` is what the caller held in the organization,
        ``sufficient`` what the endpoint accepts."""
        subject = subject_of(principal)
        if subject is None or len(subject) > SUBJECT_MAX or len(endpoint) > ENDPOINT_MAX:
            return
        granted = principal.scopes or _NOTHING
        key = (int(self._clock() // _DAY_SECONDS), org_id, subject,
               "GET" if method == "HEAD" else method, endpoint,
               admitted_by(sufficient, granted, held))
        with self._lock:
            calls = self._calls.get(key)
            if calls is None and len(self._calls) >= self._max_keys:
                self._dropped += 1
                return
            self._calls[key] = 1 if calls is None else calls + 1
            self._context[key] = (sufficient, granted)

    @property
    def pending(self) -> int:
        """Distinct keys waiting for the next flush."""
        return len(self._calls)

    def flush(self, factory: sessionmaker[Session]) -> int:
        """Add the buffered counts to the database; returns how many keys were written.
        On failure the counts are kept for the next flush (and the error raised)."""
        with self._lock:
            calls, self._calls = self._calls, {}
            context, self._context = self._context, {}
            dropped, self._dropped = self._dropped, 0
        if dropped:
            log.warning("scope usage: %d call(s) not counted: more than %d distinct "
                        "keys between two flushes", dropped, self._max_keys)
        if not calls:
            return 0
        rows = [_row(key, count, *context[key]) for key, count in sorted(calls.items())]
        try:
            with factory() as db, db.begin():
                statement = _upsert(db)
                for start in range(0, len(rows), FLUSH_BATCH):
                    db.execute(statement, rows[start:start + FLUSH_BATCH])
        except BaseException:
            self._restore(calls, context)
            raise
        return len(rows)

    def _restore(self, calls: dict[Key, int],
                 context: dict[Key, tuple[tuple[str, ...], frozenset[str]]]) -> None:
        with self._lock:
            for key, count in calls.items():
                current = self._calls.get(key)
                if current is not None:
                    self._calls[key] = current + count
                elif len(self._calls) < self._max_keys:
                    self._calls[key] = count
                    self._context[key] = context[key]
                else:
                    self._dropped += count


def day_of(number: int) -> date:
    """The UTC date of a day number (days since 1970-01-01)."""
    return _EPOCH + timedelta(days=number)


def _row(key: Key, calls: int, sufficient: tuple[str, ...],
         granted: frozenset[str]) -> dict[str, object]:
    day, org_id, subject, method, endpoint, admitted = key
    return {"day": day_of(day), "org_id": org_id, "subject": subject, "method": method,
            "endpoint": endpoint, "admitted_by": admitted, "sufficient": frozenset(sufficient),
            "granted": granted, "calls": calls}


def _upsert(db: Session) -> Insert:
    """INSERT … ON CONFLICT (the day's key) DO UPDATE calls = calls + new, for the
    session's dialect (SQLite and PostgreSQL spell it alike)."""
    table: Table = ScopeUsage.__table__  # type: ignore[assignment]
    dialect = db.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table)
    return statement.on_conflict_do_update(
        index_elements=[table.c.day, table.c.org_id, table.c.subject, table.c.method,
                        table.c.endpoint, table.c.admitted_by],
        set_={"calls": table.c.calls + statement.excluded.calls,
              "granted": statement.excluded.granted,
              "sufficient": statement.excluded.sufficient},
    )
