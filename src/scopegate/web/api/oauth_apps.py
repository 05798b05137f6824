"""OAuth apps I registered (``/oauth-apps/``) and apps I authorized
(``/oauth-authorizations/``).

Only a person manages apps: a browser session (with CSRF on writes) or a user token;
an OAuth or agent token may not register clients or mint secrets. Another person's app is
404, like one that does not exist. A secret appears in the create and rotate responses
only; scopegate keeps its SHA-256.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import Field
from sqlalchemy.orm import Session
from starlette.requests import Request

from scopegate.guard import Authenticated, Principal, Rule, ScopeMap, TokenKind
from scopegate.guard import scopes as registry
from scopegate.services.errors import NotFound
from scopegate.services.oauth import clients, tokens
from scopegate.store.models import NAME_MAX
from scopegate.store.oauth_models import CLIENT_ID_MAX, URI_MAX
from scopegate.web.api.models import ApiInput, ApiModel
from scopegate.web.runtime import runtime
from scopegate.web.transactions import TransactionalRoute, get_db

router = APIRouter(route_class=TransactionalRoute, tags=["oauth apps"])

_PEOPLE = frozenset({None, TokenKind.USER})
OAUTH_APPS = ScopeMap(
    {
        "GET": Rule((), "list and read your OAuth apps"),
        "POST": Rule((), "register OAuth apps and rotate their secrets"),
        "PUT": Rule((), "change your OAuth apps"),
        "DELETE": Rule((), "delete your OAuth apps"),
    },
    org_scoped=False,
    kinds=_PEOPLE,
)
OAUTH_AUTHORIZATIONS = ScopeMap(
    {"GET": Rule((), "list the apps you authorized"),
     "DELETE": Rule((), "revoke an app you authorized")},
    org_scoped=False,
    kinds=_PEOPLE,
)
Uri = Annotated[str, Field(min_length=1, max_length=URI_MAX)]
ClientId = Annotated[str, Path(min_length=1, max_length=CLIENT_ID_MAX)]


class AppOut(ApiModel):
    client_id: str
    name: str
    homepage: str
    redirect_uris: list[str]
    public: bool
    org_bound: bool

    @classmethod
    def of(cls, client: clients.Client) -> AppOut:
        return cls(client_id=client.client_id, name=client.name, homepage=client.homepage,
                   redirect_uris=list(client.redirect_uris), public=client.is_public,
                   org_bound=client.org_bound)


class AppWithSecret(AppOut):
    #: Shown in this response only; scopegate keeps just its hash. ``None`` when public.
    client_secret: str | None = None


class AppCreate(ApiInput):
    name: str = Field(min_length=1, max_length=NAME_MAX)
    homepage: str = Field(default="", max_length=URI_MAX)
    redirect_uris: list[Uri] = Field(min_length=1, max_length=clients.MAX_REDIRECT_URIS)
    public: bool = False
    org_bound: bool = False


class AppUpdate(ApiInput):
    name: str | None = Field(default=None, min_length=1, max_length=NAME_MAX)
    homepage: str | None = Field(default=None, max_length=URI_MAX)
    redirect_uris: list[Uri] | None = Field(default=None, min_length=1,
                                            max_length=clients.MAX_REDIRECT_URIS)


class AuthorizationOut(ApiModel):
    client_id: str
    name: str
    verified: bool
    scopes: list[str]
    organizations: list[str]
    date_created: datetime


def _person(principal: Principal) -> int:
    if principal.user_id is None:
        raise NotFound("app not found")
    return principal.user_id


@router.get("/oauth-apps/", response_model=list[AppOut])
def list_apps(principal: Principal = Depends(Authenticated(OAUTH_APPS)),
              db: Session = Depends(get_db)) -> list[AppOut]:
    return [AppOut.of(c) for c in clients.list_apps(db, _person(principal))]


@router.post("/oauth-apps/", response_model=AppWithSecret, status_code=201)
def create_app(body: AppCreate, principal: Principal = Depends(Authenticated(OAUTH_APPS)),
               db: Session = Depends(get_db)) -> AppWithSecret:
    """Register an app. A confidential app's ``clientSecret`` is in this response only."""
    new = clients.create_app(db, owner_id=_person(principal), name=body.name,
                             homepage=body.homepage, redirect_uris=body.redirect_uris,
                             public=body.public, org_bound=body.org_bound)
    return AppWithSecret(**AppOut.of(new.client).model_dump(), client_secret=new.client_secret)


@router.get("/oauth-apps/{client_id}/", response_model=AppOut)
def read_app(client_id: ClientId, principal: Principal = Depends(Authenticated(OAUTH_APPS)),
             db: Session = Depends(get_db)) -> AppOut:
    return AppOut.of(clients.get_app(db, _person(principal), client_id))


@router.put("/oauth-apps/{client_id}/", response_model=AppOut)
def update_app(client_id: ClientId, body: AppUpdate,
               principal: Principal = Depends(Authenticated(OAUTH_APPS)),
               db: Session = Depends(get_db)) -> AppOut:
    return AppOut.of(clients.update_app(db, _person(principal), client_id, name=body.name,
                                        homepage=body.homepage,
                                        redirect_uris=body.redirect_uris))


@router.post("/oauth-apps/{client_id}/rotate-secret/", response_model=AppWithSecret)
def rotate_secret(client_id: ClientId,
                  principal: Principal = Depends(Authenticated(OAUTH_APPS)),
                  db: Session = Depends(get_db)) -> AppWithSecret:
    """A new secret (in this response only); the old one stops working at once."""
    new = clients.rotate_secret(db, _person(principal), client_id)
    return AppWithSecret(**AppOut.of(new.client).model_dump(), client_secret=new.client_secret)


@router.delete("/oauth-apps/{client_id}/", status_code=204)
def delete_app(request: Request, client_id: ClientId,
               principal: Principal = Depends(Authenticated(OAUTH_APPS)),
               db: Session = Depends(get_db)) -> None:
    """Delete an app: its tokens, and the agent tokens they minted, stop at once."""
    clients.delete_app(db, runtime(request).deny_list, _person(principal), client_id)


@router.get("/oauth-authorizations/", response_model=list[AuthorizationOut])
def list_authorizations(principal: Principal = Depends(Authenticated(OAUTH_AUTHORIZATIONS)),
                        db: Session = Depends(get_db)) -> list[AuthorizationOut]:
    return [AuthorizationOut(client_id=a.client_id, name=a.name, verified=a.verified,
                             scopes=registry.ordered(a.scopes),
                             organizations=list(a.organizations), date_created=a.since)
            for a in tokens.list_authorizations(db, _person(principal))]


@router.delete("/oauth-authorizations/{client_id}/", status_code=204)
def revoke_authorization(request: Request, client_id: ClientId,
                         principal: Principal = Depends(Authenticated(OAUTH_AUTHORIZATIONS)),
                         db: Session = Depends(get_db)) -> None:
    """Revoke an app I authorized: its access and refresh tokens stop at once."""
    if not tokens.revoke_authorization(db, runtime(request).deny_list, _person(principal),
                                       client_id):
        raise NotFound("authorization not found")
