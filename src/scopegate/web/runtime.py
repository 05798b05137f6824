"""The web layer's view of the process: the ``Runtime`` and the session cookie signer."""

from __future__ import annotations

from starlette.requests import Request

from scopegate.runtime.process import Runtime
from scopegate.web.cookies import SessionCookie


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def session_cookie(request: Request) -> SessionCookie:
    return request.app.state.session_cookie
