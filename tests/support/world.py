"""The standard test world (two organizations, a user per role) and tokens minted in it."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from sqlalchemy.orm import Session

from scopegate.core.roles import Role
from scopegate.services import credentials, directory, issues
from scopegate.store.models import User
from support.settings import BASE_URL, PASSWORD


@dataclass
class World:
    """Two organizations: ``acme`` with a user per role, ``globex`` with its own owner.

    ``acme`` has projects ``web`` and ``api`` with issues; ``globex`` has ``backend``.
    """

    users: dict[str, int] = field(default_factory=dict)
    orgs: dict[str, int] = field(default_factory=dict)
    issue_ids: list[int] = field(default_factory=list)
    globex_issue_id: int = 0

    @staticmethod
    def email(role: Role | str) -> str:
        return f"{Role(role).value}@acme.test"


@functools.cache
def password_hash() -> str:
    """A real Argon2id hash of ``PASSWORD`` at low cost, computed once per process.

    The production hasher costs about 0.3 s a hash (and as much per login) here;
    ``build_world_quick`` stores this one hash for every user instead. Logging in still
    verifies it with Argon2 for real: the parameters travel inside the hash string.
    """
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)


def build_world(session: Session) -> World:
    """The standard world; see ``build_world_quick`` (one precomputed Argon2 hash)."""
    return build_world_quick(session)


def build_world_quick(session: Session) -> World:
    """``build_world`` with the same users, organizations, projects and issues, whose
    users share one precomputed password hash (see ``password_hash``)."""
    world = World()
    users = {}
    for role in Role:
        user = User(email=World.email(role), name=role.value, password_hash=password_hash())
        session.add(user)
        users[role] = user
    outsider = User(email="owner@globex.test", name="globex", password_hash=password_hash())
    session.add(outsider)
    session.flush()
    acme = directory.create_org(session, "acme", users[Role.OWNER], name="Acme")
    for role, user in users.items():
        if role is not Role.OWNER:
            directory.add_member(session, acme, user, role)
    globex = directory.create_org(session, "globex", outsider, name="Globex")
    web = directory.create_project(session, acme, "web")
    directory.create_project(session, acme, "api")
    backend = directory.create_project(session, globex, "backend")
    world.issue_ids = [issues.create_issue(session, web, f"Issue {n}").id for n in range(3)]
    world.globex_issue_id = issues.create_issue(session, backend, "Globex issue").id
    world.users = {role.value: user.id for role, user in users.items()}
    world.users["outsider"] = outsider.id
    world.orgs = {"acme": acme.id, "globex": globex.id}
    session.commit()
    return world


def user_token(
    session: Session, email: str, scopes: set[str] | frozenset[str], **kw: object
) -> str:
    """A committed user token (``sgu_``) of ``email`` with ``scopes``."""
    minted = credentials.create_user_token(
        session, directory.get_user_by_email(session, email), frozenset(scopes), **kw
    )
    session.commit()
    return minted.token


def org_token(session: Session, org_slug: str) -> str:
    """A committed organization token of ``org_slug``, for ``BASE_URL``."""
    minted = credentials.create_org_token(
        session, directory.get_org(session, org_slug), None, BASE_URL
    )
    session.commit()
    return minted.token
