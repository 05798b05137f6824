"""Authorization server metadata (RFC 8414): exactly what this server supports."""

from __future__ import annotations

from typing import Any

from scopegate.services.oauth import clients
from scopegate.services.oauth.server import GRANTABLE_SCOPES
from scopegate.settings import Settings

#: The server's endpoints, by metadata name. Paths are a fixed public interface.
ENDPOINTS = {
    "authorization_endpoint": "/oauth/authorize",
    "token_endpoint": "/oauth/token",
    "revocation_endpoint": "/oauth/revoke",
    "introspection_endpoint": "/oauth/introspect",
    "registration_endpoint": "/oauth/register",
    "device_authorization_endpoint": "/oauth/device/code",
}
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]


def server_metadata(settings: Settings) -> dict[str, Any]:
    base = settings.base_url
    return {
        "issuer": settings.issuer,
        **{name: base + path for name, path in ENDPOINTS.items()},
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(clients.GRANT_TYPES),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS[:2],
        "scopes_supported": list(GRANTABLE_SCOPES),
        "authorization_response_iss_parameter_supported": True,
        "client_id_metadata_document_supported": True,
        "service_documentation": base + "/openapi.json",
    }
