"""A small key-value table with expiry (``kv``), for short-lived shared state.

Holds the agent deny list (``services/deny_list.py``). Values are strings; keys are
namespaced by the caller. Expired rows read as absent and are purged on write.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from scopegate.store.models import KVEntry
from scopegate.store.types import utcnow


def read(conn: Connection | Session, key: str) -> str | None:
    """The live value of ``key``, on the caller's connection (no second checkout)."""
    row = conn.execute(
        select(KVEntry.value, KVEntry.expires_at).where(KVEntry.key == key)
    ).first()
    if row is None or (row.expires_at is not None and row.expires_at <= utcnow()):
        return None
    return row.value


def read_many(conn: Connection | Session, keys: list[str]) -> dict[str, str]:
    """The live values of those of ``keys`` that have one, in one query."""
    now = utcnow()
    rows = conn.execute(
        select(KVEntry.key, KVEntry.value, KVEntry.expires_at).where(KVEntry.key.in_(keys))
    ).all()
    return {row.key: row.value for row in rows
            if row.expires_at is None or row.expires_at > now}


def write(session: Session, key: str, value: str, ttl_seconds: int) -> None:
    """Set ``key`` inside the caller's transaction (atomic with the caller's change)."""
    expires = utcnow() + timedelta(seconds=ttl_seconds)
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(KVEntry).values(key=key, value=value, expires_at=expires)
    stmt = stmt.on_conflict_do_update(
        index_elements=[KVEntry.key], set_={"value": value, "expires_at": expires}
    )
    session.execute(stmt)
    session.execute(delete(KVEntry).where(KVEntry.expires_at <= utcnow()))
