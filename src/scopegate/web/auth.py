"""The scopegate app's guard: the public ``scopegate.guard`` deciding in-process, with
the first-party session cookie; and what pages and the MCP endpoint use beside it.

The API routes declare their ``ScopeMap``s with ``scopegate.guard.Permission`` and
``Authenticated`` like any other app's; this module only builds the app's ``Guard``
(``app_guard``) and lets pages run their own decisions through the same gate
(``through_gate``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection
from starlette.requests import Request

from scopegate.guard import Guard
from scopegate.guard.guard import guard_of
from scopegate.guard.local import LocalVerifier, denials_of, request_info
from scopegate.guard.presented import MAX_AUTHORIZATION_HEADER
from scopegate.runtime.process import Runtime
from scopegate.services.gate import Verdict
from scopegate.web.cookies import SessionCookie

__all__ = ["MAX_AUTHORIZATION_HEADER", "app_guard", "denials_of", "request_info",
           "through_gate"]
T = TypeVar("T")


def app_guard(runtime: Runtime, cookie: SessionCookie) -> Guard:
    """The app's one guard: this process's gate, bearer tokens or the session cookie."""
    return Guard(LocalVerifier(runtime), sessions=cookie)


async def through_gate(request: Request, decide: Callable[[Connection | None, Verdict], T]) -> T:
    """Run a page's ``decide`` through the app's gate; refusals become challenges."""
    verifier = guard_of(request).verifier
    assert isinstance(verifier, LocalVerifier)  # noqa: S101 - the app builds it so
    return await verifier.through_gate(request, decide)
