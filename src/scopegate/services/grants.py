"""Write grants: the write scopes a person approved for one agent session, until when.

One row per ``(organization, user, agent session)`` (a unique constraint). Approving
merges into that row under a row lock (``SELECT ... FOR UPDATE`` on PostgreSQL;
``BEGIN IMMEDIATE`` on SQLite, taken by the request); two first approvals racing to
insert meet the unique constraint (``ON CONFLICT DO NOTHING``: the loser inserts nothing)
and the loser retries as a merge. No outcome of the race is a 500.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Executable, bindparam, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from scopegate.core import agent_token
from scopegate.core.changes import Change, Topic, grant_key
from scopegate.core.grants import cap_approval, merge_grant
from scopegate.core.roles import role_scopes
from scopegate.services import audit, directory
from scopegate.services.access import OrgRecord
from scopegate.services.deny_list import DenyList
from scopegate.services.errors import Conflict, Forbidden, Invalid, NotFound
from scopegate.services.metrics import APPROVALS, tally
from scopegate.store.models import AuditEvent, Organization, WriteGrant
from scopegate.store.outbox import record_change
from scopegate.store.types import utcnow

#: Lifetimes offered on the approval page (seconds); the default is four hours.
LIFETIME_CHOICES = {"15m": 15 * 60, "4h": 4 * 3600, "24h": 24 * 3600}
DEFAULT_LIFETIME = "4h"
MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class Approval:
    grant_id: int
    scopes: frozenset[str]
    #: What the approver asked for but does not hold: dropped, never stored.
    dropped: frozenset[str]
    expires_in: int


SESSION_ID_RULE = "sessionId: 1-128 characters from A-Z a-z 0-9 . _ : @ -"
AGENT_NAME_RULE = (
    "agent: 1-128 characters from A-Z a-z 0-9, space and . _ : @ / + ~ ( ) -, "
    "no space at either end"
)


def check_session_and_agent(session_id: str, agent: str) -> None:
    """The one validation of an agent session id and agent name, on every path that
    records or shows them (mint, approve, deny, revoke, the approval page)."""
    if not agent_token.valid_session_id(session_id):
        raise Invalid(SESSION_ID_RULE)
    if agent and not agent_token.valid_agent_name(agent):
        raise Invalid(AGENT_NAME_RULE)


def lifetime_seconds(choice: str | int, org: OrgRecord | Organization) -> int:
    """A lifetime choice, bounded by the organization's maximum."""
    if isinstance(choice, str):
        if choice not in LIFETIME_CHOICES:
            raise Invalid("lifetime: choose one of " + ", ".join(LIFETIME_CHOICES))
        seconds = LIFETIME_CHOICES[choice]
    else:
        seconds = choice
    if seconds < 60:
        raise Invalid("lifetime: at least 60 seconds")
    return min(seconds, org.max_grant_seconds)


