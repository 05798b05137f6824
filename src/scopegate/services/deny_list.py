"""The agent deny list: revoked sessions and ended parent credentials whose agent tokens
must stop working before their ``exp``.

Two kinds of entry, written in the database (the ``kv`` table) in the revoking
transaction:

* ``(org, user, session) -> revoked_at``: a revoked agent session. A token of that session
  issued at or before ``revoked_at`` is refused; later ones (minted read-only again, since
  the grant is gone) work.
* ``parent credential -> revoked_at``: a user token revoked or a browser session logged
  out. Every agent token that credential minted is refused (``par`` claim).

Entries live until the longest possible token lifetime has passed. Answers (denied or
not) are cached in process; writing an entry announces ``Topic.DENY`` after the commit,
so the revoking process forgets its answer at once and every other process within the
change feed's bound (``services/change_feed.py``).
"""

from __future__ import annotations

import hashlib
import time

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from scopegate.core.changes import Change, Topic
from scopegate.services.authentication import NeedsIO
from scopegate.services.caches import MISSING, BoundedCache
from scopegate.services.change_feed import ChangeFeed
from scopegate.store import kv
from scopegate.store.outbox import record_change

_SESSION_PREFIX = "agent-deny:"
_PARENT_PREFIX = "agent-parent-deny:"
_MAX_CACHE = 50_000


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _session_key(org_id: int, user_id: int, session_id: str) -> str:
    return f"{_SESSION_PREFIX}{org_id}:{user_id}:{_digest(session_id)}"


def _parent_key(parent: str) -> str:
    return _PARENT_PREFIX + _digest(parent)


def _revocation_time(stored: str | None) -> int | None:
    return int(stored) if stored is not None and stored.isdigit() else None


class DenyList:
    def __init__(self, feed: ChangeFeed, ttl_seconds: int) -> None:
        self._feed = feed
        #: How long an entry must live: the longest token lifetime plus leeway.
        self.ttl_seconds = ttl_seconds
        self.cache: BoundedCache[str, int | None] = BoundedCache(_MAX_CACHE)
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
        return self._write(db, _session_key(org_id, user_id, session_id))

    def deny_parent(self, db: Session, parent: str) -> int:
        """Refuse every agent token minted by the credential ``parent`` (its reference)."""
        return self._write(db, _parent_key(parent))

    # -- reading -------------------------------------------------------------------
    def _revoked_at(self, keys: tuple[str, ...], conn: Connection | None) -> list[int | None]:
        """When each of ``keys`` was revoked (``None``: not revoked); a miss reads every
        missing key in one query."""
        fresh = self._feed.fresh()
        found = [self.cache.get(key) if fresh else MISSING for key in keys]
        missing = [key for key, value in zip(keys, found, strict=True) if value is MISSING]
        if missing:
            if conn is None:
                raise NeedsIO
            generation = self.cache.generation
            stored = kv.read_many(conn, missing)
            loaded = {key: _revocation_time(stored.get(key)) for key in missing}
            for key, value in loaded.items():
                self.cache.put(key, value, generation)
            found = [loaded[key] if value is MISSING else value
                     for key, value in zip(keys, found, strict=True)]
        return found  # type: ignore[return-value]

    def revoked_at(self, org_id: int, user_id: int, session_id: str,
                   conn: Connection | None) -> int | None:
        """When this agent session was revoked, if it was."""
        return self._revoked_at((_session_key(org_id, user_id, session_id),), conn)[0]

    def is_denied(self, org_id: int, user_id: int, session_id: str, issued_at: int,
                  parent: str, conn: Connection | None) -> bool:
        """Whether a token of this session, issued at ``issued_at`` by ``parent``, is dead."""
        session_revoked, parent_revoked = self._revoked_at(
            (_session_key(org_id, user_id, session_id), _parent_key(parent)), conn)
        if session_revoked is not None and issued_at <= session_revoked:
            return True
        return parent_revoked is not None
