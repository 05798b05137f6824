"""The agent deny list: revoked sessions and ended parent credentials whose agent tokens
must stop working before their ``exp``.

Two kinds of entry, both written in the database (the ``kv`` table, in the revoking
transaction) and in Redis too when configured, which is then read first:

* ``(org, user, session) -> revoked_at``: a revoked agent session. A token of that session
  issued at or before ``revoked_at`` is refused; later ones (minted read-only again, since
  the grant is gone) work.
* ``parent credential -> revoked_at``: a user token revoked or a browser session logged
  out. Every agent token that credential minted is refused (``par`` claim).

Entries live until the longest possible token lifetime has passed. Reads go through an
in-process cache of ``cache_seconds``: that is the worst-case delay before *another*
process refuses a revoked token (the revoking process updates its own cache at once).
"""

from __future__ import annotations

import hashlib
import threading
import time

from sqlalchemy.orm import Session

from scopegate.store.kv import KV, SQLKV

_SESSION_PREFIX = "agent-deny:"
_PARENT_PREFIX = "agent-parent-deny:"
_MAX_CACHE = 50_000


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _session_key(org_id: int, user_id: int, session_id: str) -> str:
    return f"{_SESSION_PREFIX}{org_id}:{user_id}:{_digest(session_id)}"


def _parent_key(parent: str) -> str:
    return _PARENT_PREFIX + _digest(parent)


class DenyList:
    def __init__(self, sql: SQLKV, redis: KV | None, cache_seconds: float,
                 ttl_seconds: int) -> None:
        self._sql = sql
        self._redis = redis
        self._cache_seconds = cache_seconds
        #: How long an entry must live: the longest token lifetime plus leeway.
        self.ttl_seconds = ttl_seconds
        self._cache: dict[str, tuple[int | None, float]] = {}
        self._lock = threading.Lock()

    # -- writing -------------------------------------------------------------------
    def _write(self, db: Session, key: str) -> int:
        """Record ``key`` as revoked now, in ``db``'s transaction. Redis is written first,
        so a rollback can only leave a token more revoked, never less."""
        revoked_at = int(time.time())
        if self._redis is not None:
            self._redis.set(key, str(revoked_at), self.ttl_seconds)
        self._sql.set_in(db, key, str(revoked_at), self.ttl_seconds)
        with self._lock:
            self._cache[key] = (revoked_at, time.monotonic())
        return revoked_at

    def deny(self, db: Session, org_id: int, user_id: int, session_id: str) -> int:
        """Refuse this agent session's tokens issued up to now; returns the revocation time."""
        return self._write(db, _session_key(org_id, user_id, session_id))

    def deny_parent(self, db: Session, parent: str) -> int:
        """Refuse every agent token minted by the credential ``parent`` (its reference)."""
        return self._write(db, _parent_key(parent))

    # -- reading -------------------------------------------------------------------
    def _revoked_at(self, key: str, db: Session | None) -> int | None:
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and now - cached[1] < self._cache_seconds:
            return cached[0]
        if self._redis is not None:
            raw = self._redis.get(key)
        elif db is not None:
            raw = self._sql.get_in(db, key)
        else:
            raw = self._sql.get(key)
        value = int(raw) if raw is not None and raw.isdigit() else None
        with self._lock:
            if len(self._cache) > _MAX_CACHE:
                self._cache.clear()
            self._cache[key] = (value, now)
        return value

    def revoked_at(
        self, org_id: int, user_id: int, session_id: str, db: Session | None = None
    ) -> int | None:
        """When this agent session was revoked, if it was."""
        return self._revoked_at(_session_key(org_id, user_id, session_id), db)

    def is_denied(
        self, org_id: int, user_id: int, session_id: str, issued_at: int, parent: str,
        db: Session | None = None,
    ) -> bool:
        """Whether a token of this session, issued at ``issued_at`` by ``parent``, is dead."""
        revoked = self.revoked_at(org_id, user_id, session_id, db)
        if revoked is not None and issued_at <= revoked:
            return True
        return self._revoked_at(_parent_key(parent), db) is not None
