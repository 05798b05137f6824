"""The demo organization ``make serve`` starts with: projects, issues, a user per role."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from scopegate.core.roles import Role
from scopegate.services import directory, issues
from scopegate.store.models import Organization

DEMO_ORG = "acme"
DEMO_PASSWORD = "demo-password"  # noqa: S105 - a published demo login, not a secret
DEMO_USERS = {role: f"{role.value}@acme.test" for role in Role}
DEMO_PROJECTS = {
    "web": ["TypeError: cannot read properties of undefined", "Checkout button unresponsive",
            "Slow dashboard load on Safari"],
    "api": ["Timeout calling payments provider", "500 on /orders when cart is empty",
            "Rate limiter counts OPTIONS requests"],
}


@dataclass(frozen=True)
class DemoLogin:
    email: str
    role: Role
    password: str


def seed_demo(db: Session) -> list[DemoLogin] | None:
    """Create the demo organization on an empty database; ``None`` if it has data."""
    if db.scalar(select(Organization.id).limit(1)) is not None:
        return None
    users = {
        role: directory.create_user(db, email, DEMO_PASSWORD, name=f"Demo {role.value}")
        for role, email in DEMO_USERS.items()
    }
    org = directory.create_org(db, DEMO_ORG, users[Role.OWNER], name="Acme Corp")
    for role, user in users.items():
        if role is not Role.OWNER:
            directory.add_member(db, org, user, role)
    other = directory.create_org(db, "globex", users[Role.OWNER], name="Globex")
    directory.create_project(db, other, "backend")
    for slug, titles in DEMO_PROJECTS.items():
        project = directory.create_project(db, org, slug)
        for title in titles:
            issues.create_issue(db, project, title)
    return [DemoLogin(email, role, DEMO_PASSWORD) for role, email in DEMO_USERS.items()]
