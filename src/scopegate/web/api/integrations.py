"""Internal integrations: an organization's own apps and their ``sgi_`` tokens.

Reading the list needs ``org:read``; managing integrations and their tokens needs
``org:integrations`` or ``org:write``, and a person behind the request (agent,
integration and org tokens cannot make or change credentials). Scope lists are checked
against the registry; raising an integration's scopes needs the editor's own access to
cover them, except token-only scopes, which managers and owners may grant.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import Field
from sqlalchemy.orm import Session
from starlette.requests import Request

from scopegate.core.rate_limits import RateLimitedAction
from scopegate.guard import OrgAccess, Permission, Rule, ScopeMap, TokenKind
from scopegate.guard import scopes as registry
from scopegate.guard import scopes as s
from scopegate.services import integrations
from scopegate.store.integration_models import Integration, IntegrationToken
from scopegate.store.models import NAME_MAX, SLUG_MAX
from scopegate.web.api.models import ApiInput, ApiModel
from scopegate.web.rate_limits import limit, principal_account
from scopegate.web.transactions import TransactionalRoute, get_db

router = APIRouter(route_class=TransactionalRoute, tags=["integrations"])

_PEOPLE = frozenset({None, TokenKind.USER, TokenKind.OAUTH_ACCESS})
_READ = (s.ORG_READ, s.ORG_INTEGRATIONS, s.ORG_WRITE, s.ORG_ADMIN)
_MANAGE = (s.ORG_INTEGRATIONS, s.ORG_WRITE, s.ORG_ADMIN)
INTEGRATIONS = ScopeMap(
    {"GET": Rule(_READ, "view integrations"), "POST": Rule(_MANAGE, "create integrations")},
    kinds=_PEOPLE,
)
INTEGRATION = ScopeMap(
    {
        "GET": Rule(_READ, "view integrations"),
        "PUT": Rule(_MANAGE, "change integrations' scopes"),
        "DELETE": Rule(_MANAGE, "delete integrations"),
    },
    kinds=_PEOPLE,
)
INTEGRATION_TOKENS = ScopeMap(
    {
        "GET": Rule(_MANAGE, "list integration tokens"),
        "POST": Rule(_MANAGE, "create integration tokens"),
        "DELETE": Rule(_MANAGE, "revoke integration tokens"),
    },
    kinds=_PEOPLE,
)
MAX_ID = 2**31 - 1
ScopeName = Annotated[str, Field(max_length=32)]
SlugPath = Annotated[str, Path(max_length=SLUG_MAX)]


class IntegrationOut(ApiModel):
    slug: str
    name: str
    kind: str
    scopes: list[str]
    date_created: datetime
    date_updated: datetime

    @classmethod
    def of(cls, row: Integration) -> IntegrationOut:
        return cls(slug=row.slug, name=row.name, kind=row.kind,
                   scopes=registry.ordered(row.scopes), date_created=row.created_at,
                   date_updated=row.updated_at)


class IntegrationCreate(ApiInput):
    name: str = Field(min_length=1, max_length=NAME_MAX)
    slug: str | None = Field(default=None, min_length=1, max_length=SLUG_MAX)
    scopes: list[ScopeName] = Field(default_factory=list, max_length=64)


class IntegrationUpdate(ApiInput):
    name: str | None = Field(default=None, min_length=1, max_length=NAME_MAX)
    scopes: list[ScopeName] | None = Field(default=None, max_length=64)


class IntegrationTokenOut(ApiModel):
    id: str
    name: str
    token_last_characters: str
    #: Kept by scopegate for a built-in integration's own use (the deploy hook's).
    held_by_scopegate: bool
    date_created: datetime
    last_used: datetime | None = None

    @classmethod
    def of(cls, row: IntegrationToken) -> IntegrationTokenOut:
        return cls(id=str(row.id), name=row.name, token_last_characters=row.last_chars,
                   held_by_scopegate=row.sealed_secret is not None,
                   date_created=row.created_at, last_used=row.last_used_at)


class IntegrationTokenCreated(IntegrationTokenOut):
    #: The secret. Shown in this response only; scopegate keeps just its hash.
    token: str


class IntegrationTokenCreate(ApiInput):
    name: str = Field(default="", max_length=NAME_MAX)


@router.get("/organizations/{org}/integrations/", response_model=list[IntegrationOut])
def list_integrations(
    oa: OrgAccess = Depends(Permission(INTEGRATIONS)), db: Session = Depends(get_db)
) -> list[IntegrationOut]:
    return [IntegrationOut.of(row) for row in integrations.list_integrations(db, oa.org.id)]


@router.post("/organizations/{org}/integrations/", response_model=IntegrationOut,
             status_code=201)
def create_integration(
    body: IntegrationCreate,
    oa: OrgAccess = Depends(Permission(INTEGRATIONS)),
    db: Session = Depends(get_db),
) -> IntegrationOut:
    """Create an internal integration holding ``scopes`` (none: it can do nothing yet)."""
    scopes = integrations.validate_scopes(body.scopes)
    integrations.check_raise(oa.access, frozenset(), scopes)
    row = integrations.create_integration(db, oa.org.id, body.name, scopes, slug=body.slug,
                                          user_id=oa.access.principal.user_id)
    return IntegrationOut.of(row)


@router.get("/organizations/{org}/integrations/{slug}/", response_model=IntegrationOut)
def get_integration(
    slug: SlugPath,
    oa: OrgAccess = Depends(Permission(INTEGRATION)),
    db: Session = Depends(get_db),
) -> IntegrationOut:
    return IntegrationOut.of(integrations.get_integration(db, oa.org.id, slug))


@router.put("/organizations/{org}/integrations/{slug}/", response_model=IntegrationOut)
def update_integration(
    body: IntegrationUpdate,
    slug: SlugPath,
    oa: OrgAccess = Depends(Permission(INTEGRATION)),
    db: Session = Depends(get_db),
) -> IntegrationOut:
    """Rename, or set ``scopes``: the integration's live tokens carry them at once."""
    row = integrations.get_integration(db, oa.org.id, slug)
    if body.name is not None:
        integrations.rename(db, row, body.name)
    if body.scopes is not None:
        scopes = integrations.validate_scopes(body.scopes)
        integrations.check_raise(oa.access, row.scopes, scopes)
        integrations.set_scopes(db, row, scopes, user_id=oa.access.principal.user_id)
    return IntegrationOut.of(row)


