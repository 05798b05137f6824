"""Assembling access for a request: the one place an organization is checked.

Endpoints never compare organizations or scopes themselves; they receive the
``OrgAccess`` this module builds (or a ``NotFound``). A credential bound to another
organization is refused here, logged, and audited.

The organization row and each person's role in it are cached (``AccessCache``) and
forgotten when they change (``Topic.ORG``, ``Topic.MEMBER``); a miss costs one query,
the organization and the role together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, and_, select

from scopegate.core.access import OrgAccess, OrgRef, Principal, Refusal, assemble_access
from scopegate.core.changes import Topic, member_key
from scopegate.core.roles import Role
from scopegate.core.token_kinds import TokenKind
from scopegate.services import audit
from scopegate.services.authentication import AuthenticationFailed, NeedsIO
from scopegate.services.caches import MISSING, BoundedCache
from scopegate.services.change_feed import ChangeFeed
from scopegate.services.errors import NotFound
from scopegate.store.models import SLUG_MAX, AuditEvent, Member, Organization, User

log = logging.getLogger("scopegate.security")
CACHE_ENTRIES = 100_000


@dataclass(frozen=True)
class OrgRecord(OrgRef):
    """An organization as the request path knows it (an immutable snapshot)."""

    name: str
    created_at: datetime
    agent_tokens_enabled: bool
    max_grant_seconds: int


_ORG_COLUMNS = (
    Organization.id, Organization.slug, Organization.name, Organization.created_at,
    Organization.agent_tokens_enabled, Organization.max_grant_seconds,
)


def _record(row: object) -> OrgRecord:
    return OrgRecord(*(getattr(row, column.key) for column in _ORG_COLUMNS))


class AccessCache:
    """Organizations by slug and roles by (person, organization), from memory."""

    def __init__(self, feed: ChangeFeed) -> None:
        self._feed = feed
        self.orgs: BoundedCache[str, OrgRecord | None] = BoundedCache(CACHE_ENTRIES, "orgs")
        self.roles: BoundedCache[str, Role | None] = BoundedCache(CACHE_ENTRIES, "roles")
        feed.subscribe(Topic.ORG, self.orgs.forget)
        feed.subscribe(Topic.MEMBER, self._forget_member)

    def _forget_member(self, key: str | None) -> None:
        self.roles.forget(key)

    def org_and_role(
        self, slug: str, user_id: int | None, conn: Connection | None
    ) -> tuple[OrgRecord | None, Role | None]:
        fresh = self._feed.fresh()
        org = self.orgs.get(slug) if fresh else MISSING
        if org is MISSING:
            if conn is None:
                raise NeedsIO
            return self._load(conn, slug, user_id)
        if org is None or user_id is None:
            return org, None
        key = member_key(user_id, org.id)
        role = self.roles.get(key) if fresh else MISSING
        if role is MISSING:
            if conn is None:
                raise NeedsIO
            generation = self.roles.generation
            found = conn.execute(
                select(Member.role).join(User, User.id == Member.user_id)
                .where(Member.user_id == user_id, Member.org_id == org.id, User.is_active)
            ).scalar()
            role = Role(found) if found else None
            self.roles.put(key, role, generation)
        return org, role

    def _load(self, conn: Connection, slug: str,
              user_id: int | None) -> tuple[OrgRecord | None, Role | None]:
        """The organization and, for a person, their role in it: one query."""
        org_generation, role_generation = self.orgs.generation, self.roles.generation
        if user_id is None:
            row = conn.execute(select(*_ORG_COLUMNS).where(Organization.slug == slug)).first()
            org = _record(row) if row is not None else None
            self.orgs.put(slug, org, org_generation)
            return org, None
        member = (
            select(Member.org_id, Member.role)
            .join(User, and_(User.id == Member.user_id, User.is_active))
            .where(Member.user_id == user_id)
            .subquery()
        )
        row = conn.execute(
            select(*_ORG_COLUMNS, member.c.role)
            .outerjoin(member, member.c.org_id == Organization.id)
            .where(Organization.slug == slug)
        ).first()
        if row is None:
            self.orgs.put(slug, None, org_generation)
            return None, None
        org = _record(row)
        role = Role(row.role) if row.role else None
        self.orgs.put(slug, org, org_generation)
        self.roles.put(member_key(user_id, org.id), role, role_generation)
        return org, role


def access_for(
    cache: AccessCache,
    principal: Principal,
    org_slug: str,
    conn: Connection | None,
    denials: list[AuditEvent],
    request: audit.RequestInfo | None = None,
) -> OrgAccess:
    """The access ``principal`` holds in the organization ``org_slug``.

    Raises ``NotFound`` alike for an unknown organization, one the person is not a
    member of, and one the credential is not bound to: no existence leak; and
    ``AuthenticationFailed`` for an agent token of an organization that turned agent
    tokens off. A cross-organization attempt is appended to ``denials`` (an audit event
    the caller writes after the request, whatever becomes of its transaction).
    """
    if len(org_slug) > SLUG_MAX:
        raise NotFound("organization not found")
    org, role = cache.org_and_role(org_slug, principal.user_id, conn)
    if org is None:
        raise NotFound("organization not found")
    result = assemble_access(principal, org.id, role)
    if result is Refusal.OTHER_ORG:
        log.warning(
            "cross-organization credential refused: credential=%s bound_org=%s target_org=%s",
            principal.credential_ref, principal.org_id, org.id,
        )
        denials.append(audit.event(
            audit.Event.CROSS_ORG,
            org_id=principal.org_id,
            user_id=principal.user_id,
            session_id=principal.session_id,
            agent=principal.agent,
            request=request,
            detail=f"{principal.credential_ref} presented against organization {org.id}",
        ))
        raise NotFound("organization not found")
    if isinstance(result, Refusal):
        raise NotFound("organization not found")
    if principal.kind is TokenKind.AGENT and not org.agent_tokens_enabled:
        # Turning agent tokens off stops the live ones too, not only new mints.
        raise AuthenticationFailed("Agent tokens are turned off for this organization.")
    return OrgAccess(org=org, access=result)
