"""Live write grants as agent-token verification sees them, cached for a bounded time.

An agent token carries the write scopes its session's grant held at mint time. Those
scopes are honoured only while the grant still holds them: at every use the token's
scopes are cut to ``read scopes ∪ the live grant``. So a grant that expires, is revoked,
or is shortened (an organization lowering ``maxGrantSeconds``) takes the write scopes
of every live token with it — including a token whose mint raced the revocation.

Lookups are cached per process for at most ``max_age`` seconds (the deny list's bound).
The grant's own expiry is checked on every use, so expiry is exact. A process that
changes a grant calls ``invalidate`` after its commit; a read that started before an
invalidation never stores its (possibly stale) answer, so a revocation that has
returned is never undone by a racing read in the same process.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from scopegate.store.models import WriteGrant
from scopegate.store.types import utcnow

_MAX_ENTRIES = 50_000
Key = tuple[int, int, str]


@dataclass(frozen=True)
class _Entry:
    scopes: frozenset[str]
    expires_at: float  # Unix seconds; 0 when there is no grant
    fetched_at: float  # monotonic


class GrantCache:
    def __init__(self, max_age: float) -> None:
        self._max_age = max_age
        self._entries: dict[Key, _Entry] = {}
        self._generation = 0
        self._lock = threading.Lock()

    def live_scopes(self, db: Session, org_id: int, user_id: int,
                    session_id: str) -> frozenset[str]:
        """The scopes of the session's live grant (empty when there is none)."""
        key = (org_id, user_id, session_id)
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry.fetched_at >= self._max_age:
            entry = self._load(db, key)
        return entry.scopes if entry.expires_at > time.time() else frozenset()

    def _load(self, db: Session, key: Key) -> _Entry:
        generation = self._generation
        started = time.monotonic()
        row = db.execute(
            select(WriteGrant.scopes, WriteGrant.expires_at).where(
                WriteGrant.org_id == key[0], WriteGrant.user_id == key[1],
                WriteGrant.session_id == key[2], WriteGrant.expires_at > utcnow(),
            )
        ).first()
        entry = (
            _Entry(frozenset(row.scopes), row.expires_at.timestamp(), started)
            if row is not None else _Entry(frozenset(), 0.0, started)
        )
        with self._lock:
            if self._generation == generation:  # no change since the read began
                if len(self._entries) >= _MAX_ENTRIES:
                    self._entries.clear()
                self._entries[key] = entry
        return entry

    def invalidate(self) -> None:
        """Forget every cached grant and discard reads still in flight."""
        with self._lock:
            self._generation += 1
            self._entries.clear()
