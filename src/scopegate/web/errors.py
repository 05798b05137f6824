"""Exception handlers: every failure becomes a clear JSON 4xx; a bug is a bare 500.

Validation errors are answered with 400 and the fields at fault; the offending input
is never echoed (it may hold a secret).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from scopegate.services.errors import ServiceError
from scopegate.web.auth import ChallengeError
from scopegate.web.ui.rendering import render
from scopegate.web.ui.session import CsrfFailed, LoginRequired

log = logging.getLogger("scopegate.web")


def _validation_detail(exc: RequestValidationError) -> list[dict[str, object]]:
    detail = []
    for error in exc.errors()[:20]:
        loc = [part for part in error.get("loc", ()) if part not in ("body",)]
        detail.append(
            {"field": ".".join(str(p) for p in loc) or "body", "message": str(error.get("msg"))}
        )
    return detail


def install(app: FastAPI) -> None:
    @app.exception_handler(ChallengeError)
    async def _challenge(_: Request, exc: ChallengeError) -> JSONResponse:
        c = exc.challenge
        return JSONResponse(c.body, status_code=c.status, headers=c.headers)

    @app.exception_handler(ServiceError)
    async def _service(_: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

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
        return JSONResponse({"detail": "internal error"}, status_code=500)
