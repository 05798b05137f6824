"""Demo resource: issues (title, status, assignee) in an organization's projects."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scopegate.services.errors import Invalid, NotFound
from scopegate.store.models import Issue, Member, Project, User


class IssueStatus(StrEnum):
    UNRESOLVED = "unresolved"
    RESOLVED = "resolved"
    IGNORED = "ignored"


def create_issue(db: Session, project: Project, title: str) -> Issue:
    if not 1 <= len(title) <= 200:
        raise Invalid("title must be 1-200 characters")
    issue = Issue(org_id=project.org_id, project_id=project.id, title=title)
    db.add(issue)
    db.flush()
    return issue


def list_issues(
    db: Session,
    org_id: int,
    *,
    status: IssueStatus | None,
    query: str | None,
    offset: int,
    limit: int,
) -> tuple[list[Issue], bool]:
    """A page of issues, newest first, and whether another page follows."""
    stmt = select(Issue).where(Issue.org_id == org_id)
    if status is not None:
        stmt = stmt.where(Issue.status == status.value)
    if query:
        escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(func.lower(Issue.title).like(f"%{escaped.lower()}%", escape="\\"))
    rows = list(db.scalars(stmt.order_by(Issue.id.desc()).offset(offset).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


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