def approve(
    db: Session,
    *,
    org: OrgRecord | Organization,
    approver_id: int,
    session_id: str,
    requested: frozenset[str],
    lifetime: int,
    agent: str = "",
    request: audit.RequestInfo | None = None,
) -> Approval:
    """Create or extend the grant for the approver's own agent session, in ``db``'s
    transaction (on SQLite the caller holds the write lock: ``BEGIN IMMEDIATE``).

    The stored scopes are ``requested`` capped at the approver's current role in
    ``org``; nothing the approver lacks is ever stored. The existing row is locked
    (``FOR UPDATE``) and merged; when there is none, it is inserted unless a concurrent
    approval's row is there first (``ON CONFLICT DO NOTHING``), and losing that race
    means locking and merging into the winner's row on the next pass.
    """
    check_session_and_agent(session_id, agent)
    if not requested:
        raise Invalid("scopes: name at least one scope to approve")
    role = directory.role_in(db, org.id, approver_id)
    if role is None:
        raise NotFound("organization not found")
    capped = cap_approval(requested, role_scopes(role))
    if not capped:
        raise Forbidden("You hold none of the requested scopes in this organization.")
    for _ in range(MAX_ATTEMPTS):
        now = utcnow()
        expires = now + timedelta(seconds=lifetime)
        row = _locked_grant(db, org.id, approver_id, session_id)
        if row is not None:
            live = row.expires_at > now
            row.scopes = merge_grant(row.scopes if live else None, capped)
            row.expires_at = max(row.expires_at, expires) if live else expires
            row.updated_at = now
            row.agent = agent or row.agent
            db.flush()
            grant_id, scopes = row.id, frozenset(row.scopes)
            break
        grant_id = db.scalar(_insert_grant(db.get_bind().dialect.name), {
            "org_id": org.id, "user_id": approver_id, "session_id": session_id,
            "agent": agent, "scopes": capped, "created_at": now, "updated_at": now,
            "expires_at": expires})
        if grant_id is not None:
            scopes = capped
            break
        # A concurrent approval inserted first: lock its row and merge on the next pass.
    else:
        raise Conflict("Too many concurrent approvals for this session; try again.")
    audit.record(
        db, audit.Event.APPROVE, org_id=org.id, user_id=approver_id, session_id=session_id,
        agent=agent or None, scopes=capped, request=request, detail=f"lifetime={lifetime}s",
    )
    record_change(db, Change(Topic.GRANT, grant_key(org.id, approver_id, session_id)))
    tally(APPROVALS, "approve").count += 1
    return Approval(grant_id, scopes, requested - capped, lifetime)


_GRANTS = WriteGrant.__table__
_INSERTED = ("org_id", "user_id", "session_id", "agent", "scopes", "created_at", "updated_at",
             "expires_at")
_LOCKED_GRANT = select(WriteGrant).where(
    WriteGrant.org_id == bindparam("org_id"),
    WriteGrant.user_id == bindparam("user_id"),
    WriteGrant.session_id == bindparam("session_id"),
).with_for_update()


@functools.cache
def _insert_grant(dialect: str) -> Executable:
    """A new grant's ``INSERT``, doing nothing when the session's row exists (then no
    ``id`` comes back); built once per dialect."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (insert(_GRANTS).values({name: bindparam(name) for name in _INSERTED})
            .on_conflict_do_nothing(index_elements=["org_id", "user_id", "session_id"])
            .returning(_GRANTS.c.id))


def _locked_grant(db: Session, org_id: int, user_id: int, session_id: str) -> WriteGrant | None:
    return db.scalar(_LOCKED_GRANT, {"org_id": org_id, "user_id": user_id,
                                     "session_id": session_id})


def record_denial(
    db: Session, *, org: OrgRecord | Organization, user_id: int, session_id: str,
    scopes: frozenset[str], agent: str = "", request: audit.RequestInfo | None = None,
) -> None:
    """Denying stores nothing but the audit event, validated like an approval."""
    check_session_and_agent(session_id, agent)
    audit.record(
        db, audit.Event.DENY, org_id=org.id, user_id=user_id,
        session_id=session_id, agent=agent or None, scopes=scopes, request=request,
    )
    tally(APPROVALS, "deny").count += 1


def list_grants(db: Session, user_id: int) -> list[WriteGrant]:
    """The person's live grants, most recently approved first."""
    stmt = select(WriteGrant).where(WriteGrant.user_id == user_id,
                                    WriteGrant.expires_at > utcnow())
    return list(db.scalars(stmt.order_by(WriteGrant.updated_at.desc()).limit(500)))


@dataclass(frozen=True)
class AgentSession:
    org_id: int
    org_slug: str
    session_id: str
    agent: str | None
    last_minted: object | None
    grant: WriteGrant | None


