"""Which hosts the server answers for, and the one origin it speaks as.

A request for a host not in ``Settings.trusted_hosts`` is refused (Starlette's
``TrustedHostMiddleware``, fed by ``host_patterns``). A request that passes is then
re-addressed to ``SCOPEGATE_BASE_URL``'s scheme and host (``CanonicalOriginMiddleware``),
so every absolute URL the app derives from the request — pagination links, Starlette's
trailing-slash redirects, anything added later — names the configured base URL, never
an alias the client chose or the scheme of a proxy hop.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

_DEFAULT_PORTS = {"http": 80, "https": 443}


def host_patterns(hosts: Iterable[str]) -> list[str]:
    """``Settings.trusted_hosts`` as ``TrustedHostMiddleware`` compares them.

    Starlette matches the ``Host`` header's host with IPv6 literals still in brackets
    (``[::1]:8000`` gives ``[::1]``), so a bare IPv6 address is bracketed here. A
    wildcard must be a leading ``*.``: anything else is a configuration error.
    """
    patterns = []
    for host in hosts:
        host = host.strip().lower()
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        if "*" in host and host != "*" and not (host.startswith("*.") and "*" not in host[1:]):
            raise ValueError(f"allowed host {host!r}: a wildcard must look like '*.example.com'")
        if host and host not in patterns:
            patterns.append(host)
    return patterns


class CanonicalOriginMiddleware:
    """Gives every HTTP request the base URL's scheme, host and port."""

    def __init__(self, app: ASGIApp, base_url: str) -> None:
        self.app = app
        parts = urlsplit(base_url)
        self.scheme = parts.scheme
        self.host_header = parts.netloc.encode("latin-1")
        self.server = (parts.hostname or "", parts.port or _DEFAULT_PORTS.get(parts.scheme, 80))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = [(k, v) for k, v in scope["headers"] if k != b"host"]
            headers.append((b"host", self.host_header))
            scope = {**scope, "scheme": self.scheme, "server": self.server,
                     "headers": headers}
        await self.app(scope, receive, send)
