"""Live write grants as agent-token verification sees them, from memory.

An agent token carries the write scopes its session's grant held at mint time. Those
scopes are honoured only while the grant still holds them: at every use the token's
scopes are cut to ``read scopes ∪ the live grant``. So a grant that expires, is revoked,
or is shortened (an organization lowering ``maxGrantSeconds``) takes the write scopes
of every live token with it — including a token whose mint raced the revocation.

Lookups are cached and forgotten when a grant changes (``Topic.GRANT``, announced after
the changing transaction commits). The grant's own expiry is checked on every use, so
expiry is exact.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Connection, select

from scopegate.core.changes import Topic, grant_key
from scopegate.services.authentication import NeedsIO
from scopegate.services.caches import MISSING, BoundedCache
from scopegate.services.change_feed import ChangeFeed
from scopegate.store.models import WriteGrant
from scopegate.store.types import utcnow

_MAX_ENTRIES = 50_000
NO_GRANT_SCOPES: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _Entry:
    scopes: frozenset[str]
    expires_at: float  # Unix seconds; 0 when there is no grant


class GrantCache:
    def __init__(self, feed: ChangeFeed) -> None:
        self._feed = feed
        self.cache: BoundedCache[str, _Entry] = BoundedCache(_MAX_ENTRIES, "grants")
        feed.subscribe(Topic.GRANT, self.cache.forget)

    def live_scopes(self, org_id: int, user_id: int, session_id: str,
                    conn: Connection | None) -> frozenset[str]:
        """The scopes of the session's live grant (empty when there is none)."""
        key = grant_key(org_id, user_id, session_id)
        entry = self.cache.get(key) if self._feed.fresh() else MISSING
        if entry is MISSING:
            if conn is None:
                raise NeedsIO
            generation = self.cache.generation
            row = conn.execute(
                select(WriteGrant.scopes, WriteGrant.expires_at).where(
                    WriteGrant.org_id == org_id, WriteGrant.user_id == user_id,
                    WriteGrant.session_id == session_id, WriteGrant.expires_at > utcnow(),
                )
            ).first()
            entry = (_Entry(frozenset(row.scopes), row.expires_at.timestamp())
                     if row is not None else _Entry(NO_GRANT_SCOPES, 0.0))
            self.cache.put(key, entry, generation)
        live = entry.expires_at > time.time()  # type: ignore[union-attr]
        return entry.scopes if live else NO_GRANT_SCOPES  # type: ignore[union-attr]
