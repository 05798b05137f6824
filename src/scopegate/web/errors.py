"""Exception handlers: every failure becomes a clear JSON 4xx; a bug is a bare 500.

Validation errors are answered with 400 and the fields at fault; the offending input
is never echoed (it may hold a secret).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from scopegate.guard.errors import RETRY_AFTER_SECONDS
from scopegate.store.counters import CountersUnavailable
from scopegate.web.security_headers import NO_STORE, with_security_headers
from scopegate.web.ui.rendering import render
from scopegate.web.ui.session import CsrfFailed, LoginRequired

log = logging.getLogger("scopegate.web")
_BARE_ERROR_HEADERS = {
    name.decode(): value.decode() for name, value in with_security_headers([], NO_STORE)
}


def _validation_detail(exc: RequestValidationError) -> list[dict[str, object]]:
    detail = []
    for error in exc.errors()[:20]:
        loc = [part for part in error.get("loc", ()) if part not in ("body",)]
        detail.append(
            {"field": ".".join(str(p) for p in loc) or "body", "message": str(error.get("msg"))}
        )
    return detail


def install(app: FastAPI) -> None:
    """The app's handlers besides the guard's (``ChallengeError`` and ``ServiceError``,
    installed by ``scopegate.guard.Guard.install``, which also writes a refusal's audit
    events after the response)."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_detail(exc)
        fields = ", ".join(str(e["field"]) for e in errors)
        return JSONResponse(
            {"detail": f"invalid request: {fields}", "errors": errors}, status_code=400
        )

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> JSONResponse:
        # The database refused a value the request carried (e.g. a NUL character on
        # PostgreSQL): the client's fault, so 400. The SQL and its values are not logged.
        log.info("database refused a value on %s %r", request.method, request.url.path)
        return JSONResponse({"detail": "invalid request: a value is not acceptable"},
                            status_code=400)

    @app.exception_handler(PoolTimeout)
    @app.exception_handler(OperationalError)
    async def _overloaded(request: Request, exc: Exception) -> JSONResponse:
        # No pooled connection or no write lock within the bounded wait, or the database
        # is unreachable: the request did nothing, so the client may retry. Never a 500,
        # never a wait without end.
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path,
                    type(exc).__name__)
        return JSONResponse({"detail": "the service is busy; retry shortly"}, status_code=503,
                            headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.exception_handler(CountersUnavailable)
    async def _no_counters(request: Request, exc: CountersUnavailable) -> JSONResponse:
        # A windowed count (e.g. wrong device user codes) could not be read or written:
        # refuse rather than count nothing, and never as a 500.
        log.warning("counters unavailable on %s %s: %s", request.method, request.url.path,
                    exc)
        return JSONResponse({"detail": "this is unavailable right now; retry shortly"},
                            status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, _: LoginRequired) -> Response:
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        from urllib.parse import quote

        return RedirectResponse("/login?next=" + quote(target, safe=""), status_code=303)

    @app.exception_handler(CsrfFailed)
    async def _csrf(request: Request, _: CsrfFailed) -> Response:
        return render(
            request, "error.html", 403, title="Form expired",
            message="The form was missing its CSRF token or it did not match your session. "
            "Reload the page and try again.",
        )

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path)
        # Answered outside every middleware (Starlette's ServerErrorMiddleware), so the
        # security headers are added here.
        return JSONResponse({"detail": "internal error"}, status_code=500,
                            headers=_BARE_ERROR_HEADERS)
