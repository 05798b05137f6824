"""The organization's audit log (append-only; read with ``org:write``)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from scopegate.guard import OrgAccess, Permission, Rule, ScopeMap
from scopegate.guard import scopes as s
from scopegate.services import audit
from scopegate.services.errors import Invalid
from scopegate.store.models import AGENT_SESSION_MAX, AuditEvent
from scopegate.web.api.models import ApiModel, UtcDateTime
from scopegate.web.transactions import TransactionalRoute, get_db

router = APIRouter(route_class=TransactionalRoute, tags=["audit"])

AUDIT_LOG = ScopeMap({"GET": Rule((s.ORG_WRITE, s.ORG_ADMIN), "read the audit log")})


class AuditEventOut(ApiModel):
    id: str
    event: str
    date_created: datetime
    user_id: str | None
    session_id: str | None
    act: str | None
    scopes: list[str] | None
    ip_address: str | None
    user_agent: str | None
    detail: str

    @classmethod
    def of(cls, row: AuditEvent) -> AuditEventOut:
        return cls(
            id=str(row.id), event=row.event, date_created=row.created_at,
            user_id=str(row.user_id) if row.user_id is not None else None,
            session_id=row.session_id, act=row.agent,
            scopes=s.ordered(row.scopes) if row.scopes is not None else None,
            ip_address=row.ip, user_agent=row.user_agent, detail=row.detail,
        )


@router.get("/organizations/{org}/audit-logs/", response_model=list[AuditEventOut])
def list_audit_events(
    event: str | None = Query(default=None, max_length=32),
    user_id: int | None = Query(default=None, ge=1, le=2**31 - 1, alias="userId"),
    session_id: str | None = Query(default=None, max_length=AGENT_SESSION_MAX, alias="sessionId"),
    since: UtcDateTime | None = None,
    until: UtcDateTime | None = None,
    page: int = Query(default=1, ge=1, le=100_000),
    per_page: int = Query(default=50, ge=1, le=200, alias="perPage"),
    oa: OrgAccess = Depends(Permission(AUDIT_LOG)),
    db: Session = Depends(get_db),
) -> list[AuditEventOut]:
    """Newest first. Filter by ``event`` (e.g. ``agent.mint``), ``userId``, ``sessionId``,
    and a ``since``/``until`` time window."""
    if event is not None and event not in audit.Event.ALL:
        raise Invalid("event: one of " + ", ".join(audit.Event.ALL))
    flt = audit.AuditFilter(event=event, user_id=user_id, session_id=session_id,
                            since=since, until=until)
    rows = audit.list_events(db, oa.org.id, flt, limit=per_page, offset=(page - 1) * per_page)
    return [AuditEventOut.of(row) for row in rows]
