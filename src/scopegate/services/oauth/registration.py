"""Dynamic client registration (RFC 7591): open, validated, and short-lived until used.

Anyone may register (MCP clients do so on first contact), so a registration proves
nothing: the consent page warns that the app is unverified, and a registration that
completes no authorization within ``SCOPEGATE_OAUTH_UNUSED_REGISTRATION_SECONDS`` is
deleted. Metadata is validated with size bounds; ``application_type`` is honoured:
a ``web`` client's redirect URIs are https, a ``native`` client's https or loopback.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any, Literal

from authlib.oauth2.rfc7591 import ClientRegistrationEndpoint as _RegistrationEndpoint
from authlib.oauth2.rfc7591 import InvalidClientMetadataError, InvalidRedirectURIError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scopegate.core import redirect_uris
from scopegate.core import scopes as registry
from scopegate.services.errors import Invalid
from scopegate.services.oauth import clients
from scopegate.store.models import NAME_MAX
from scopegate.store.oauth_models import URI_MAX

if TYPE_CHECKING:
    from scopegate.services.oauth.server import AuthorizationServer

AuthMethod = Literal["none", "client_secret_basic", "client_secret_post"]
GrantType = Literal["authorization_code", "refresh_token",
                    "urn:ietf:params:oauth:grant-type:device_code"]
Uri = Annotated[str, Field(max_length=URI_MAX)]


class ClientMetadata(BaseModel):
    """The RFC 7591 §2 fields we honour; others are ignored, all are bounded."""

    model_config = ConfigDict(extra="ignore")

    redirect_uris: list[Uri] = Field(default_factory=list, max_length=clients.MAX_REDIRECT_URIS)
    token_endpoint_auth_method: AuthMethod = "client_secret_basic"  # noqa: S105
    grant_types: list[GrantType] = Field(
        default_factory=lambda: ["authorization_code", "refresh_token"], min_length=1,
        max_length=3)
    response_types: list[Literal["code"]] = Field(default_factory=lambda: ["code"],
                                                  max_length=1)
    client_name: str = Field(default="", max_length=NAME_MAX)
    client_uri: Uri = ""
    scope: str = Field(default="", max_length=1024)
    application_type: Literal["web", "native"] = "web"


def _rule(error: ValidationError) -> str:
    """The first broken field and rule, never the submitted text."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "body"
    return f"{field}: {first['msg']}"[:200].encode("ascii", "replace").decode()


def validate(data: dict[str, Any]) -> ClientMetadata:
    try:
        metadata = ClientMetadata.model_validate(data)
    except ValidationError as error:
        raise InvalidClientMetadataError(_rule(error).replace('"', "'")) from None
    try:
        uris = clients.check_redirect_uris(metadata.redirect_uris)
    except Invalid as error:
        raise InvalidRedirectURIError(error.detail.replace('"', "'")) from None
    if metadata.application_type == "web" and any(redirect_uris.is_loopback(u) for u in uris):
        raise InvalidRedirectURIError("a web application's redirect URIs must be https")
    if metadata.scope:
        try:
            registry.validate(metadata.scope.split())
        except registry.UnknownScopeError:
            raise InvalidClientMetadataError("scope: every scope must be one of the "
                                             "registry's scopes") from None
    return metadata


class ClientRegistrationEndpoint(_RegistrationEndpoint):
    server: AuthorizationServer

    def authenticate_token(self, request: Any) -> bool:
        return True  # open registration (RFC 7591 §3); see the module docstring

    def extract_client_metadata(self, request: Any) -> dict[str, Any]:
        data = request.payload.data
        if not isinstance(data, dict):
            raise InvalidClientMetadataError("The body must be a JSON object.")
        return validate(data).model_dump()

    def generate_client_info(self, request: Any) -> dict[str, Any]:
        return {}  # the client id and secret come from ``clients.create_app``

    def save_client(self, client_info: dict[str, Any], client_metadata: dict[str, Any],
                    request: Any) -> clients.NewClient:
        public = client_metadata["token_endpoint_auth_method"] == "none"  # noqa: S105
        return clients.create_app(
            self.server.db, owner_id=None,
            name=client_metadata["client_name"] or "Unnamed app",
            redirect_uris=client_metadata["redirect_uris"],
            homepage=client_metadata["client_uri"], public=public,
            registration=clients.DYNAMIC,
            application_type=client_metadata["application_type"],
            grant_types=tuple(client_metadata["grant_types"]),
            expires_at=clients.unused_registration_expiry(
                self.server.settings.oauth_unused_registration_seconds),
        )

    def generate_client_registration_info(self, client: clients.NewClient,
                                          request: Any) -> dict[str, Any]:
        info: dict[str, Any] = {"client_id": client.client.client_id,
                                "client_id_issued_at": int(time.time())}
        if client.client_secret is not None:
            info["client_secret"] = client.client_secret
            info["client_secret_expires_at"] = 0
        return info

    def get_server_metadata(self) -> dict[str, Any]:
        return {}

    def resolve_public_key(self, request: Any) -> None:
        return None
