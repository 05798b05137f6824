"""Headers every response carries: no framing, no sniffing, no referrer, no caching.

Framing is refused (``X-Frame-Options`` and CSP ``frame-ancestors``) so no other origin
can overlay the approval page and steer a click onto Approve. Pages get a policy that
loads only our own files: no inline script or style, so an injected tag runs nothing.
Responses are ``no-store`` unless a route sets its own ``Cache-Control`` (JWKS does),
so a secret shown once (a new token, a minted agent token) never lands in a cache.

A pure ASGI middleware that edits the ``http.response.start`` message: Starlette's
``BaseHTTPMiddleware`` would cost a task and a body stream on every request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Pages (``text/html``): our own script, style and images only; forms post back to us.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'"
)
_ORIGIN = re.compile(r"https?://(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def page_policy_sending_forms_to(*redirect_uris: str) -> str:
    """``PAGE_POLICY`` whose ``form-action`` also admits each ``redirect_uris``' origin.

    Browsers apply ``form-action`` to the redirects a form submission follows, so the
    consent page's answer (a 303 to the client, or in proxy mode to the upstream server)
    needs that origin listed. Only plain origins are ever added; anything else is left
    out."""
    origins = []
    for uri in redirect_uris:
        parts = urlsplit(uri)
        origin = f"{parts.scheme}://{parts.netloc}"
        if _ORIGIN.fullmatch(origin) and origin not in origins:
            origins.append(origin)
    if not origins:
        return PAGE_POLICY
    return PAGE_POLICY.replace("form-action 'self'", "form-action 'self' " + " ".join(origins))


#: Everything else (JSON, CSS, redirects, plain text) loads nothing when opened directly.
DOCUMENT_POLICY = "default-src 'none'; frame-ancestors 'none'"
#: Default for responses that set no ``Cache-Control`` of their own.
NO_STORE = "no-store"
#: Default for static files: cacheable, revalidated by ``ETag`` on each use.
REVALIDATE = "no-cache"

Headers = list[tuple[bytes, bytes]]

_COMMON: Headers = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
_PAGE: Headers = [*_COMMON, (b"content-security-policy", PAGE_POLICY.encode())]
_DOCUMENT: Headers = [*_COMMON, (b"content-security-policy", DOCUMENT_POLICY.encode())]


def with_security_headers(raw: Iterable[tuple[bytes, bytes]], cache_control: str) -> Headers:
    """``raw`` plus each security header it lacks; a header already set is kept."""
    headers = list(raw)
    present = {name.lower() for name, _ in headers}
    is_page = any(
        name.lower() == b"content-type" and value.lower().startswith(b"text/html")
        for name, value in headers
    )
    headers += [(name, value) for name, value in (_PAGE if is_page else _DOCUMENT)
                if name not in present]
    if b"cache-control" not in present:
        headers.append((b"cache-control", cache_control.encode()))
    return headers


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP response of ``app``, errors included."""

    def __init__(self, app: ASGIApp, static_prefix: str = "/static/") -> None:
        self.app = app
        self.static_prefix = static_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        cache_control = REVALIDATE if path.startswith(self.static_prefix) else NO_STORE

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = with_security_headers(
                    message.get("headers", ()), cache_control
                )
            await send(message)

        await self.app(scope, receive, send_with_headers)
