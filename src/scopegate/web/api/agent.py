"""Agent capability tokens over HTTP: mint, approve (browser only), grants, sessions.

A mint request::

    POST /api/0/organizations/acme/agent/token/
    Authorization: Bearer sgu_...
    {"sessionId": "claude-42", "requestedScopes": ["event:read"], "agent": "claude"}

    201 {"token": "sga_eyJ...", "expiresAt": "...", "scopes": ["event:read"],
         "sessionId": "claude-42"}
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import Field, field_validator
from sqlalchemy.orm import Session
from starlette.requests import Request

from scopegate.core.agent_token import AGENT_MAX, AGENT_NAME_RE, SESSION_ID_RE
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
from scopegate.runtime.process import Runtime
from scopegate.services import agent_tokens, directory, grants
from scopegate.services.errors import Invalid, NotFound
from scopegate.store.models import AGENT_SESSION_MAX, Organization, WriteGrant
from scopegate.web.api.models import ApiInput, ApiModel
from scopegate.web.auth import request_info
from scopegate.web.rate_limits import limit, principal_account
from scopegate.web.runtime import runtime
from scopegate.web.transactions import TransactionalRoute, get_db, unit_of_work

router = APIRouter(route_class=TransactionalRoute, tags=["agent"])

_PEOPLE = frozenset({None, TokenKind.USER, TokenKind.OAUTH_ACCESS})
AGENT_TOKEN = ScopeMap({"POST": Rule((), "mint agent tokens")}, kinds=_PEOPLE)
#: Approving is for a person in a browser session only: no bearer token of any kind.
AGENT_APPROVE = ScopeMap({"POST": Rule((), "approve agent writes")}, kinds=frozenset({None}))
AGENT_SESSION = ScopeMap({"DELETE": Rule((), "revoke agent sessions")}, kinds=_PEOPLE)
#: An agent client waiting for its person's approval polls this with the person's
#: credential: the same kinds that may mint.
AGENT_SESSION_GRANT = ScopeMap({"GET": Rule((), "see an agent session's grant")},
                               kinds=_PEOPLE)
MY_GRANTS = ScopeMap(
    {"GET": Rule((), "list your agent grants"), "DELETE": Rule((), "revoke agent grants")},
    org_scoped=False,
    kinds=frozenset({None, TokenKind.USER}),
)
MAX_ID = 2**31 - 1
ScopeName = Annotated[str, Field(max_length=32)]
SessionId = Annotated[str, Field(min_length=1, max_length=AGENT_SESSION_MAX,
                                 pattern=SESSION_ID_RE.pattern)]
#: An agent's self-chosen name (shown to its person as a claim, never as a fact).
AgentName = Annotated[str, Field(min_length=1, max_length=AGENT_MAX,
                                 pattern=f"^{AGENT_NAME_RE.pattern}$")]


def _known(values: list[str] | None) -> list[str] | None:
    if values is not None:
        try:
            registry.validate(values)
        except registry.UnknownScopeError:
            # Name the rule, never the caller's text.
            raise ValueError("every scope must be one of the registry's scopes") from None
    return values


class MintRequest(ApiInput):
    session_id: SessionId
    requested_scopes: list[ScopeName] | None = Field(default=None, max_length=64)
    ttl_seconds: int | None = Field(default=None, ge=30, le=3600)
    #: Who is acting (RFC 8693 ``act``): an agent's name, shown to the person.
    agent: AgentName | None = None
    #: The token's ``aud``: scopegate's API (the default) or a registered resource
    #: server's audience.
    audience: str | None = Field(default=None, min_length=1, max_length=512)

    _scopes = field_validator("requested_scopes")(_known)


class MintResponse(ApiModel):
    token: str
    expires_at: datetime
    scopes: list[str]
    session_id: str


class ApproveRequest(ApiInput):
    session_id: SessionId
    scopes: list[ScopeName] = Field(min_length=1, max_length=64)
    lifetime: str = Field(default=grants.DEFAULT_LIFETIME, max_length=8)
    agent: AgentName | None = None

    _scopes = field_validator("scopes")(_known)


class ApproveResponse(ApiModel):
    grant_id: str
    session_id: str
    scopes: list[str]
    dropped_scopes: list[str]
    expires_in: int


class GrantOut(ApiModel):
    id: str
    organization: str
    session_id: str
    agent: str
    scopes: list[str]
    date_created: datetime
    date_updated: datetime
    expires_at: datetime

    @classmethod
    def of(cls, grant: WriteGrant, org_slug: str) -> GrantOut:
        return cls(
            id=str(grant.id), organization=org_slug, session_id=grant.session_id,
            agent=grant.agent, scopes=registry.ordered(grant.scopes),
            date_created=grant.created_at, date_updated=grant.updated_at,
            expires_at=grant.expires_at,
        )


def _acting(principal: Principal, claimed: str | None) -> str | None:
    """Who acts (``act``): for an OAuth access token, its client, whatever the body
    claims; otherwise the name the caller gives."""
    if principal.kind is TokenKind.OAUTH_ACCESS:
        return principal.agent
    return claimed


async def minted_and_recorded(
    rt: Runtime, mint: Callable[[Session], agent_tokens.MintedAgentToken]
) -> agent_tokens.MintedAgentToken:
    """``mint``'s token, once its audit event is committed. A mint only reads (the live
    grant, in a read unit); its one write, the audit event, goes with the other mints' of
    the moment (``runtime/audit_batches.py``)."""
    minted = await unit_of_work(rt, mint, writes=False)
    await rt.audit_batches.write(minted.event)
    agent_tokens.count_mint(minted)
    return minted


@router.post("/organizations/{org}/agent/token/", response_model=MintResponse, status_code=201)
async def mint_agent_token(
    request: Request,
    body: MintRequest,
    oa: OrgAccess = Depends(Permission(AGENT_TOKEN)),
) -> MintResponse:
    """Mint a short-lived agent token: read scopes plus this session's live write grant,
    within the caller's access, narrowed to ``requestedScopes``."""
    # Per parent credential: each of a person's tokens (and sessions) its own budget.
    limit(request, RateLimitedAction.AGENT_MINT, account=oa.access.principal.credential_ref)
    rt = runtime(request)
    info = request_info(request)

    def mint(db: Session) -> agent_tokens.MintedAgentToken:
        return agent_tokens.mint(
            db,
            settings=rt.settings,
            keys=rt.keys,
            org=oa.org,
            access=oa.access,
            session_id=body.session_id,
            requested=frozenset(body.requested_scopes) if body.requested_scopes is not None
            else None,
            ttl_seconds=body.ttl_seconds,
            agent=_acting(oa.access.principal, body.agent),
            request=info,
            token_audience=body.audience,
        )

    minted = await minted_and_recorded(rt, mint)
    return MintResponse(
        token=minted.token,
        expires_at=minted.expires_at,
        scopes=registry.ordered(minted.claims.scopes),
        session_id=body.session_id,
    )


