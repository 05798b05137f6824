"""Page-side session handling: who is logged in, and CSRF on every form post."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends
from sqlalchemy.orm import Session
from starlette.requests import Request

from scopegate.services.web_sessions import session_user
from scopegate.store.models import User
from scopegate.web.auth import get_db
from scopegate.web.runtime import runtime
from scopegate.web.transactions import reads_released


class LoginRequired(Exception):
    """Answered with a redirect to the login page."""


class CsrfFailed(Exception):
    """Answered with a 403 page."""


@dataclass(frozen=True)
class WebUser:
    user: User
    raw_session: str
    csrf_token: str


def web_user(request: Request, db: Session = Depends(get_db)) -> WebUser:
    """The logged-in person; bearer credentials are not a login for pages."""
    rt = runtime(request)
    raw = rt.cookie.read(request)
    with reads_released(db):
        user = session_user(db, raw) if raw else None
    if raw is None or user is None:
        raise LoginRequired
    return WebUser(user=user, raw_session=raw, csrf_token=rt.cookie.csrf_token(raw))


def check_form_csrf(request: Request, me: WebUser, presented: str | None) -> None:
    if not runtime(request).cookie.csrf_ok(me.raw_session, presented):
        raise CsrfFailed
