"""Users, organizations, memberships and projects."""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scopegate.core.changes import Change, Topic, member_key
from scopegate.core.roles import Role
from scopegate.services.errors import Conflict, Invalid, NotFound
from scopegate.store.models import (
    EMAIL_MAX,
    NAME_MAX,
    SLUG_MAX,
    Member,
    Organization,
    Project,
    User,
)
from scopegate.store.outbox import record_change

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$")
PASSWORD_MIN = 8
PASSWORD_MAX = 256

_hasher = PasswordHasher()
#: Verified against when the email is unknown, so both paths cost one Argon2 check.
_DUMMY_HASH = _hasher.hash("scopegate-timing-equalizer")


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if not email or len(email) > EMAIL_MAX or "@" not in email:
        raise Invalid("email must be an address of at most 254 characters")
    return email


def check_slug(slug: str) -> str:
    if len(slug) > SLUG_MAX or not SLUG_RE.match(slug):
        raise Invalid("slug must be 1-50 lowercase letters, digits or dashes")
    return slug


def create_user(db: Session, email: str, password: str, name: str = "") -> User:
    email = normalize_email(email)
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise Invalid(f"password must be {PASSWORD_MIN}-{PASSWORD_MAX} characters")
    if len(name) > NAME_MAX:
        raise Invalid("name is too long")
    if db.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict("a user with this email exists")
    user = User(email=email, name=name, password_hash=_hasher.hash(password))
    insert(db, user, "a user with this email exists")
    return user


def authenticate_password(db: Session, email: str, password: str) -> User | None:
    """The active user with this email and password, or ``None`` (same cost either way)."""
    try:
        email = normalize_email(email)
    except Invalid:
        email = ""
    user = db.scalar(select(User).where(User.email == email)) if email else None
    stored = user.password_hash if user is not None else _DUMMY_HASH
    try:
        _hasher.verify(stored, password[:PASSWORD_MAX])
    except (VerificationError, InvalidHashError):
        return None
    if user is None or not user.is_active:
        return None
    return user


def get_user(db: Session, user_id: int | None) -> User:
    user = db.get(User, user_id) if user_id is not None else None
    if user is None:
        raise NotFound("no such user")
    return user


def get_user_by_email(db: Session, email: str) -> User:
    user = db.scalar(select(User).where(User.email == normalize_email(email)))
    if user is None:
        raise NotFound("no such user")
    return user


def create_org(db: Session, slug: str, owner: User, name: str | None = None) -> Organization:
    check_slug(slug)
    if db.scalar(select(Organization.id).where(Organization.slug == slug)) is not None:
        raise Conflict("an organization with this slug exists")
    org = Organization(slug=slug, name=(name or slug)[:NAME_MAX])
    insert(db, org, "an organization with this slug exists")
    db.add(Member(org_id=org.id, user_id=owner.id, role=Role.OWNER.value))
    db.flush()
    # The slug may be cached as unknown, and the owner's role as none.
    record_change(db, Change(Topic.ORG, slug))
    record_change(db, Change(Topic.MEMBER, member_key(owner.id, org.id)))
    return org


def update_org(
    db: Session, org: Organization, *, name: str | None = None,
    agent_tokens_enabled: bool | None = None, max_grant_seconds: int | None = None,
) -> Organization:
    """Change an organization's name or agent-token settings."""
    if name is not None:
        org.name = name[:NAME_MAX]
    if agent_tokens_enabled is not None:
        org.agent_tokens_enabled = agent_tokens_enabled
    if max_grant_seconds is not None:
        org.max_grant_seconds = max_grant_seconds
    db.flush()
    record_change(db, Change(Topic.ORG, org.slug))
    return org


def get_org(db: Session, slug: str) -> Organization:
    org = db.scalar(select(Organization).where(Organization.slug == slug))
    if org is None:
        raise NotFound("organization not found")
    return org


def add_member(db: Session, org: Organization, user: User, role: Role | str) -> Member:
    try:
        role = Role(role)
    except ValueError:
        raise Invalid("role must be one of: " + ", ".join(r.value for r in Role)) from None
    member = db.scalar(select(Member).where(Member.org_id == org.id, Member.user_id == user.id))
    if member is None:
        member = Member(org_id=org.id, user_id=user.id, role=role.value)
        insert(db, member, "membership changed concurrently")
    else:
        member.role = role.value
        db.flush()
    record_change(db, Change(Topic.MEMBER, member_key(user.id, org.id)))
    return member


def remove_member(db: Session, org: Organization, user: User) -> None:
    """Take ``user`` out of ``org``; their credentials lose it at once."""
    found = db.execute(delete(Member).where(Member.org_id == org.id, Member.user_id == user.id))
    if not found.rowcount:
        raise NotFound("membership not found")
    record_change(db, Change(Topic.MEMBER, member_key(user.id, org.id)))


def set_active(db: Session, user: User, active: bool) -> None:
    """Activate or deactivate a person; a deactivated person's credentials stop working."""
    user.is_active = active
    db.flush()
    for topic in (Topic.MEMBER, Topic.CREDENTIAL, Topic.WEB_SESSION):
        record_change(db, Change(topic))


_ROLE_IN = (select(Member.role).join(User, User.id == Member.user_id)
            .where(Member.org_id == bindparam("org_id"), Member.user_id == bindparam("user_id"),
                   User.is_active))


def role_in(db: Session, org_id: int, user_id: int) -> Role | None:
    """The active user's role in the organization, or ``None``."""
    value = db.scalar(_ROLE_IN, {"org_id": org_id, "user_id": user_id})
    return Role(value) if value else None


def memberships(db: Session, user_id: int) -> list[Member]:
    return list(
        db.scalars(
            select(Member).where(Member.user_id == user_id).order_by(Member.org_id)
        ).unique()
    )


def create_project(db: Session, org: Organization, slug: str, name: str | None = None) -> Project:
    check_slug(slug)
    exists = db.scalar(select(Project.id).where(Project.org_id == org.id, Project.slug == slug))
    if exists is not None:
        raise Conflict("a project with this slug exists")
    project = Project(org_id=org.id, slug=slug, name=(name or slug)[:NAME_MAX])
    insert(db, project, "a project with this slug exists")
    return project


def list_projects(db: Session, org_id: int) -> list[Project]:
    return list(db.scalars(select(Project).where(Project.org_id == org_id).order_by(Project.slug)))


def get_project(db: Session, org_id: int, slug: str) -> Project:
    project = db.scalar(select(Project).where(Project.org_id == org_id, Project.slug == slug))
    if project is None:
        raise NotFound("project not found")
    return project


def insert(db: Session, row: object, conflict: str) -> None:
    """Add and flush ``row`` in a savepoint; a unique violation becomes ``Conflict``."""
    try:
        with db.begin_nested():
            db.add(row)
    except IntegrityError:
        raise Conflict(conflict) from None
