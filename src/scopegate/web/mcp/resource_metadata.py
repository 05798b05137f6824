"""RFC 9728 protected resource metadata for ``/mcp``: where its tokens come from.

Served at ``/.well-known/oauth-protected-resource/mcp`` (the path-suffixed form the MCP
spec has clients try first) and at ``/.well-known/oauth-protected-resource``. The
authorization server is this deployment's own (in proxy mode too: the front door issues
the MCP client's tokens). ``offline_access`` is not a scope here: refresh tokens come
with every code grant.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse

from scopegate.core import mcp_capabilities as caps
from scopegate.settings import Settings
from scopegate.web.mcp.endpoint import METADATA_PATH
from scopegate.web.runtime import runtime

router = APIRouter(tags=["mcp"])
ROOT_METADATA_PATH = "/.well-known/oauth-protected-resource"


def resource_metadata(settings: Settings) -> dict[str, Any]:
    return {
        "resource": settings.mcp_resource,
        "authorization_servers": [settings.issuer],
        "scopes_supported": list(caps.SUPPORTED_SCOPES),
        "bearer_methods_supported": ["header"],
        "resource_name": "scopegate MCP server",
        "resource_documentation": settings.base_url + "/openapi.json",
    }


@router.get(METADATA_PATH)
@router.get(ROOT_METADATA_PATH)
async def protected_resource_metadata(request: Request) -> JSONResponse:
    """The MCP endpoint's protected resource metadata (RFC 9728)."""
    return JSONResponse(resource_metadata(runtime(request).settings),
                        headers={"Cache-Control": "public, max-age=300"})
