"""Releases, with Sentry's release permission: CI (``org:ci``) may create and update
releases but never delete them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from pydantic import Field
from sqlalchemy import Connection
from sqlalchemy.orm import Session
from starlette.responses import Response

from scopegate.guard import OrgAccess, Permission, Rule, ScopeMap
from scopegate.guard import scopes as s
from scopegate.services import releases
from scopegate.store.models import SLUG_MAX, VERSION_MAX, Release
from scopegate.web.api.models import ApiInput, ApiModel, JSONBytes, UtcDateTime
from scopegate.web.api.release_json import releases_json
from scopegate.web.transactions import TransactionalRoute, get_db

router = APIRouter(route_class=TransactionalRoute, tags=["releases"])

_READ = (s.PROJECT_READ, s.PROJECT_RELEASES, s.PROJECT_WRITE, s.PROJECT_ADMIN, s.ORG_CI)
_WRITE = (s.PROJECT_RELEASES, s.PROJECT_WRITE, s.PROJECT_ADMIN, s.ORG_CI)
RELEASES = ScopeMap(
    {"GET": Rule(_READ, "view releases"), "POST": Rule(_WRITE, "create releases")}
)
RELEASE = ScopeMap(
    {
        "GET": Rule(_READ, "view releases"),
        "PUT": Rule(_WRITE, "update releases"),
        "DELETE": Rule((s.PROJECT_RELEASES, s.PROJECT_ADMIN), "delete releases"),
    }
)

VersionStr = Field(min_length=1, max_length=VERSION_MAX, pattern=r"^[^/\s][^/\n\r\t]*$")
Slug = Annotated[str, Field(min_length=1, max_length=SLUG_MAX)]
SlugList = Field(min_length=1, max_length=100)


class ReleaseOut(ApiModel):
    version: str
    ref: str | None
    projects: list[str]
    date_created: datetime
    date_released: datetime | None

    @classmethod
    def of(cls, release: Release) -> ReleaseOut:
        return cls(
            version=release.version,
            ref=release.ref,
            projects=sorted(p.slug for p in release.projects),
            date_created=release.created_at,
            date_released=release.date_released,
        )


class ReleaseCreate(ApiInput):
    version: str = VersionStr
    projects: list[Slug] = SlugList
    ref: str | None = Field(default=None, max_length=VERSION_MAX)
    date_released: UtcDateTime | None = None


class ReleaseUpdate(ApiInput):
    ref: str | None = Field(default=None, max_length=VERSION_MAX)
    projects: list[Slug] | None = Field(default=None, min_length=1, max_length=100)
    date_released: UtcDateTime | None = None


@router.get("/organizations/{org}/releases/", response_model=list[ReleaseOut])
def list_releases(
    page: int = Query(default=1, ge=1, le=100_000),
    per_page: int = Query(default=25, ge=1, le=100, alias="perPage"),
    oa: OrgAccess = Depends(Permission(RELEASES)),
    db: Connection = Depends(get_db),
) -> Response:
    rows = releases.release_page(db, oa.org.id, offset=(page - 1) * per_page, limit=per_page)
    return JSONBytes(releases_json(rows))


@router.post("/organizations/{org}/releases/", response_model=ReleaseOut, status_code=201)
def create_release(
    body: ReleaseCreate,
    oa: OrgAccess = Depends(Permission(RELEASES)),
    db: Session = Depends(get_db),
) -> ReleaseOut:
    release = releases.create_release(
        db, oa.org.id, body.version, body.projects, body.ref, body.date_released
    )
    return ReleaseOut.of(release)


@router.get("/organizations/{org}/releases/{version}/", response_model=ReleaseOut)
def get_release(
    version: str = Path(max_length=VERSION_MAX),
    oa: OrgAccess = Depends(Permission(RELEASE)),
    db: Session = Depends(get_db),
) -> ReleaseOut:
    return ReleaseOut.of(releases.get_release(db, oa.org.id, version))


@router.put("/organizations/{org}/releases/{version}/", response_model=ReleaseOut)
def update_release(
    body: ReleaseUpdate,
    version: str = Path(max_length=VERSION_MAX),
    oa: OrgAccess = Depends(Permission(RELEASE)),
    db: Session = Depends(get_db),
) -> ReleaseOut:
    release = releases.update_release(
        db, oa.org.id, version, ref=body.ref, date_released=body.date_released,
        project_slugs=body.projects,
    )
    return ReleaseOut.of(release)


@router.delete("/organizations/{org}/releases/{version}/", status_code=204)
def delete_release(
    version: str = Path(max_length=VERSION_MAX),
    oa: OrgAccess = Depends(Permission(RELEASE)),
    db: Session = Depends(get_db),
) -> None:
    releases.delete_release(db, oa.org.id, version)