def list_sessions(db: Session, user_id: int, since_hours: int = 24) -> list[AgentSession]:
    """My agent sessions: those with a live grant, and those that minted recently."""
    since = utcnow() - timedelta(hours=since_hours)
    minted = db.execute(
        select(AuditEvent.org_id, AuditEvent.session_id, func.max(AuditEvent.created_at),
               func.max(AuditEvent.agent))
        .where(AuditEvent.user_id == user_id, AuditEvent.event == audit.Event.MINT,
               AuditEvent.created_at >= since, AuditEvent.session_id.is_not(None))
        .group_by(AuditEvent.org_id, AuditEvent.session_id)
        .limit(500)
    ).all()
    grants = {(g.org_id, g.session_id): g for g in list_grants(db, user_id)}
    keys = {(row[0], row[1]): (row[2], row[3]) for row in minted}
    for key, grant in grants.items():
        keys.setdefault(key, (None, grant.agent or None))
    slugs = dict(db.execute(select(Organization.id, Organization.slug)
                            .where(Organization.id.in_({k[0] for k in keys}))).all())
    sessions = [
        AgentSession(org_id, slugs.get(org_id, "?"), sid, act, last, grants.get((org_id, sid)))
        for (org_id, sid), (last, act) in keys.items() if org_id in slugs
    ]
    return sorted(sessions, key=lambda s: (s.org_slug, s.session_id))


def revoke_session(
    db: Session,
    deny_list: DenyList,
    *,
    org: OrgRecord | Organization,
    user_id: int,
    session_id: str,
    request: audit.RequestInfo | None = None,
    event: str = audit.Event.REVOKE_SESSION,
) -> bool:
    """Delete the session's grant and refuse its live tokens. Returns whether a grant existed.

    Two guards, so that no token of the session writes once this has committed: the deny
    entry refuses every token issued up to now, and the grant's deletion strips the write
    scopes of any token whose mint raced this revocation (verification honours a token's
    write scopes only while the grant holds them: ``GrantCache``).
    """
    check_session_and_agent(session_id, "")
    deny_list.deny(db, org.id, user_id, session_id)
    result = db.execute(
        delete(WriteGrant).where(
            WriteGrant.org_id == org.id, WriteGrant.user_id == user_id,
            WriteGrant.session_id == session_id,
        )
    )
    audit.record(
        db, event, org_id=org.id, user_id=user_id, session_id=session_id, request=request
    )
    record_change(db, Change(Topic.GRANT, grant_key(org.id, user_id, session_id)))
    return bool(result.rowcount)


def cap_grants(db: Session, org: OrgRecord) -> int:
    """Shorten the organization's live grants to ``org.max_grant_seconds`` after their
    last approval; returns how many changed. Run when the maximum is lowered."""
    now = utcnow()
    changed = 0
    for row in db.scalars(
        select(WriteGrant).where(WriteGrant.org_id == org.id, WriteGrant.expires_at > now)
        .with_for_update()
    ):
        cap = row.updated_at + timedelta(seconds=org.max_grant_seconds)
        if row.expires_at > cap:
            row.expires_at = cap
            changed += 1
            record_change(db, Change(Topic.GRANT, grant_key(org.id, row.user_id,
                                                            row.session_id)))
    db.flush()
    return changed


def revoke_grant(
    db: Session, deny_list: DenyList, *, grant_id: int, user_id: int,
    request: audit.RequestInfo | None = None,
) -> None:
    """Revoke one of my grants. A token cannot be partly revoked, so this also stops the
    session's live tokens (the agent can mint read-only ones again)."""
    grant = db.scalar(
        select(WriteGrant).where(WriteGrant.id == grant_id, WriteGrant.user_id == user_id)
    )
    if grant is None:
        raise NotFound("grant not found")
    org = db.get(Organization, grant.org_id)
    if org is None:
        raise NotFound("grant not found")
    revoke_session(
        db, deny_list, org=org, user_id=user_id, session_id=grant.session_id,
        request=request, event=audit.Event.REVOKE,
    )
