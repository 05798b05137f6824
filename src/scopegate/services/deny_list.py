"""The agent deny list: revoked sessions and ended parent credentials whose agent tokens
must stop working before their ``exp``.

Two kinds of entry, written in the database (the ``kv`` table) in the revoking
transaction:

* ``(org, user, session) -> revoked_at``: a revoked agent session. A token of that session
  issued at or before ``revoked_at`` is refused; later ones (minted read-only again, since
  the grant is gone) work.
* ``parent credential -> revoked_at``: a user token revoked or a browser session logged
  out. Every agent token that credential minted is refused (``par`` claim).

The keys are ``scopegate.core.deny_keys``'s (shared with the guards of other
processes, which read the live entries from the deny feed: ``entries_since``).
Entries live until the longest possible token lifetime has passed. Answers (denied or
not) are cached in process; writing an entry announces ``Topic.DENY`` after the commit,
so the revoking process forgets its answer at once and every other process within the
change feed's bound (``services/change_feed.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import BigInteger, Connection, case, cast, or_, select
from sqlalchemy.orm import Session

from scopegate.core.changes import Change, Topic
from scopegate.core.deny_keys import PREFIXES, parent_key, session_key
from scopegate.services.authentication import NeedsIO
from scopegate.services.caches import MISSING, BoundedCache
from scopegate.services.change_feed import ChangeFeed
from scopegate.store import kv
from scopegate.store.models import KVEntry
from scopegate.store.outbox import record_change
from scopegate.store.types import utcnow

_MAX_CACHE = 50_000
#: Most entries one read of the feed returns (``entries_since``).
FEED_LIMIT = 10_000


def _revocation_time(stored: str | None) -> int | None:
    return int(stored) if stored is not None and stored.isdigit() else None


class DenyList:
    def __init__(self, feed: ChangeFeed, ttl_seconds: int) -> None:
        self._feed = feed
        #: How long an entry must live: the longest token lifetime plus leeway.
        self.ttl_seconds = ttl_seconds
        self.cache: BoundedCache[str, int | None] = BoundedCache(_MAX_CACHE, "deny_list")
        feed.subscribe(Topic.DENY, self.cache.forget)

    # -- writing -------------------------------------------------------------------
    def _write(self, db: Session, key: str) -> int:
        """Record ``key`` as revoked now, in ``db``'s transaction; every process forgets
        its cached answer for ``key`` once the transaction commits."""
        revoked_at = int(time.time())
        kv.write(db, key, str(revoked_at), self.ttl_seconds)
        record_change(db, Change(Topic.DENY, key))
        return revoked_at

    def deny(self, db: Session, org_id: int, user_id: int, session_id: str) -> int:
        """Refuse this agent session's tokens issued up to now; returns the revocation time."""
        return self._write(db, session_key(org_id, user_id, session_id))

    def deny_parent(self, db: Session, parent: str) -> int:
        """Refuse every agent token minted by the credential ``parent`` (its reference)."""
        return self._write(db, parent_key(parent))

    # -- reading -------------------------------------------------------------------
    def _revoked_at(self, keys: tuple[str, ...], conn: Connection | None) -> list[int | None]:
        """When each of ``keys`` was revoked (``None``: not revoked); a miss reads every
        missing key in one query."""
        if self._feed.fresh():
            found = [self.cache.get(key) for key in keys]
            if MISSING not in found:  # the warm path
                return found  # type: ignore[return-value]
        else:
            found = [MISSING] * len(keys)
        missing = [key for key, value in zip(keys, found, strict=True) if value is MISSING]
        if conn is None:
            raise NeedsIO
        generation = self.cache.generation
        stored = kv.read_many(conn, missing)
        loaded = {key: _revocation_time(stored.get(key)) for key in missing}
        for key, value in loaded.items():
            self.cache.put(key, value, generation)
        return [loaded[key] if value is MISSING else value  # type: ignore[misc]
                for key, value in zip(keys, found, strict=True)]

    def revoked_at(self, org_id: int, user_id: int, session_id: str,
                   conn: Connection | None) -> int | None:
        """When this agent session was revoked, if it was."""
        return self._revoked_at((session_key(org_id, user_id, session_id),), conn)[0]

    def is_denied(self, org_id: int, user_id: int, session_id: str, issued_at: int,
                  parent: str, conn: Connection | None) -> bool:
        """Whether a token of this session, issued at ``issued_at`` by ``parent``, is dead."""
        session_revoked, parent_revoked = self._revoked_at(
            (session_key(org_id, user_id, session_id), parent_key(parent)), conn)
        if session_revoked is not None and issued_at <= session_revoked:
            return True
        return parent_revoked is not None


@dataclass(frozen=True)
class DenyEntry:
    """One live deny entry as the deny feed publishes it: its key and when it was
    written (Unix seconds)."""

    key: str
    revoked_at: int


def entries_since(conn: Connection | Session, since: int,
                  limit: int = FEED_LIMIT) -> tuple[list[DenyEntry], bool]:
    """Live deny entries revoked at or after ``since``, oldest first, at most ``limit``;
    and whether more follow (ask again with ``since`` = the last ``revoked_at``).

    One query on the ``kv`` table by key prefix; an entry's value is its ``revoked_at``
    (digits, written by ``DenyList._write`` only), and it lives until ``expires_at``."""
    is_deny_entry = or_(*(KVEntry.key.startswith(prefix, autoescape=True)
                          for prefix in PREFIXES))
    # The value is cast only where the key is a deny entry's (CASE keeps that order even
    # where the planner reorders the filters): another kv value never reaches the cast.
    revoked_at = case((is_deny_entry, cast(KVEntry.value, BigInteger)), else_=None)
    rows = conn.execute(
        select(KVEntry.key, KVEntry.value)
        .where(is_deny_entry, KVEntry.expires_at > utcnow(), revoked_at >= since)
        .order_by(revoked_at, KVEntry.key)
        .limit(limit + 1)
    ).all()
    entries = [DenyEntry(row.key, value) for row in rows[:limit]
               if (value := _revocation_time(row.value)) is not None]
    return entries, len(rows) > limit
