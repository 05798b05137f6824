"""Login, logout, and the account page (my organizations and my tokens)."""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from scopegate.core import scopes as registry
from scopegate.core.rate_limits import RateLimitedAction
from scopegate.runtime.process import Runtime
from scopegate.services import credentials, directory
from scopegate.services.errors import ServiceError
from scopegate.services.login_throttle import KNOWN_DEVICE_MAX_AGE_SECONDS, LoginThrottled
from scopegate.services.rate_limiter import RateLimitsUnavailable, RateRefused
from scopegate.services.web_sessions import end_session, start_session
from scopegate.store.models import EMAIL_MAX, NAME_MAX
from scopegate.store.types import utcnow
from scopegate.web.rate_limits import limit, page_refusal
from scopegate.web.runtime import runtime, session_cookie
from scopegate.web.transactions import TransactionalRoute, get_db
from scopegate.web.ui.rendering import render
from scopegate.web.ui.session import WebUser, check_form_csrf, web_user

router = APIRouter(route_class=TransactionalRoute, include_in_schema=False)

LOGIN_CSRF_COOKIE = "sg_login_csrf"
#: The signed known-device cookie (see services/login_throttle.py).
KNOWN_DEVICE_COOKIE = "sg_device"
EXPIRY_CHOICES = {"": None, "1d": timedelta(days=1), "30d": timedelta(days=30),
                  "90d": timedelta(days=90)}



@router.get("/", response_class=RedirectResponse)
def index() -> RedirectResponse:
    return RedirectResponse("/account", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/account") -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", csrf_token=token, next=_safe_next(next), error=None)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict",
                        secure=runtime(request).settings.secure_cookies, max_age=3600)
    return response


def _safe_next(value: str) -> str:
    """Only same-origin paths; anything else goes to the account page."""
    if len(value) > 4096 or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/account"
    return value


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    email: Annotated[str, Form(max_length=EMAIL_MAX)],
    password: Annotated[str, Form(max_length=256)],
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    next: Annotated[str, Form(max_length=4096)] = "/account",
    db: Session = Depends(get_db),
) -> Response:
    rt = runtime(request)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected.encode(), csrf_token.encode()):
        return render(request, "login.html", 403, csrf_token=expected, next=_safe_next(next),
                      error="Your login form expired. Please try again.")
    # Throttled before the password is checked: a refused guess learns nothing.
    device_cookie = request.cookies.get(KNOWN_DEVICE_COOKIE)
    attempt = rt.login_throttle.attempt(
        email, request.client.host if request.client else "", device_cookie
    )
    try:
        limit(request, RateLimitedAction.LOGIN, account=_login_account(rt, attempt.account,
                                                                        device_cookie))
        rt.login_throttle.admit(attempt)
    except RateRefused as refused:
        return _login_refused(request, expected, next, LoginThrottled(
            refused.retry_after, unavailable=isinstance(refused, RateLimitsUnavailable)))
    except LoginThrottled as refused:
        return _login_refused(request, expected, next, refused)
    user = directory.authenticate_password(db, email, password)
    if user is None:
        return render(request, "login.html", 401, csrf_token=expected, next=_safe_next(next),
                      error="Email or password is incorrect.")
    rt.login_throttle.succeeded(attempt)
    raw = start_session(db, user, rt.settings.session_max_age_seconds)
    response = RedirectResponse(_safe_next(next), status_code=303)
    session_cookie(request).write(response, raw)
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    response.set_cookie(
        KNOWN_DEVICE_COOKIE, rt.login_throttle.device_cookie_after_login(device_cookie, attempt),
        max_age=KNOWN_DEVICE_MAX_AGE_SECONDS, httponly=True, samesite="lax",
        secure=rt.settings.secure_cookies, path="/",
    )
    return response


def _login_account(rt: Runtime, account: str | None, device_cookie: str | None) -> str | None:
    """What the login rate limit counts besides the address: the account (a keyed hash
    of the email), or the account *and browser* when that browser logged in to it before,
    so requests naming someone's email cannot spend their own browser's budget."""
    if account is None:
        return None
    device = rt.login_throttle.known_device(device_cookie, account)
    return account if device is None else f"{account}:{device}"


def _login_refused(request: Request, csrf: str, next: str,
                   refused: LoginThrottled) -> HTMLResponse:
    """429 for a spent budget, 503 when the counters are unreachable (login fails
    closed); neither says which budget, nor whether the account exists."""
    status, error = (
        (503, "Logging in is unavailable right now. Please try again later.")
        if refused.unavailable
        else (429, "Too many login attempts. Please try again later.")
    )
    response = render(request, "login.html", status, csrf_token=csrf, next=_safe_next(next),
                      error=error)
    response.headers["Retry-After"] = str(refused.retry_after)
    return response


@router.post("/logout")
def logout(
    request: Request,
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    me: WebUser = Depends(web_user),
    db: Session = Depends(get_db),
) -> Response:
    check_form_csrf(request, me, csrf_token)
    end_session(db, runtime(request).deny_list, me.raw_session)
    response = RedirectResponse("/login", status_code=303)
    session_cookie(request).clear(response)
    return response


def _account(request: Request, me: WebUser, db: Session, status_code: int = 200,
             **extra: object) -> HTMLResponse:
    return render(
        request,
        "account.html",
        status_code,
        me=me,
        memberships=directory.memberships(db, me.user.id),
        tokens=credentials.list_user_tokens(db, me.user.id),
        scopes=[(scope, registry.DESCRIPTIONS[scope]) for scope in registry.ORDERED],
        expiry_choices=list(EXPIRY_CHOICES),
        **extra,
    )


@router.get("/account", response_class=HTMLResponse)
def account(request: Request, me: WebUser = Depends(web_user),
            db: Session = Depends(get_db)) -> HTMLResponse:
    return _account(request, me, db)


@router.post("/account/tokens", response_class=HTMLResponse)
def create_token(
    request: Request,
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    name: Annotated[str, Form(max_length=NAME_MAX)] = "",
    scopes: Annotated[list[str] | None, Form(max_length=64)] = None,
    expires: Annotated[str, Form(max_length=8)] = "",
    me: WebUser = Depends(web_user),
    db: Session = Depends(get_db),
) -> HTMLResponse:
    """Create a token and show its secret on this response only."""
    check_form_csrf(request, me, csrf_token)
    try:
        limit(request, RateLimitedAction.TOKEN_CREATE, account=f"user:{me.user.id}")
    except RateRefused as refused:
        return page_refusal(request, refused, me)
    try:
        chosen = registry.validate(scopes or [])
        if expires not in EXPIRY_CHOICES:
            raise ServiceError("choose an expiry from the list")
        delta = EXPIRY_CHOICES[expires]
        user = directory.get_user(db, me.user.id)
        minted = credentials.create_user_token(
            db, user, chosen, name=name, expires_at=utcnow() + delta if delta else None
        )
    except (ServiceError, registry.UnknownScopeError) as error:
        return _account(request, me, db, 400, error=str(error))
    return _account(request, me, db, 201, new_token=minted.token, new_token_name=name)


@router.post("/account/tokens/{token_id}/revoke")
def revoke_token(
    request: Request,
    token_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    me: WebUser = Depends(web_user),
    db: Session = Depends(get_db),
) -> Response:
    check_form_csrf(request, me, csrf_token)
    try:
        credentials.revoke_user_token(db, runtime(request).deny_list, me.user.id,
                                      token_id)
    except ServiceError as error:
        return _account(request, me, db, 404, error=error.detail)
    return RedirectResponse("/account", status_code=303)
