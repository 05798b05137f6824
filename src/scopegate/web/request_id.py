"""The request id: one name for a request in every log line and in its response.

Accepted from ``X-Request-ID`` when well formed (1–128 of ``[A-Za-z0-9._:-]``: what a
load balancer or tracing header sends, and nothing that could forge a log line),
otherwise generated (uuid4 hex). It lives in a context variable for the request's
duration (worker threads inherit it: anyio copies the context) and is echoed on every
response, the 500s of ``ServerErrorMiddleware`` included: the middleware runs outside
Starlette's whole stack (``web/request_record.py::observe`` puts it there).
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
_WELL_FORMED = re.compile(rb"[A-Za-z0-9._:-]{1,128}")

#: The id of the request being handled, ``None`` outside one.
current_request_id: ContextVar[str | None] = ContextVar("scopegate_request_id", default=None)


def accepted_or_new(raw: bytes | None) -> str:
    """``raw`` when it is a well-formed request id, otherwise a fresh one."""
    if raw is not None and _WELL_FORMED.fullmatch(raw):
        return raw.decode("ascii")
    return uuid.uuid4().hex


def _request_header(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == HEADER:
            return value
    return None


class RequestIdMiddleware:
    """Sets ``current_request_id`` and the ``X-Request-ID`` response header (pure ASGI)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = accepted_or_new(_request_header(scope))
        header = (HEADER, request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != HEADER]
                message["headers"] = [*headers, header]
            await send(message)

        token = current_request_id.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_request_id.reset(token)
