"""``/oauth/device``: where a person types a device's user code (RFC 8628 §3.3).

Signed in first (the login page brings them back, the code kept in the link). A wrong
code counts against the person: after ``USER_CODE_FAILURES`` within
``USER_CODE_WINDOW_SECONDS`` the page answers 429 until the window ends, so user codes
(20^8 of them) can't be guessed through it. A right code shows the same consent as the
authorization endpoint: the app, what each scope unlocks, the organization picker.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from scopegate.core.rate_limits import RateLimitedAction
from scopegate.services.errors import Invalid, NotFound
from scopegate.services.oauth import consent, device
from scopegate.services.rate_limiter import (
    UNAVAILABLE_RETRY_SECONDS,
    RateLimitsUnavailable,
    RateRefused,
)
from scopegate.store.counters import CountersUnavailable
from scopegate.web.rate_limits import limit_async, page_refusal
from scopegate.web.runtime import runtime
from scopegate.web.transactions import TransactionalRoute, unit_of_work
from scopegate.web.ui.approvals import scope_rows
from scopegate.web.ui.rendering import render
from scopegate.web.ui.session import WebUser, check_form_csrf, web_user

router = APIRouter(route_class=TransactionalRoute, include_in_schema=False)
CodeText = Annotated[str, Form(max_length=32)]


def _failures_key(me: WebUser) -> str:
    return f"oauth-device-user-code:{me.user.id}"


def _throttled(request: Request, me: WebUser, retry_after: int) -> Response:
    response = render(request, "error.html", 429, me=me, title="Too many codes",
                      message="Too many wrong codes. Wait a few minutes and try again.")
    response.headers["Retry-After"] = str(max(1, retry_after))
    return response


def _entry(request: Request, me: WebUser, user_code: str, error: str | None = None,
           status: int = 200) -> Response:
    return render(request, "device.html", status, me=me, user_code=user_code, error=error)


@router.get(device.DEVICE_PATH)
async def device_page(request: Request, user_code: str = Query(default="", max_length=32),
                      me: WebUser = Depends(web_user)) -> Response:
    return _entry(request, me, user_code)


@router.post(device.DEVICE_PATH)
async def device_decision(
    request: Request,
    user_code: CodeText,
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    decision: Annotated[str, Form(max_length=16)] = "",
    orgs: Annotated[list[str] | None, Form(max_length=100)] = None,
    me: WebUser = Depends(web_user),
) -> Response:
    check_form_csrf(request, me, csrf_token)
    try:
        await limit_async(request, RateLimitedAction.DEVICE_CODE, account=f"user:{me.user.id}")
    except RateRefused as refused:
        return page_refusal(request, refused, me)
    rt = runtime(request)
    try:
        tally = rt.counters.count(_failures_key(me))
    except CountersUnavailable:  # fail closed: no unlimited code guessing
        return page_refusal(request, RateLimitsUnavailable(
            RateLimitedAction.DEVICE_CODE, UNAVAILABLE_RETRY_SECONDS), me)
    if tally.count >= device.USER_CODE_FAILURES:
        return _throttled(request, me, tally.retry_after)
    code = device.normalize_user_code(user_code)

    def find(db: Session) -> tuple[device.DeviceRequest, list[consent.OrgChoice]]:
        if code is None:
            raise NotFound("That code is unknown or expired.")
        return device.pending_request(db, code), consent.org_choices(db, me.user.id)

    try:
        found, choices = await unit_of_work(rt, find, writes=False)
    except NotFound as error:
        try:
            rt.counters.add(_failures_key(me), device.USER_CODE_WINDOW_SECONDS)
        except CountersUnavailable:
            return page_refusal(request, RateLimitsUnavailable(
                RateLimitedAction.DEVICE_CODE, UNAVAILABLE_RETRY_SECONDS), me)
        return _entry(request, me, "", error.detail, 400)
    if decision not in ("approve", "deny"):
        return _consent(request, me, found, choices)
    try:
        granted = (consent.decide(me.user.id, found.scopes, choices, orgs or [],
                                  org_bound=False)
                   if decision == "approve" else None)
        await unit_of_work(rt, lambda db: device.decide(
            db, found, user_id=me.user.id, approved=granted is not None,
            scopes=granted.scopes if granted else frozenset(),
            org_ids=granted.org_ids if granted else frozenset()), writes=True)
    except Invalid as error:
        return _consent(request, me, found, choices, error.detail, 400)
    except NotFound as error:
        return _entry(request, me, "", error.detail, 400)
    return render(request, "device_done.html", me=me, approved=granted is not None,
                  client_name=found.client_name)


def _consent(request: Request, me: WebUser, found: device.DeviceRequest,
             choices: list[consent.OrgChoice], error: str | None = None,
             status: int = 200) -> Response:
    held = consent.held(choices)
    client = {"name": found.client_name, "verified": found.client_verified,
              "registration": "", "client_id": found.client_id, "org_bound": False}
    return render(request, "consent.html", status, me=me, client=client,
                  action=device.DEVICE_PATH, redirect_host=None, user_code=found.user_code,
                  hidden=[("user_code", found.user_code)],
                  rows=scope_rows(request, found.scopes, held), choices=choices,
                  grantable=bool(found.scopes & held), error=error)
