"""Reading the audit chains back: checking them (``audit verify``) and exporting them as
JSON-ready records (``audit export``), both streamed in ``seq`` order with bounded memory.

Both run in one snapshot (``snapshot``): on PostgreSQL a REPEATABLE READ transaction, on
SQLite the read transaction itself, so writers appending meanwhile never make a chain
and its head look inconsistent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, union
from sqlalchemy.orm import Session

from scopegate.core.audit_chain import NO_ORG, Break, Head, format_time, verify
from scopegate.store.models import AuditChainHead, AuditEvent, Organization

#: Rows fetched per round trip while streaming.
PAGE = 500
COLUMNS = (AuditEvent.id, AuditEvent.chain, AuditEvent.seq, AuditEvent.prev_hash,
           AuditEvent.hash, AuditEvent.created_at, AuditEvent.event, AuditEvent.org_id,
           AuditEvent.user_id, AuditEvent.session_id, AuditEvent.agent, AuditEvent.scopes,
           AuditEvent.ip, AuditEvent.user_agent, AuditEvent.detail)


@dataclass(frozen=True)
class ChainReport:
    chain: int
    #: The organization's slug; None for the no-organization chain or a deleted one.
    org_slug: str | None
    events: int
    head: Head | None
    broken: Break | None

    @property
    def name(self) -> str:
        if self.chain == NO_ORG:
            return "(no organization)"
        return self.org_slug or f"(deleted organization {self.chain})"


def snapshot(db: Session) -> None:
    """Read everything after this in one snapshot. Call before the session's first query."""
    if db.get_bind().dialect.name == "postgresql":
        db.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def chains(db: Session) -> list[int]:
    """Every chain that has a head or an event."""
    both = union(select(AuditChainHead.chain), select(AuditEvent.chain).distinct())
    return sorted(db.scalars(select(both.subquery().c.chain)))


def verify_chain(db: Session, chain: int) -> ChainReport:
    """Check ``chain`` end to end against its head."""
    stored = db.get(AuditChainHead, chain)
    head = Head(stored.seq, stored.hash) if stored is not None else None
    counted = _Counted(_rows(db, chain))
    broken = verify(chain, counted, head)
    return ChainReport(chain, _slug(db, chain), counted.count, head, broken)


def export(db: Session, *, chain: int | None = None,
           since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Events as JSON-ready dicts, chain by chain in ``seq`` order."""
    stmt = select(*COLUMNS)
    if chain is not None:
        stmt = stmt.where(AuditEvent.chain == chain)
    if since is not None:
        stmt = stmt.where(AuditEvent.created_at >= since)
    stmt = stmt.order_by(AuditEvent.chain, AuditEvent.seq).execution_options(yield_per=PAGE)
    slugs: dict[int, str] = {oid: slug for oid, slug in
                             db.execute(select(Organization.id, Organization.slug))}
    for row in db.execute(stmt):
        yield record(row, slugs.get(row.chain))


def record(row: Row[Any], org_slug: str | None) -> dict[str, Any]:
    """One exported event: every stored field, times in ISO 8601 UTC."""
    return {
        "id": row.id, "chain": row.chain, "seq": row.seq, "org": org_slug,
        "org_id": row.org_id, "created_at": format_time(row.created_at),
        "event": row.event, "user_id": row.user_id, "session_id": row.session_id,
        "agent": row.agent,
        "scopes": sorted(row.scopes) if row.scopes is not None else None,
        "ip": row.ip, "user_agent": row.user_agent, "detail": row.detail,
        "prev_hash": row.prev_hash, "hash": row.hash,
    }


def _rows(db: Session, chain: int) -> Iterator[Row[Any]]:
    stmt = (select(*COLUMNS).where(AuditEvent.chain == chain).order_by(AuditEvent.seq)
            .execution_options(yield_per=PAGE))
    yield from db.execute(stmt)


def _slug(db: Session, chain: int) -> str | None:
    if chain == NO_ORG:
        return None
    return db.scalar(select(Organization.slug).where(Organization.id == chain))


class _Counted:
    """An iterator that counts what it hands out."""

    def __init__(self, rows: Iterator[Row[Any]]) -> None:
        self._rows = rows
        self.count = 0

    def __iter__(self) -> Iterator[Row[Any]]:
        for row in self._rows:
            self.count += 1
            yield row
