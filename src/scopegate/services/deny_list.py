"""The agent-session deny list: revoked sessions whose live tokens must stop working.

An entry ``(org, user, session) -> revoked_at`` is written in the database (the ``kv``
table, in the revoking transaction) and in Redis too when configured, which is then
read first. It lives until the longest possible token lifetime has passed; a token of
that session issued at or before ``revoked_at`` is refused. Reads go through an
in-process cache of ``cache_seconds``: that is the worst-case delay before *another*
process refuses a revoked session's token (the revoking process updates its own cache
at once).
"""

from __future__ import annotations

import hashlib
import threading
import time

from sqlalchemy.orm import Session

from scopegate.store.kv import KV, SQLKV

_PREFIX = "agent-deny:"
_MAX_CACHE = 50_000


def _key(org_id: int, user_id: int, session_id: str) -> str:
    digest = hashlib.sha256(session_id.encode()).hexdigest()[:32]
    return f"{_PREFIX}{org_id}:{user_id}:{digest}"


class DenyList:
    def __init__(self, sql: SQLKV, redis: KV | None, cache_seconds: float) -> None:
        self._sql = sql
        self._redis = redis
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[int | None, float]] = {}
        self._lock = threading.Lock()

    def deny(self, db: Session, org_id: int, user_id: int, session_id: str,
             ttl_seconds: int) -> int:
        """Refuse this session's tokens issued up to now; returns the revocation time.

        The database entry is part of ``db``'s transaction; Redis is written first, so a
        rollback can only leave the session more revoked, never less.
        """
        revoked_at = int(time.time())
        key = _key(org_id, user_id, session_id)
        if self._redis is not None:
            self._redis.set(key, str(revoked_at), ttl_seconds)
        self._sql.set_in(db, key, str(revoked_at), ttl_seconds)
        with self._lock:
            self._cache[key] = (revoked_at, time.monotonic())
        return revoked_at

    def revoked_at(
        self, org_id: int, user_id: int, session_id: str, db: Session | None = None
    ) -> int | None:
        key = _key(org_id, user_id, session_id)
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

    def is_denied(
        self, org_id: int, user_id: int, session_id: str, issued_at: int,
        db: Session | None = None,
    ) -> bool:
        revoked = self.revoked_at(org_id, user_id, session_id, db)
        return revoked is not None and issued_at <= revoked
