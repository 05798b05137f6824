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
from scopegate.services import audit
from scopegate.services.directory import role_in
from scopegate.services.errors import NotFound
from scopegate.store.models import SLUG_MAX, Organization

log = logging.getLogger("scopegate.security")


@dataclass(frozen=True)
class OrgAccess:
    org: Organization
    access: Access


def access_for(
    db: Session, principal: Principal, org_slug: str, request: audit.RequestInfo | None = None
) -> OrgAccess:
    """The access ``principal`` holds in the organization ``org_slug``.

    Raises ``NotFound`` alike for an unknown organization, one the person is not a
    member of, and one the credential is not bound to: no existence leak.
    """
    org = None
    if len(org_slug) <= SLUG_MAX:
        org = db.scalar(select(Organization).where(Organization.slug == org_slug))
    if org is None:
        raise NotFound("organization not found")
    role = role_in(db, org.id, principal.user_id) if principal.user_id is not None else None
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
    return OrgAccess(org=org, access=result)
