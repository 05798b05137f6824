"""``GET /api/0/users/me/``: the person behind the credential (an MCP front door's
``whoami`` asks it of its upstream)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from scopegate.guard import Authenticated, Principal, Rule, ScopeMap, TokenKind
from scopegate.services import directory
from scopegate.web.api.models import ApiModel
from scopegate.web.transactions import TransactionalRoute, get_db

router = APIRouter(route_class=TransactionalRoute, tags=["users"])

ME = ScopeMap(
    {"GET": Rule((), "see who you are")},
    org_scoped=False,
    kinds=frozenset({None, TokenKind.USER, TokenKind.OAUTH_ACCESS, TokenKind.AGENT}),
)


class MeOut(ApiModel):
    id: str
    email: str
    name: str


@router.get("/users/me/", response_model=MeOut)
def who_am_i(principal: Principal = Depends(Authenticated(ME)),
             db: Session = Depends(get_db)) -> MeOut:
    """The person a session, user token, OAuth access token or agent token stands for."""
    user = directory.get_user(db, principal.user_id)
    return MeOut(id=str(user.id), email=user.email, name=user.name)
