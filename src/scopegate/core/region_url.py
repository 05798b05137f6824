"""Which API URL a tool may call: the configured one, or a ``regionUrl`` that passes here.

A tool argument is attacker-influenced text (a prompt can put anything in it), and the
request it leads to carries a person's token. So a region URL must be ``https``, name the
API's own host or one on the configured allowlist, carry no userinfo, no IP literal and
no port other than 443. Anything else is refused before any request is sent.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

MAX_URL = 512


class RegionUrlRefused(ValueError):
    """A ``regionUrl`` that may not be called; the message names the rule, not the URL."""


def check_region_url(url: str, *, api_host: str, allowed_hosts: tuple[str, ...]) -> str:
    """The region's base URL (``https://host``), or ``RegionUrlRefused``."""
    if len(url) > MAX_URL or any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise RegionUrlRefused("regionUrl must be a short https URL without spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise RegionUrlRefused("regionUrl is not a valid URL") from None
    if parts.scheme != "https":
        raise RegionUrlRefused("regionUrl must use https")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise RegionUrlRefused("regionUrl must not carry a user name or password")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise RegionUrlRefused("regionUrl must name a host")
    if _is_ip_literal(host):
        raise RegionUrlRefused("regionUrl must name a host, not an IP address")
    if port not in (None, 443):
        raise RegionUrlRefused("regionUrl must use the default https port")
    if host != api_host.lower() and host not in allowed_hosts:
        raise RegionUrlRefused("regionUrl must be the API's host or an allowed region host")
    if parts.query or parts.fragment or parts.path not in ("", "/"):
        raise RegionUrlRefused("regionUrl must be a bare origin (https://host)")
    return f"https://{host}"


_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


def _is_ip_literal(host: str) -> bool:
    candidate = host.strip("[]")
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        # Forms resolvers accept that ``ip_address`` does not: 0x7f.1, 2130706433, 0177.1.
        return all(_NUMERIC_LABEL.match(label) for label in candidate.split("."))
    return True
