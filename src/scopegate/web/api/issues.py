"""Issues: list (filter, search, pages), view, resolve/ignore/reassign."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Path, Query
from pydantic import Field
from sqlalchemy import Connection
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from scopegate.guard import OrgAccess, Permission, Rule, ScopeMap
from scopegate.guard import scopes as s
from scopegate.services import issues
from scopegate.services.issues import IssueStatus
from scopegate.store.models import EMAIL_MAX, TITLE_MAX, Issue
from scopegate.web.api.issue_json import issue_json, issues_json
from scopegate.web.api.models import ApiInput, ApiModel, JSONBytes
from scopegate.web.transactions import TransactionalRoute, get_db

router = APIRouter(route_class=TransactionalRoute, tags=["issues"])

_READ = (s.EVENT_READ, s.EVENT_WRITE, s.EVENT_ADMIN)
ISSUES = ScopeMap({"GET": Rule(_READ, "view issues")})
ISSUE = ScopeMap(
    {
        "GET": Rule(_READ, "view issues"),
        "PUT": Rule((s.EVENT_WRITE, s.EVENT_ADMIN), "resolve, ignore and reassign issues"),
    }
)
MAX_ID = 2**31 - 1


class IssueOut(ApiModel):
    id: str
    title: str
    status: IssueStatus
    project: str
    assigned_to: str | None
    date_created: datetime
    last_seen: datetime

    @classmethod
    def of(cls, issue: Issue) -> IssueOut:
        return cls(
            id=str(issue.id),
            title=issue.title,
            status=IssueStatus(issue.status),
            project=issue.project.slug,
            assigned_to=issue.assignee.email if issue.assignee else None,
            date_created=issue.created_at,
            last_seen=issue.updated_at,
        )


class IssueUpdate(ApiInput):
    status: IssueStatus | None = None
    #: A member's email, or ``null`` / ``""`` to unassign.
    assigned_to: str | None = Field(default=None, max_length=EMAIL_MAX)


@router.get("/organizations/{org}/issues/", response_model=list[IssueOut])
def list_issues(
    request: Request,
    status: IssueStatus | None = None,
    query: str | None = Query(default=None, max_length=TITLE_MAX),
    page: int = Query(default=1, ge=1, le=100_000),
    per_page: int = Query(default=25, ge=1, le=100, alias="perPage"),
    oa: OrgAccess = Depends(Permission(ISSUES)),
    db: Connection = Depends(get_db),
) -> Response:
    """Newest first. A ``Link: <…>; rel="next"`` header points at the next page."""
    rows, more = issues.issue_page(
        db, oa.org.id, status=status, query=query, offset=(page - 1) * per_page, limit=per_page
    )
    headers = None
    if more:
        # request.url speaks the base URL's origin (web/origin.py), never the Host header.
        next_url = request.url.include_query_params(page=page + 1)
        headers = {"Link": f'<{next_url}>; rel="next"'}
    return JSONBytes(issues_json(rows), headers=headers)


@router.get("/organizations/{org}/issues/{issue_id}/", response_model=IssueOut)
def get_issue(
    issue_id: int = Path(ge=1, le=MAX_ID),
    oa: OrgAccess = Depends(Permission(ISSUE)),
    db: Connection = Depends(get_db),
) -> Response:
    return JSONBytes(issue_json(issues.issue_row(db, oa.org.id, issue_id)))


@router.put("/organizations/{org}/issues/{issue_id}/", response_model=IssueOut)
def update_issue(
    body: IssueUpdate,
    issue_id: int = Path(ge=1, le=MAX_ID),
    oa: OrgAccess = Depends(Permission(ISSUE)),
    db: Session = Depends(get_db),
) -> Response:
    fields = body.model_fields_set
    unassign = "assigned_to" in fields and not body.assigned_to
    assignee = body.assigned_to if "assigned_to" in fields and body.assigned_to else None
    issue = issues.update_issue(
        db, oa.org.id, issue_id, status=body.status, assignee_email=assignee, unassign=unassign
    )
    return JSONBytes(issue_json(issues.row_of(issue)))
