"""Resource indicators (RFC 8707): which resource a token is for.

A token's audience is one resource this server protects: the API (``<base>/api/0/``)
by default, the MCP endpoint (``<base>/mcp``), or a registered resource server's audience
(``services/resource_servers.py``: a service in another process that introspects the
token). ``resource`` on the authorization, token and device requests picks one; any
other value is ``invalid_target``. The gate refuses a token at a resource it was not
issued for.
"""

from __future__ import annotations

from collections.abc import Sequence

from authlib.oauth2.rfc6749 import OAuth2Error
from sqlalchemy.orm import Session

from scopegate.services import resource_servers
from scopegate.settings import Settings


class InvalidTargetError(OAuth2Error):
    """RFC 8707 §2: the requested resource is unknown or not allowed."""

    error = "invalid_target"
    description = "The requested resource is not one this server issues tokens for."


def known_resources(settings: Settings) -> tuple[str, ...]:
    """The resources tokens can be issued for."""
    return (settings.api_resource, settings.mcp_resource)


def resolve(requested: Sequence[str], settings: Settings, default: str | None = None,
            db: Session | None = None) -> str:
    """The one resource ``requested`` names (``default``, else the API, when none). A path
    below the MCP endpoint (``<base>/mcp/…``) names the MCP endpoint. With ``db``, a
    registered resource server's audience is a resource too."""
    if not requested:
        return default or settings.api_resource
    if len(requested) > 1:
        raise InvalidTargetError()
    named = requested[0]
    if named.startswith(settings.mcp_resource + "/") and len(named) <= 512 and not any(
            part in ("", ".", "..") for part in named[len(settings.mcp_resource) + 1:]
            .split("/")):
        return settings.mcp_resource
    if named in known_resources(settings):
        return named
    if db is not None and resource_servers.is_registered(db, named):
        return named
    raise InvalidTargetError()
