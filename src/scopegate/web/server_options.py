"""The uvicorn options ``scopegate serve`` runs with: who may set the client address, and
what the access log may write.

uvicorn believes ``X-Forwarded-For``/``X-Forwarded-Proto`` from loopback peers (or from
``$FORWARDED_ALLOW_IPS``) unless told otherwise, so any local process could choose the
address that the audit log records and login throttling counts. Here forwarded headers
are believed only from ``settings.trusted_proxies``, and by default from no one.
"""

from __future__ import annotations

import ipaddress
from typing import Any, TypedDict

from scopegate.settings import Settings
from scopegate.web.json_logs import log_config


class InvalidTrustedProxyError(ValueError):
    """A ``trusted_proxies`` entry that is neither an IP address nor a network."""


class ServerOptions(TypedDict):
    """Keyword arguments for ``uvicorn.run`` beside the app, host and port."""

    proxy_headers: bool
    forwarded_allow_ips: list[str]
    log_config: dict[str, Any]
    log_level: str
    access_log: bool


def trusted_proxies(settings: Settings) -> list[str]:
    """The configured proxies, each checked to be an address or network.

    uvicorn would take a mistyped entry (or a network with host bits set) as a literal
    host name that never matches, or ``*`` as "trust everyone": a typo would silently
    change who is believed.
    """
    bad = []
    for entry in settings.trusted_proxy_list:
        try:
            ipaddress.ip_network(entry)  # strict: uvicorn ignores 10.1.0.5/16
        except ValueError:
            bad.append(entry)
    if bad:
        raise InvalidTrustedProxyError(
            "SCOPEGATE_TRUSTED_PROXIES takes IP addresses or networks (e.g. 10.0.0.5,"
            f"10.1.0.0/16); not: {', '.join(bad)}"
        )
    return settings.trusted_proxy_list


def server_options(settings: Settings) -> ServerOptions:
    """Proxy headers off unless proxies are configured; credentials redacted from logs;
    logs as ``SCOPEGATE_LOG_FORMAT`` and ``SCOPEGATE_LOG_LEVEL`` say."""
    proxies = trusted_proxies(settings)
    return ServerOptions(
        # An empty list (not None) so uvicorn never falls back to $FORWARDED_ALLOW_IPS.
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies,
        log_config=log_config(settings),
        log_level=settings.log_level.lower(),
        # JSON: the app's own access line (``web/request_record.py``) replaces uvicorn's.
        access_log=settings.log_format == "text",
    )
