"""Assembling access for a request: the one place an organization is checked.

Endpoints never compare organizations or scopes themselves; they receive the
``OrgAccess`` this module builds (or a ``NotFound``). A credential bound to another
organization is refused here, logged, and audited.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from scopegate.core.access import Access, Principal, Refusal, assemble_access
from scopegate.core.roles import Role
from scopegate.core.token_kinds import TokenKind
from scopegate.services import audit
from scopegate.services.authentication import AuthenticationFailed
from scopegate.services.errors import NotFound
from scopegate.store.models import SLUG_MAX, Member, Organization, User

log = logging.getLogger("scopegate.security")


@dataclass(frozen=True)
class OrgAccess:
    org: Organization
    access: Access


def _org_and_role(
    db: Session, org_slug: str, user_id: int | None
) -> tuple[Organization, Role | None] | None:
    """The organization and the active user's role in it, in one query."""
    if user_id is None:
        org = db.scalar(select(Organization).where(Organization.slug == org_slug))
        return (org, None) if org is not None else None
    member = (
        select(Member.org_id, Member.role)
        .join(User, User.id == Member.user_id)
        .where(Member.user_id == user_id, User.is_active)
        .subquery()
    )
    row = db.execute(
        select(Organization, member.c.role)
        .outerjoin(member, member.c.org_id == Organization.id)
        .where(Organization.slug == org_slug)
    ).first()
    if row is None:
        return None
    return row[0], Role(row[1]) if row[1] else None


def access_for(
    db: Session, principal: Principal, org_slug: str, request: audit.RequestInfo | None = None
) -> OrgAccess:
    """The access ``principal`` holds in the organization ``org_slug``.

    Raises ``NotFound`` alike for an unknown organization, one the person is not a
    member of, and one the credential is not bound to: no existence leak; and
    ``AuthenticationFailed`` for an agent token of an organization that turned agent
    tokens off.
    """
    found = _org_and_role(db, org_slug, principal.user_id) if len(org_slug) <= SLUG_MAX else None
    if found is None:
        raise NotFound("organization not found")
    org, role = found
    result = assemble_access(principal, org.id, role)
    if result is Refusal.OTHER_ORG:
        log.warning(
            "cross-organization credential refused: credential=%s bound_org=%s target_org=%s",
            principal.credential_ref,
            principal.org_id,
            org.id,
        )
        audit.record_denial(
            db,
            audit.Event.CROSS_ORG,
            org_id=principal.org_id,
            user_id=principal.user_id,
            session_id=principal.agent_session,
            act=principal.act,
            request=request,
            detail=f"{principal.credential_ref} presented against organization {org.id}",
        )
        raise NotFound("organization not found")
    if isinstance(result, Refusal):
        raise NotFound("organization not found")
    if principal.kind is TokenKind.AGENT and not org.agent_tokens_enabled:
        # Turning agent tokens off stops the live ones too, not only new mints.
        raise AuthenticationFailed("Agent tokens are turned off for this organization.")
    return OrgAccess(org=org, access=result)
