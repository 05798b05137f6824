"""Token revocation (RFC 7009) and introspection (RFC 7662) on our store.

* Revocation: any client revokes its own tokens (public ones too). A refresh token takes
  its whole grant with it (RFC 7009 §2.1: the access tokens of the same grant); an access
  token goes alone. Tokens of other clients are left alone (Authlib answers
  ``invalid_grant``); unknown tokens get the 200 RFC 7009 asks for.
* Introspection: only a confidential client, authenticated; it learns about its own tokens
  only, every other token is ``{"active": false}``. A resource server's credential
  (``services/resource_servers.py``) learns instead about the opaque credentials its
  callers present: user, org and integration tokens, and OAuth access tokens issued for
  its audience, with the organizations each may act in and its effective scopes there
  (``resource_introspection.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc7009 import RevocationEndpoint as _RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint as _IntrospectionEndpoint
from sqlalchemy import select

from scopegate.services import resource_servers
from scopegate.services.oauth import clients, registration, resource_introspection, tokens
from scopegate.services.oauth.grants import AUTH_METHODS
from scopegate.store.oauth_models import OAuthToken
from scopegate.store.types import utcnow

if TYPE_CHECKING:
    from scopegate.services.oauth.server import AuthorizationServer

_HINTS = {"access_token": tokens.ACCESS, "refresh_token": tokens.REFRESH}


def _query(server: AuthorizationServer, token: str, hint: str | None) -> tokens.StoredToken | None:
    # The hint is only a hint (RFC 7009 §2.1): fall back to any kind.
    return tokens.find_token(server.db, token, _HINTS.get(hint or "")) or tokens.find_token(
        server.db, token)


class RevocationEndpoint(_RevocationEndpoint):
    CLIENT_AUTH_METHODS = AUTH_METHODS
    server: AuthorizationServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return _query(self.server, token_string, token_type_hint)

    def revoke_token(self, token: tokens.StoredToken, request: Any) -> None:
        db = self.server.db
        if token.kind == tokens.REFRESH:
            tokens.revoke_grant(db, self.server.ctx.deny_list, token.grant_id)
            return
        row = db.scalar(select(OAuthToken).where(OAuthToken.id == token.id))
        if row is not None and row.revoked_at is None:
            row.revoked_at = utcnow()
            tokens.forget_access_token(db, self.server.ctx.deny_list, row)
            db.flush()


def _timestamp(value: datetime) -> int:
    return int(value.timestamp())


@dataclass(frozen=True)
class Introspected:
    """A credential a resource server asked about, already authenticated (so neither
    expired nor revoked), with its answer."""

    payload: dict[str, Any]

    def is_expired(self) -> bool:
        return False

    def is_revoked(self) -> bool:
        return False


class IntrospectionEndpoint(_IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    server: AuthorizationServer

    def authenticate_token(self, request: Any, client: clients.Client) -> Any:
        if client.registration == clients.RESOURCE_SERVER:
            self.check_params(request, client)
            return self._for_resource_server(request.form["token"], client)
        return super().authenticate_token(request, client)

    # -- an OAuth client: its own tokens -----------------------------------------------
    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return _query(self.server, token_string, token_type_hint)

    def check_permission(self, token: tokens.StoredToken, client: clients.Client,
                         request: Any) -> bool:
        return token.client_pk == client.pk

    # -- a resource server: what its callers present -------------------------------------
    def _for_resource_server(self, token: str, client: clients.Client) -> Introspected | None:
        db, chain = self.server.db, self.server.ctx.chain
        audience = resource_servers.audience_of_client(db, client.pk)
        if audience is None or chain is None:
            return None  # fail closed
        payload = resource_introspection.introspect(
            db.connection(), chain, token, audience=audience,
            issuer=self.server.settings.issuer)
        return Introspected(payload) if payload is not None else None

    def introspect_token(self, token: tokens.StoredToken | Introspected) -> dict[str, Any]:
        if isinstance(token, Introspected):
            return dict(token.payload)
        payload = {
            "active": True,
            "scope": token.get_scope(),
            "client_id": token.client_id,
            "exp": _timestamp(token.expires_at),
            "iat": _timestamp(token.issued_at),
            "sub": str(token.user_id),
            "aud": token.resource,
            "iss": self.server.settings.issuer,
        }
        if token.kind == tokens.ACCESS:  # RFC 7662 §2.2: the RFC 6749 §7.1 type
            payload["token_type"] = "Bearer"  # noqa: S105  (a token type, not a secret)
        return payload


def register(server: AuthorizationServer) -> None:
    server.register_endpoint(RevocationEndpoint)
    server.register_endpoint(IntrospectionEndpoint)
    server.register_endpoint(registration.ClientRegistrationEndpoint)
