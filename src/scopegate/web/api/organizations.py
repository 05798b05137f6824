"""Organizations and projects."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Path
from pydantic import Field
from sqlalchemy.orm import Session

from scopegate.guard import Authenticated, OrgAccess, Permission, Principal, Rule, ScopeMap
from scopegate.guard import scopes as s
from scopegate.services import directory, grants
from scopegate.services.access import OrgRecord
from scopegate.services.errors import NotFound
from scopegate.store.models import NAME_MAX, SLUG_MAX, Organization, Project
from scopegate.web.api.models import ApiInput, ApiModel
from scopegate.web.transactions import TransactionalRoute, get_db

router = APIRouter(route_class=TransactionalRoute)

MY_ORGANIZATIONS = ScopeMap(
    {"GET": Rule((), "list the organizations you belong to")}, org_scoped=False
)
ORGANIZATION = ScopeMap(
    {
        "GET": Rule((s.ORG_READ, s.ORG_WRITE, s.ORG_ADMIN), "view the organization"),
        "PUT": Rule((s.ORG_WRITE, s.ORG_ADMIN), "change the organization's settings"),
    }
)
PROJECTS = ScopeMap(
    {"GET": Rule((s.PROJECT_READ, s.PROJECT_WRITE, s.PROJECT_ADMIN), "view projects")}
)


class OrganizationOut(ApiModel):
    id: str
    slug: str
    name: str
    date_created: datetime
    agent_tokens_enabled: bool
    max_grant_seconds: int
    role: str | None = None

    @classmethod
    def of(cls, org: Organization | OrgRecord, role: str | None = None) -> OrganizationOut:
        return cls(
            id=str(org.id),
            slug=org.slug,
            name=org.name,
            date_created=org.created_at,
            agent_tokens_enabled=org.agent_tokens_enabled,
            max_grant_seconds=org.max_grant_seconds,
            role=role,
        )


class OrganizationUpdate(ApiInput):
    name: str | None = Field(default=None, min_length=1, max_length=NAME_MAX)
    agent_tokens_enabled: bool | None = None
    max_grant_seconds: int | None = Field(default=None, ge=60, le=30 * 24 * 3600)


class ProjectOut(ApiModel):
    id: str
    slug: str
    name: str
    date_created: datetime

    @classmethod
    def of(cls, project: Project) -> ProjectOut:
        return cls(
            id=str(project.id), slug=project.slug, name=project.name,
            date_created=project.created_at,
        )


@router.get("/organizations/", response_model=list[OrganizationOut], tags=["organizations"])
def list_my_organizations(
    principal: Principal = Depends(Authenticated(MY_ORGANIZATIONS)),
    db: Session = Depends(get_db),
) -> list[OrganizationOut]:
    """The organizations the caller can act in (a bound credential: only its own; an
    OAuth token: only those its person chose at consent)."""
    if principal.user_id is None:
        org = db.get(Organization, principal.org_id) if principal.org_id else None
        return [OrganizationOut.of(org)] if org else []
    result = []
    for member in directory.memberships(db, principal.user_id):
        if principal.org_id is not None and member.org_id != principal.org_id:
            continue
        if principal.orgs is not None and member.org_id not in principal.orgs:
            continue
        result.append(OrganizationOut.of(member.organization, member.role))
    return result


@router.get("/organizations/{org}/", response_model=OrganizationOut, tags=["organizations"])
def get_organization(oa: OrgAccess = Depends(Permission(ORGANIZATION))) -> OrganizationOut:
    return OrganizationOut.of(oa.org, oa.access.role.value if oa.access.role else None)


@router.put("/organizations/{org}/", response_model=OrganizationOut, tags=["organizations"])
def update_organization(
    body: OrganizationUpdate,
    oa: OrgAccess = Depends(Permission(ORGANIZATION)),
    db: Session = Depends(get_db),
) -> OrganizationOut:
    """Change the name or agent-token settings. Lowering ``maxGrantSeconds`` also shortens
    the live write grants that now last too long (and the writes of their tokens)."""
    org = db.get(Organization, oa.org.id)
    if org is None:
        raise NotFound("organization not found")
    lowered = (body.max_grant_seconds is not None
               and body.max_grant_seconds < org.max_grant_seconds)
    directory.update_org(db, org, name=body.name, agent_tokens_enabled=body.agent_tokens_enabled,
                         max_grant_seconds=body.max_grant_seconds)
    if lowered:
        grants.cap_grants(db, org)
    return OrganizationOut.of(org, oa.access.role.value if oa.access.role else None)


@router.get(
    "/organizations/{org}/projects/", response_model=list[ProjectOut], tags=["projects"]
)
def list_projects(
    oa: OrgAccess = Depends(Permission(PROJECTS)), db: Session = Depends(get_db)
) -> list[ProjectOut]:
    return [ProjectOut.of(p) for p in directory.list_projects(db, oa.org.id)]


@router.get("/projects/{org}/{project}/", response_model=ProjectOut, tags=["projects"])
def get_project(
    project: str = Path(max_length=SLUG_MAX),
    oa: OrgAccess = Depends(Permission(PROJECTS)),
    db: Session = Depends(get_db),
) -> ProjectOut:
    return ProjectOut.of(directory.get_project(db, oa.org.id, project))
