"""Demo resource: issues (title, status, assignee) in an organization's projects.

Writes are rare and use the ORM. The hot reads (``issue_page``, ``issue_row``) are one
prebuilt SQLAlchemy Core statement each, returning plain ``IssueRow`` tuples: no ORM
identity map, no per-row object loading, so a page of 25 costs one round trip and
little Python.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from sqlalchemy import Connection, Integer, Select, bindparam, func, select
from sqlalchemy.orm import Session

from scopegate.services.errors import Invalid, NotFound
from scopegate.store.models import Issue, Member, Project, User


class IssueStatus(StrEnum):
    UNRESOLVED = "unresolved"
    RESOLVED = "resolved"
    IGNORED = "ignored"


class IssueRow(NamedTuple):
    """An issue as the API shows it: a tuple, so a result row becomes one cheaply."""

    id: int
    title: str
    status: str
    project: str
    assigned_to: str | None
    date_created: datetime
    last_seen: datetime


_I = Issue.__table__
_P = Project.__table__
_U = User.__table__


def _base() -> Select[tuple[int, str, str, str, str | None, datetime, datetime]]:
    """The columns of an ``IssueRow``, joined to the project's slug and assignee's email."""
    return (
        select(
            _I.c.id, _I.c.title, _I.c.status, _P.c.slug, _U.c.email,
            _I.c.created_at, _I.c.updated_at,
        )
        .select_from(
            _I.join(_P, _P.c.id == _I.c.project_id).outerjoin(_U, _U.c.id == _I.c.assignee_id)
        )
        .where(_I.c.org_id == bindparam("org_id"))
    )


def _page_statement(*, by_status: bool, by_query: bool) -> Select:
    stmt = _base()
    if by_status:
        stmt = stmt.where(_I.c.status == bindparam("status"))
    if by_query:
        stmt = stmt.where(func.lower(_I.c.title).like(bindparam("pattern"), escape="\\"))
    # Served by ix_issues_org_id / ix_issues_org_status_id (migration 0004) without a sort.
    return (
        stmt.order_by(_I.c.id.desc())
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
    )


# Built once: a call binds values only (SQLAlchemy still caches the compiled SQL per shape).
_PAGE = {
    (by_status, by_query): _page_statement(by_status=by_status, by_query=by_query)
    for by_status in (False, True)
    for by_query in (False, True)
}
_ONE = _base().where(_I.c.id == bindparam("issue_id"))


def like_pattern(query: str) -> str:
    """A case-insensitive substring pattern: ``%``, ``_`` and ``\\`` in ``query`` match
    themselves (escape character ``\\``)."""
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


def issue_page(
    db: Connection | Session,
    org_id: int,
    *,
    status: IssueStatus | None,
    query: str | None,
    offset: int,
    limit: int,
) -> tuple[list[IssueRow], bool]:
    """A page of an organization's issues, newest first, and whether another page follows.

    One statement: it asks for ``limit + 1`` rows and the extra one only says "more".
    """
    params: dict[str, object] = {"org_id": org_id, "offset": offset, "limit": limit + 1}
    if status is not None:
        params["status"] = status.value
    if query:
        params["pattern"] = like_pattern(query)
    stmt = _PAGE[status is not None, bool(query)]
    rows = [IssueRow._make(row) for row in db.execute(stmt, params).all()]
    more = len(rows) > limit
    return rows[:limit], more


def issue_row(db: Connection | Session, org_id: int, issue_id: int) -> IssueRow:
    """One issue of the organization; ``NotFound`` if it is another's or does not exist."""
    row = db.execute(_ONE, {"org_id": org_id, "issue_id": issue_id}).first()
    if row is None:
        raise NotFound("issue not found")
    return IssueRow._make(row)


def row_of(issue: Issue) -> IssueRow:
    """The ``IssueRow`` of a loaded issue (after a write), without another query."""
    return IssueRow(
        issue.id, issue.title, issue.status, issue.project.slug,
        issue.assignee.email if issue.assignee else None, issue.created_at, issue.updated_at,
    )


def create_issue(db: Session, project: Project, title: str) -> Issue:
    if not 1 <= len(title) <= 200:
        raise Invalid("title must be 1-200 characters")
    issue = Issue(org_id=project.org_id, project_id=project.id, title=title)
    db.add(issue)
    db.flush()
    return issue


def get_issue(db: Session, org_id: int, issue_id: int, *, for_update: bool = False) -> Issue:
    stmt = select(Issue).where(Issue.org_id == org_id, Issue.id == issue_id)
    if for_update:
        stmt = stmt.with_for_update(of=Issue)
    issue = db.scalar(stmt)
    if issue is None:
        raise NotFound("issue not found")
    return issue


def update_issue(
    db: Session,
    org_id: int,
    issue_id: int,
    *,
    status: IssueStatus | None = None,
    assignee_email: str | None = None,
    unassign: bool = False,
) -> Issue:
    issue = get_issue(db, org_id, issue_id, for_update=True)
    if status is not None:
        issue.status = status.value
    if unassign:
        issue.assignee_id = None
    elif assignee_email is not None:
        assignee = db.scalar(
            select(User)
            .join(Member, Member.user_id == User.id)
            .where(Member.org_id == org_id, User.email == assignee_email.strip().lower())
        )
        if assignee is None:
            raise Invalid("assignedTo: no member of this organization has that email")
        issue.assignee_id = assignee.id
    db.flush()
    db.refresh(issue)
    return issue
