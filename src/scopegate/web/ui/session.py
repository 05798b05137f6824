"""Page-side session handling: who is logged in (through the gate), and CSRF on forms."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection
from starlette.requests import Request
from starlette.responses import HTMLResponse

from scopegate.core.access import Principal
from scopegate.core.permissions import ScopeMap
from scopegate.services.access import OrgAccess
from scopegate.services.errors import ServiceError
from scopegate.services.gate import Verdict
from scopegate.services.web_sessions import LiveSession, SessionUser
from scopegate.store.models import SLUG_MAX
from scopegate.web.auth import request_info, through_gate
from scopegate.web.runtime import runtime, session_cookie
from scopegate.web.ui.rendering import problem_page


class LoginRequired(Exception):
    """Answered with a redirect to the login page."""


class CsrfFailed(Exception):
    """Answered with a 403 page."""


@dataclass(frozen=True)
class WebUser:
    user: SessionUser
    raw_session: str
    csrf_token: str
    session: LiveSession

    @property
    def principal(self) -> Principal:
        """The browser session as the gate's caller."""
        return Principal(kind=None, credential_ref=self.session.ref, user_id=self.user.id,
                         expires_at=int(self.session.expires_at))


async def web_user(request: Request) -> WebUser:
    """The logged-in person; bearer credentials are not a login for pages."""
    cookie = session_cookie(request)
    raw = cookie.read(request)
    if raw is None:
        raise LoginRequired
    gate = runtime(request).gate
    live = await gate.run(lambda conn: gate.session(raw, conn))
    if live is None:
        raise LoginRequired
    return WebUser(user=live.user, raw_session=raw, csrf_token=cookie.csrf_token(raw),
                   session=live)


async def org_access(request: Request, me: WebUser, org: str) -> OrgAccess:
    """My access in ``org``, decided by the gate as for any other caller (a
    ``ServiceError`` when the organization is unknown or not mine)."""
    gate = runtime(request).gate
    info = request_info(request)

    def decide(conn: Connection | None, verdict: Verdict) -> OrgAccess:
        return gate.org_access(me.principal, org, conn, verdict, info)

    return await through_gate(request, decide)


async def page_access(request: Request, me: WebUser, org: str, scope_map: ScopeMap,
                      refusal: str) -> OrgAccess | HTMLResponse:
    """My access in ``org`` if ``scope_map`` lets me GET the page, else the page saying
    no: 404 for an organization that is unknown or not mine, 403 with ``refusal``."""
    try:
        oa = await org_access(request, me, org[:SLUG_MAX + 1])
    except ServiceError:
        return problem_page(request, me, 404, "Not found", "No such organization.")
    if not scope_map.decide("GET", oa.access.scopes).allowed:
        return problem_page(request, me, 403, "Not allowed", refusal)
    return oa


def check_form_csrf(request: Request, me: WebUser, presented: str | None) -> None:
    if not session_cookie(request).csrf_ok(me.raw_session, presented):
        raise CsrfFailed
