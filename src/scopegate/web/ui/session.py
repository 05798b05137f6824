"""Page-side session handling: who is logged in (through the gate), and CSRF on forms."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection
from starlette.requests import Request

from scopegate.core.access import Principal
from scopegate.services.access import OrgAccess
from scopegate.services.gate import Verdict
from scopegate.services.web_sessions import LiveSession, SessionUser
from scopegate.web.auth import request_info, through_gate
from scopegate.web.runtime import runtime, session_cookie


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


def check_form_csrf(request: Request, me: WebUser, presented: str | None) -> None:
    if not session_cookie(request).csrf_ok(me.raw_session, presented):
        raise CsrfFailed
