"""The web side of rate limits: who a request counts against, and the 429/503 answers.

Endpoints call ``limit`` (sync endpoints, which run in a worker thread) or
``limit_async`` (async ones: a Redis round trip hops to a thread, so a slow Redis never
stalls the event loop), or declare ``Depends(AddressLimit(action))`` when the client
address is the only key. A refusal is ``services.rate_limiter.RateRefused``; the handler
``install`` adds answers it as JSON (``{"detail": ...}``) with ``Retry-After``. OAuth
endpoints answer with an OAuth error body (``oauth_refusal``) and pages with the error
page (``page_refusal``); all carry ``Retry-After`` and, through the middleware, the
security headers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import anyio.to_thread
import orjson
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from scopegate.core.access import Principal
from scopegate.core.rate_limits import RateLimitedAction
from scopegate.services.rate_limiter import RateLimitsUnavailable, RateRefused
from scopegate.store.counters import MemoryCounters
from scopegate.web.runtime import runtime
from scopegate.web.ui.rendering import render

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def client_address(request: Request) -> str:
    """The TCP peer, or the client a trusted proxy named (uvicorn's proxy headers)."""
    return request.client.host if request.client else ""


def principal_account(principal: Principal) -> str:
    """The account a person's request counts against: the person (however many
    credentials they hold), else the credential itself."""
    if principal.user_id is not None:
        return f"user:{principal.user_id}"
    return principal.credential_ref


def limit(request: Request, action: RateLimitedAction, *, account: str | None = None,
          by_address: bool = True) -> None:
    """Count this request (blocking: call from a worker thread); ``RateRefused`` when
    refused."""
    runtime(request).rate_limiter.check(
        action, address=client_address(request) if by_address else None, account=account)


async def off_loop(request: Request, call: Callable[[], None]) -> None:
    """Run a limiter call from the event loop: in-process counters inline (no I/O),
    Redis in a worker thread."""
    if isinstance(runtime(request).rate_limiter.counters, MemoryCounters):
        call()
    else:
        await anyio.to_thread.run_sync(call)


async def limit_async(request: Request, action: RateLimitedAction, *,
                      account: str | None = None, by_address: bool = True) -> None:
    """``limit`` from the event loop."""
    await off_loop(request, functools.partial(limit, request, action, account=account,
                                              by_address=by_address))


class AddressLimit:
    """A dependency: count the request against its client address (async)."""

    def __init__(self, action: RateLimitedAction) -> None:
        self.action = action

    async def __call__(self, request: Request) -> None:
        await limit_async(request, self.action)


def _headers(refused: RateRefused) -> dict[str, str]:
    return {"Retry-After": str(refused.retry_after), **_NO_STORE}


def _message(refused: RateRefused) -> str:
    if isinstance(refused, RateLimitsUnavailable):
        return "This is unavailable right now; retry after the Retry-After seconds."
    return "Too many requests; retry after the Retry-After seconds."


def json_refusal(refused: RateRefused) -> JSONResponse:
    return JSONResponse({"detail": _message(refused)}, status_code=refused.status,
                        headers=_headers(refused))


def oauth_refusal(refused: RateRefused) -> Response:
    """An OAuth-style error body (RFC 6749 §5.2 shape) with the HTTP status saying why."""
    body = {"error": "temporarily_unavailable", "error_description": _message(refused)}
    return Response(orjson.dumps(body), refused.status, _headers(refused),
                    media_type="application/json")


def page_refusal(request: Request, refused: RateRefused, me: object = None) -> HTMLResponse:
    """The error page; never says which key was spent."""
    title, message = (
        ("Unavailable", "This is unavailable right now. Please try again in a minute.")
        if isinstance(refused, RateLimitsUnavailable)
        else ("Too many requests", "Too many requests. Please wait a minute and try again."))
    response = render(request, "error.html", refused.status, me=me, title=title,
                      message=message)
    response.headers.update(_headers(refused))
    return response


def install(app: FastAPI) -> None:
    """Answer a refusal no endpoint caught as JSON with ``Retry-After``."""

    @app.exception_handler(RateRefused)
    async def _refused(_: Request, exc: RateRefused) -> JSONResponse:
        return json_refusal(exc)
