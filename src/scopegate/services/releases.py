"""Demo resource: releases (version, projects, ref, date released)."""

from __future__ import annotations

from datetime import datetime
from itertools import groupby
from typing import NamedTuple

from sqlalchemy import Connection, Integer, bindparam, select
from sqlalchemy.orm import Session

from scopegate.services.directory import insert
from scopegate.services.errors import Invalid, NotFound
from scopegate.store.models import Project, Release, release_projects


def _projects(db: Session, org_id: int, slugs: list[str]) -> list[Project]:
    wanted = set(slugs)
    found = list(
        db.scalars(select(Project).where(Project.org_id == org_id, Project.slug.in_(wanted)))
    )
    missing = wanted - {p.slug for p in found}
    if missing:
        raise Invalid("projects: unknown project(s): " + ", ".join(sorted(missing)[:10]))
    return found


def create_release(
    db: Session, org_id: int, version: str, project_slugs: list[str], ref: str | None = None,
    date_released: datetime | None = None,
) -> Release:
    projects = _projects(db, org_id, project_slugs)
    release = Release(
        org_id=org_id, version=version, ref=ref, date_released=date_released, projects=projects
    )
    insert(db, release, "a release with this version exists")
    return release


class ReleaseRow(NamedTuple):
    """A release as the API lists it; ``projects`` are slugs in code-point order."""

    version: str
    ref: str | None
    projects: tuple[str, ...]
    date_created: datetime
    date_released: datetime | None


_R = Release.__table__
_P = Project.__table__
_RP = release_projects
_LATEST = (
    select(_R.c.id, _R.c.version, _R.c.ref, _R.c.created_at, _R.c.date_released)
    .where(_R.c.org_id == bindparam("org_id"))
    .order_by(_R.c.id.desc())
    .limit(bindparam("limit", type_=Integer))
    .offset(bindparam("offset", type_=Integer))
    .subquery()
)
# One statement: the page of releases (ix_releases_org_id, migration 0004), each joined
# to its projects' slugs; a release without projects still yields one row (slug NULL).
_PAGE = (
    select(
        _LATEST.c.id, _LATEST.c.version, _LATEST.c.ref, _LATEST.c.created_at,
        _LATEST.c.date_released, _P.c.slug,
    )
    .select_from(
        _LATEST.outerjoin(_RP, _RP.c.release_id == _LATEST.c.id).outerjoin(
            _P, _P.c.id == _RP.c.project_id
        )
    )
    .order_by(_LATEST.c.id.desc())
)


def release_page(
    db: Connection | Session, org_id: int, *, offset: int, limit: int
) -> list[ReleaseRow]:
    """A page of an organization's releases, newest first, in one statement (Core rows,
    no ORM objects and no second query for the projects)."""
    result = db.execute(_PAGE, {"org_id": org_id, "offset": offset, "limit": limit}).all()
    page = []
    for _id, group in groupby(result, key=lambda row: row[0]):
        rows = list(group)
        first = rows[0]
        # Sorted here, not in SQL: a database collation may order slugs differently.
        slugs = tuple(sorted(row[5] for row in rows if row[5] is not None))
        page.append(ReleaseRow(first[1], first[2], slugs, first[3], first[4]))
    return page


def get_release(db: Session, org_id: int, version: str) -> Release:
    release = db.scalar(
        select(Release).where(Release.org_id == org_id, Release.version == version)
    )
    if release is None:
        raise NotFound("release not found")
    return release


def update_release(
    db: Session,
    org_id: int,
    version: str,
    *,
    ref: str | None = None,
    date_released: datetime | None = None,
    project_slugs: list[str] | None = None,
) -> Release:
    release = get_release(db, org_id, version)
    if ref is not None:
        release.ref = ref
    if date_released is not None:
        release.date_released = date_released
    if project_slugs is not None:
        release.projects = _projects(db, org_id, project_slugs)
    db.flush()
    return release


def delete_release(db: Session, org_id: int, version: str) -> None:
    db.delete(get_release(db, org_id, version))
    db.flush()
