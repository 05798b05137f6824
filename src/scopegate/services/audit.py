"""The append-only audit log. Events name credentials and scopes, never secrets.

Most events are written in the transaction of the change they record (``record``).
Denials (a cross-organization attempt, an ``insufficient_scope`` challenge) are decided
by the request gate, before and outside any transaction: the gate hands them back as
``AuditEvent`` rows (``event``) and the web layer writes them in a batch after the
response (``write_events``), so no rollback can lose them.

Either way each new row is linked into its organization's hash chain as it is flushed
(``store/audit_links.py``; checked and exported by ``services/audit_chain.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, sessionmaker

from scopegate.store import audit_links
from scopegate.store.db import SQLITE_IMMEDIATE
from scopegate.store.models import AuditEvent


class Event:
    MINT = "agent.mint"
    CHALLENGE = "agent.challenge"
    APPROVE = "agent.approve"
    DENY = "agent.deny"
    REVOKE = "agent.revoke"
    REVOKE_SESSION = "agent.revoke_session"
    CROSS_ORG = "access.cross_org"
    KEY_ROTATE = "keys.rotate"
    INTEGRATION_CREATE = "integration.create"
    INTEGRATION_UPDATE = "integration.update"
    INTEGRATION_DELETE = "integration.delete"
    INTEGRATION_TOKEN_CREATE = "integration.token_create"  # noqa: S105 (an event name)
    INTEGRATION_TOKEN_REVOKE = "integration.token_revoke"  # noqa: S105 (an event name)
    #: A credential narrowed to fewer scopes (an integration, an org token).
    SCOPES_NARROW = "scopes.narrow"
    ALL = (MINT, CHALLENGE, APPROVE, DENY, REVOKE, REVOKE_SESSION, CROSS_ORG, KEY_ROTATE,
           INTEGRATION_CREATE, INTEGRATION_UPDATE, INTEGRATION_DELETE,
           INTEGRATION_TOKEN_CREATE, INTEGRATION_TOKEN_REVOKE, SCOPES_NARROW)


@dataclass(frozen=True)
class RequestInfo:
    """Who and where, as the web layer saw it (bounded before storage)."""

    ip: str | None = None
    user_agent: str | None = None
    #: ``"<METHOD> <path>"`` of the request, for events that name what was attempted.
    action: str = ""


def event(
    name: str,
    *,
    org_id: int | None,
    user_id: int | None,
    session_id: str | None = None,
    agent: str | None = None,
    scopes: Iterable[str] | None = None,
    request: RequestInfo | None = None,
    detail: str = "",
) -> AuditEvent:
    """An audit row for ``name``, its fields bounded to the columns' sizes."""
    request = request or RequestInfo()
    return AuditEvent(
        event=name,
        org_id=org_id,
        user_id=user_id,
        session_id=session_id,
        agent=agent[:128] if agent else None,
        scopes=frozenset(scopes) if scopes is not None else None,
        ip=request.ip[:64] if request.ip else None,
        user_agent=request.user_agent[:256] if request.user_agent else None,
        detail=detail[:512],
    )


def record(db: Session, name: str, **fields: object) -> None:
    """Record the event ``name`` in the current transaction (see ``add``)."""
    add(db, event(name, **fields))  # type: ignore[arg-type]


def add(db: Session, row: AuditEvent) -> None:
    """Record ``row`` in the current transaction. It is written at commit, after every
    other change, so the chain's head is the transaction's last lock
    (``store/audit_links.py``)."""
    audit_links.add_at_commit(db, row)


def write_events(factory: sessionmaker[Session], events: list[AuditEvent]) -> None:
    """Write ``events`` in a transaction of their own (denials, after the request).

    On SQLite the transaction takes the write lock first (``BEGIN IMMEDIATE``): linking
    the events reads their chain's head, and a deferred transaction that reads then
    writes fails once another process's writer has committed in between."""
    with factory() as db, db.begin():
        immediate = db.get_bind().dialect.name == "sqlite"
        audit_links.write(db.connection(execution_options={SQLITE_IMMEDIATE: immediate}),
                          events)


@dataclass(frozen=True)
class AuditFilter:
    event: str | None = None
    user_id: int | None = None
    session_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def query(org_id: int, flt: AuditFilter, *, limit: int, offset: int) -> Select[tuple[AuditEvent]]:
    stmt = select(AuditEvent).where(AuditEvent.org_id == org_id)
    if flt.event:
        stmt = stmt.where(AuditEvent.event == flt.event)
    if flt.user_id is not None:
        stmt = stmt.where(AuditEvent.user_id == flt.user_id)
    if flt.session_id:
        stmt = stmt.where(AuditEvent.session_id == flt.session_id)
    if flt.since:
        stmt = stmt.where(AuditEvent.created_at >= flt.since)
    if flt.until:
        stmt = stmt.where(AuditEvent.created_at < flt.until)
    return stmt.order_by(AuditEvent.id.desc()).limit(limit).offset(offset)


def list_events(
    db: Session, org_id: int, flt: AuditFilter, *, limit: int = 50, offset: int = 0
) -> list[AuditEvent]:
    return list(db.scalars(query(org_id, flt, limit=limit, offset=offset)))