@router.post(
    "/organizations/{org}/agent/approve/", response_model=ApproveResponse, status_code=201
)
def approve_agent_writes(
    request: Request,
    body: ApproveRequest,
    oa: OrgAccess = Depends(Permission(AGENT_APPROVE)),
    db: Session = Depends(get_db),
) -> ApproveResponse:
    """Approve write scopes for one of *my* agent sessions (browser session + CSRF only).
    Scopes I do not hold are dropped and listed in ``droppedScopes``."""
    limit(request, RateLimitedAction.APPROVAL, account=principal_account(oa.access.principal))
    user_id = oa.access.principal.user_id
    if user_id is None:
        raise Invalid("approval needs a person")
    approval = grants.approve(
        db,
        org=oa.org,
        approver_id=user_id,
        session_id=body.session_id,
        requested=frozenset(body.scopes),
        lifetime=grants.lifetime_seconds(body.lifetime, oa.org),
        agent=body.agent or "",
        request=request_info(request),
    )
    return ApproveResponse(
        grant_id=str(approval.grant_id),
        session_id=body.session_id,
        scopes=registry.ordered(approval.scopes),
        dropped_scopes=registry.ordered(approval.dropped),
        expires_in=approval.expires_in,
    )


@router.delete("/organizations/{org}/agent/sessions/{session_id}/", status_code=204)
def revoke_agent_session(
    request: Request,
    session_id: str = Path(max_length=AGENT_SESSION_MAX),
    oa: OrgAccess = Depends(Permission(AGENT_SESSION)),
    db: Session = Depends(get_db),
) -> None:
    """Delete the session's grant and stop its live tokens: at once in this process,
    within ``SCOPEGATE_CACHE_SECONDS`` in every other (well under a second with Redis)."""
    grants.revoke_session(
        db, runtime(request).deny_list, org=oa.org,
        user_id=directory.get_user(db, oa.access.principal.user_id).id,
        session_id=session_id, request=request_info(request),
    )


class GrantStatus(ApiModel):
    session_id: str
    scopes: list[str]
    expires_at: datetime


@router.get("/organizations/{org}/agent/sessions/{session_id}/grant/",
            response_model=GrantStatus, responses={404: {"description": "no live grant"}})
def agent_session_grant(
    session_id: str = Path(max_length=AGENT_SESSION_MAX),
    oa: OrgAccess = Depends(Permission(AGENT_SESSION_GRANT)),
    db: Session = Depends(get_db),
) -> GrantStatus:
    """The caller's live write grant for this agent session in this organization (what an
    agent client waits for after asking its person for approval); 404 when there is none.
    Nothing is written (no audit row per poll)."""
    user_id = oa.access.principal.user_id
    grant = (agent_tokens.live_grant(db, oa.org.id, user_id, session_id)
             if user_id is not None else None)
    if grant is None:
        raise NotFound("no live grant for this agent session")
    return GrantStatus(session_id=grant.session_id, scopes=registry.ordered(grant.scopes),
                       expires_at=grant.expires_at)


@router.get("/agent/grants/", response_model=list[GrantOut])
def list_my_grants(
    principal: Principal = Depends(Authenticated(MY_GRANTS)), db: Session = Depends(get_db)
) -> list[GrantOut]:
    user = directory.get_user(db, principal.user_id)
    rows = grants.list_grants(db, user.id)
    slugs = {org.id: org.slug for org in db.query(Organization).filter(
        Organization.id.in_({g.org_id for g in rows}))}
    return [GrantOut.of(g, slugs.get(g.org_id, "")) for g in rows]


@router.delete("/agent/grants/{grant_id}/", status_code=204)
def revoke_my_grant(
    request: Request,
    grant_id: int = Path(ge=1, le=MAX_ID),
    principal: Principal = Depends(Authenticated(MY_GRANTS)),
    db: Session = Depends(get_db),
) -> None:
    grants.revoke_grant(
        db, runtime(request).deny_list, grant_id=grant_id,
        user_id=directory.get_user(db, principal.user_id).id, request=request_info(request),
    )

