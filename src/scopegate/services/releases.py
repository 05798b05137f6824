"""Demo resource: releases (version, projects, ref, date released)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from scopegate.services.directory import insert
from scopegate.services.errors import Invalid, NotFound
from scopegate.store.models import Project, Release


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


def list_releases(db: Session, org_id: int, *, offset: int, limit: int) -> list[Release]:
    return list(
        db.scalars(
            select(Release)
            .where(Release.org_id == org_id)
            .order_by(Release.id.desc())
            .offset(offset)
            .limit(limit)
        )
    )


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
