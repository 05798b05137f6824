"""Redirect URIs: what a client may register, and when a presented one matches.

RFC 9700 §4.1.3: exact string match. The one exception is RFC 8252 §7.3: a native app
listens on a loopback port the operating system picks at run time, so a loopback
redirect URI matches on any port (scheme, host, path and query still exact).
Registered URIs are ``https://`` or ``http://`` on a loopback address; never a fragment
or userinfo.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import SplitResult, urlsplit

REDIRECT_URI_MAX: Final = 512
#: Loopback host names as ``urlsplit`` reports them (IPv6 without brackets).
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "::1", "localhost"})


class InvalidRedirectURI(ValueError):
    """The URI breaks a rule; the message names the rule, never the URI."""


def _split(uri: str) -> SplitResult | None:
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        return None
    return parts


def is_loopback(uri: str) -> bool:
    """Whether ``uri`` is an ``http://`` URI on a loopback host (RFC 8252 §7.3)."""
    parts = _split(uri)
    return parts is not None and parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS


def validate(uri: str) -> str:
    """``uri`` if it may be registered as a redirect URI, else ``InvalidRedirectURI``."""
    if not uri or len(uri) > REDIRECT_URI_MAX or not uri.isascii() or uri != uri.strip():
        raise InvalidRedirectURI(f"a redirect URI is 1 to {REDIRECT_URI_MAX} ASCII characters")
    parts = _split(uri)
    if parts is None or not parts.hostname:
        raise InvalidRedirectURI("a redirect URI must be an absolute URL with a host")
    if parts.fragment or "#" in uri:
        raise InvalidRedirectURI("a redirect URI must not have a fragment")
    if "@" in parts.netloc:
        raise InvalidRedirectURI("a redirect URI must not carry userinfo")
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
        return uri
    raise InvalidRedirectURI("a redirect URI must be https, or http on a loopback address")


def matches(registered: str, presented: str) -> bool:
    """Whether ``presented`` is the registered redirect URI (any port on loopback)."""
    if presented == registered:
        return True
    if not (is_loopback(registered) and is_loopback(presented)):
        return False
    a, b = _split(registered), _split(presented)
    return (
        a is not None
        and b is not None
        and "@" not in b.netloc
        and not b.fragment
        and "#" not in presented
        and a.hostname == b.hostname
        and a.path == b.path
        and a.query == b.query
    )
