"""A small key-value store with expiry: Redis when configured, else a SQL table.

Used for short-lived shared state that every server process must see (the agent
session deny list). Values are strings; keys are namespaced by the caller.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from scopegate.store.models import KVEntry
from scopegate.store.types import utcnow


class KV(Protocol):
    def get(self, key: str) -> str | None: ...
    def set(self, key: str, value: str, ttl_seconds: int) -> None: ...
    def delete(self, key: str) -> None: ...


class SQLKV:
    """KV in the ``kv`` table; expired rows read as absent and are purged on write."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory

    def get(self, key: str) -> str | None:
        with self._factory() as session:
            return self.get_in(session, key)

    @staticmethod
    def get_in(session: Session, key: str) -> str | None:
        """``get`` on the caller's session (no second connection checkout)."""
        row = session.execute(
            select(KVEntry.value, KVEntry.expires_at).where(KVEntry.key == key)
        ).first()
        if row is None or (row.expires_at is not None and row.expires_at <= utcnow()):
            return None
        return row.value

    def set(self, key: str, value: str, ttl_seconds: int) -> None:
        with self._factory() as session, session.begin():
            self.set_in(session, key, value, ttl_seconds)

    @staticmethod
    def set_in(session: Session, key: str, value: str, ttl_seconds: int) -> None:
        """``set`` inside the caller's transaction (atomic with the caller's change)."""
        expires = utcnow() + timedelta(seconds=ttl_seconds)
        dialect = session.get_bind().dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        stmt = insert(KVEntry).values(key=key, value=value, expires_at=expires)
        stmt = stmt.on_conflict_do_update(
            index_elements=[KVEntry.key], set_={"value": value, "expires_at": expires}
        )
        session.execute(stmt)
        session.execute(delete(KVEntry).where(KVEntry.expires_at <= utcnow()))

    def delete(self, key: str) -> None:
        with self._factory() as session, session.begin():
            session.execute(delete(KVEntry).where(KVEntry.key == key))


class RedisKV:
    """KV in Redis, with native expiry."""

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, decode_responses=True, socket_timeout=2)

    def get(self, key: str) -> str | None:
        value = self._redis.get(key)
        return None if value is None else str(value)

    def set(self, key: str, value: str, ttl_seconds: int) -> None:
        self._redis.set(key, value, ex=max(1, ttl_seconds))

    def delete(self, key: str) -> None:
        self._redis.delete(key)