@router.delete("/organizations/{org}/integrations/{slug}/", status_code=204)
def delete_integration(
    slug: SlugPath,
    oa: OrgAccess = Depends(Permission(INTEGRATION)),
    db: Session = Depends(get_db),
) -> None:
    """Delete the integration: its tokens stop at once."""
    integrations.delete_integration(db, integrations.get_integration(db, oa.org.id, slug),
                                    user_id=oa.access.principal.user_id)


@router.get("/organizations/{org}/integrations/{slug}/tokens/",
            response_model=list[IntegrationTokenOut])
def list_integration_tokens(
    slug: SlugPath,
    oa: OrgAccess = Depends(Permission(INTEGRATION_TOKENS)),
    db: Session = Depends(get_db),
) -> list[IntegrationTokenOut]:
    row = integrations.get_integration(db, oa.org.id, slug)
    return [IntegrationTokenOut.of(t) for t in integrations.live_tokens(db, row.id)]


@router.post("/organizations/{org}/integrations/{slug}/tokens/",
             response_model=IntegrationTokenCreated, status_code=201)
def create_integration_token(
    request: Request,
    body: IntegrationTokenCreate,
    slug: SlugPath,
    oa: OrgAccess = Depends(Permission(INTEGRATION_TOKENS)),
    db: Session = Depends(get_db),
) -> IntegrationTokenCreated:
    """A new ``sgi_`` token acting as the integration; the secret is in this answer only."""
    limit(request, RateLimitedAction.TOKEN_CREATE,
          account=principal_account(oa.access.principal))
    row = integrations.get_integration(db, oa.org.id, slug)
    minted = integrations.create_token(db, row, name=body.name,
                                       user_id=oa.access.principal.user_id)
    return IntegrationTokenCreated(**IntegrationTokenOut.of(minted.row).model_dump(),
                                   token=minted.token)


@router.delete("/organizations/{org}/integrations/{slug}/tokens/{token_id}/",
               status_code=204)
def revoke_integration_token(
    slug: SlugPath,
    token_id: int = Path(ge=1, le=MAX_ID),
    oa: OrgAccess = Depends(Permission(INTEGRATION_TOKENS)),
    db: Session = Depends(get_db),
) -> None:
    row = integrations.get_integration(db, oa.org.id, slug)
    integrations.revoke_token(db, row, token_id, user_id=oa.access.principal.user_id)
