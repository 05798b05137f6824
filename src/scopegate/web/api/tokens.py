"""Credentials API: my user tokens, and an organization's org tokens.

Secrets appear once, in the creation response. Agent tokens may not create or revoke
credentials of any kind: a short-lived grant must not become a durable credential.
A user token may create user tokens only within its own scopes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import Field
from sqlalchemy.orm import Session
from starlette.requests import Request

from scopegate.core.rate_limits import RateLimitedAction
from scopegate.guard import (
    Authenticated,
    OrgAccess,
    Permission,
    Principal,
    Rule,
    ScopeMap,
    TokenKind,
)
from scopegate.guard import scopes as registry
from scopegate.guard import scopes as s
from scopegate.services import credentials, directory
from scopegate.services.errors import Forbidden, Invalid
from scopegate.store.models import NAME_MAX, OrgToken, User, UserToken
from scopegate.web.api.models import ApiInput, ApiModel, UtcDateTime
from scopegate.web.rate_limits import limit, principal_account
from scopegate.web.runtime import runtime
from scopegate.web.transactions import TransactionalRoute, get_db

router = APIRouter(route_class=TransactionalRoute, tags=["tokens"])

_PEOPLE = frozenset({None, TokenKind.USER, TokenKind.OAUTH_ACCESS})
USER_TOKENS = ScopeMap(
    {
        "GET": Rule((), "list your tokens"),
        "POST": Rule((), "create tokens"),
        "DELETE": Rule((), "revoke your tokens"),
    },
    org_scoped=False,
    kinds=frozenset({None, TokenKind.USER}),
)
ORG_TOKENS = ScopeMap(
    {
        "GET": Rule((s.ORG_WRITE, s.ORG_ADMIN), "list org tokens"),
        "POST": Rule((s.ORG_WRITE, s.ORG_ADMIN), "create org tokens"),
        "DELETE": Rule((s.ORG_WRITE, s.ORG_ADMIN), "revoke org tokens"),
    },
    kinds=_PEOPLE,
)
MAX_ID = 2**31 - 1
ScopeName = Annotated[str, Field(max_length=32)]


class TokenOut(ApiModel):
    id: str
    name: str
    scopes: list[str]
    token_last_characters: str
    date_created: datetime
    expires_at: datetime | None = None
    last_used: datetime | None = None

    @classmethod
    def of(cls, row: UserToken | OrgToken) -> TokenOut:
        return cls(
            id=str(row.id),
            name=row.name,
            scopes=registry.ordered(row.scopes),
            token_last_characters=row.last_chars,
            date_created=row.created_at,
            expires_at=getattr(row, "expires_at", None),
            last_used=row.last_used_at,
        )


class TokenCreated(TokenOut):
    #: The secret. Shown in this response only; scopegate keeps just its hash.
    token: str


class UserTokenCreate(ApiInput):
    scopes: list[ScopeName] = Field(min_length=1, max_length=64)
    name: str = Field(default="", max_length=NAME_MAX)
    expires_at: UtcDateTime | None = None


class OrgTokenCreate(ApiInput):
    name: str = Field(default="", max_length=NAME_MAX)


def _scopes(names: list[str]) -> frozenset[str]:
    try:
        return registry.validate(names)
    except registry.UnknownScopeError as error:
        raise Invalid(f"scopes: {error}") from None


@router.get("/api-tokens/", response_model=list[TokenOut])
def list_user_tokens(
    principal: Principal = Depends(Authenticated(USER_TOKENS)), db: Session = Depends(get_db)
) -> list[TokenOut]:
    user = directory.get_user(db, principal.user_id)
    return [TokenOut.of(row) for row in credentials.list_user_tokens(db, user.id)]


@router.post("/api-tokens/", response_model=TokenCreated, status_code=201)
def create_user_token(
    request: Request,
    body: UserTokenCreate,
    principal: Principal = Depends(Authenticated(USER_TOKENS)),
    db: Session = Depends(get_db),
) -> TokenCreated:
    """Create a user token. Its effective access in each organization is its scopes
    intersected with your role there. A token creating a token cannot exceed itself."""
    limit(request, RateLimitedAction.TOKEN_CREATE, account=principal_account(principal))
    scopes = _scopes(body.scopes)
    if principal.scopes is not None and not scopes <= registry.expand(principal.scopes):
        raise Forbidden("A token cannot create a token with scopes it does not hold.")
    user = directory.get_user(db, principal.user_id)
    minted = credentials.create_user_token(
        db, user, scopes, name=body.name, expires_at=body.expires_at
    )
    return TokenCreated(**TokenOut.of(minted.row).model_dump(), token=minted.token)


@router.delete("/api-tokens/{token_id}/", status_code=204)
def revoke_user_token(
    request: Request,
    token_id: int = Path(ge=1, le=MAX_ID),
    principal: Principal = Depends(Authenticated(USER_TOKENS)),
    db: Session = Depends(get_db),
) -> None:
    """Revoke one of my tokens; agent tokens it minted stop working too."""
    credentials.revoke_user_token(
        db, runtime(request).deny_list, directory.get_user(db, principal.user_id).id,
        token_id,
    )


@router.get("/organizations/{org}/org-auth-tokens/", response_model=list[TokenOut])
def list_org_tokens(
    oa: OrgAccess = Depends(Permission(ORG_TOKENS)), db: Session = Depends(get_db)
) -> list[TokenOut]:
    return [TokenOut.of(row) for row in credentials.list_org_tokens(db, oa.org.id)]


@router.post(
    "/organizations/{org}/org-auth-tokens/", response_model=TokenCreated, status_code=201
)
def create_org_token(
    request: Request,
    body: OrgTokenCreate,
    oa: OrgAccess = Depends(Permission(ORG_TOKENS)),
    db: Session = Depends(get_db),
) -> TokenCreated:
    """Create an org token: scopes exactly ``org:ci``, usable in this organization only."""
    limit(request, RateLimitedAction.TOKEN_CREATE,
          account=principal_account(oa.access.principal))
    user = db.get(User, oa.access.principal.user_id) if oa.access.principal.user_id else None
    minted = credentials.create_org_token(
        db, oa.org, user, runtime(request).settings.base_url, name=body.name
    )
    return TokenCreated(**TokenOut.of(minted.row).model_dump(), token=minted.token)


@router.delete("/organizations/{org}/org-auth-tokens/{token_id}/", status_code=204)
def revoke_org_token(
    token_id: int = Path(ge=1, le=MAX_ID),
    oa: OrgAccess = Depends(Permission(ORG_TOKENS)),
    db: Session = Depends(get_db),
) -> None:
    credentials.revoke_org_token(db, oa.org.id, token_id)
