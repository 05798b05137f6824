"""The authorization code grant with PKCE (RFC 6749 §4.1, RFC 7636, RFC 9700) and the
refresh token grant with rotation, as Authlib grants on our store.

Choices, each shown by a test in ``tests/test_oauth_*``:

* PKCE ``S256`` for every client, ``plain`` refused; a verifier always required.
* Codes live at most ``SCOPEGATE_OAUTH_CODE_SECONDS`` (≤ 60 s) and are claimed by one
  atomic update, so two exchanges of one code can't both win; a replayed code revokes
  the grant (every token) the first exchange produced.
* Refresh tokens rotate on every use; presenting a rotated one revokes the family.
  Refresh may narrow scopes (Authlib checks the subset), never widen them.
* Every grant type is open to public clients (``none``) and confidential ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749 import InvalidGrantError, InvalidRequestError, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from sqlalchemy import select, update

from scopegate.core import scopes as registry
from scopegate.services.oauth import clients, resources, tokens, upstream_vault
from scopegate.services.oauth.server import Consent, Person
from scopegate.store.models import User
from scopegate.store.oauth_models import OAuthCode, OAuthGrant, OAuthToken
from scopegate.store.types import utcnow

if TYPE_CHECKING:
    from scopegate.services.oauth.server import AuthorizationServer

AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
#: Proxy mode: a front-door access token ends this long before its upstream token.
UPSTREAM_MARGIN_SECONDS = 60
MIN_ACCESS_SECONDS = 30


def _active_person(server: AuthorizationServer, user_id: int | None) -> Person | None:
    if user_id is None:  # proxy mode: the person signed in upstream
        return Person(None)
    active = server.db.scalar(select(User.is_active).where(User.id == user_id))
    return Person(user_id) if active else None


def _grant_key(wrapped: bytes | None, secret: str) -> bytes | None:
    """Proxy mode: the grant's key, unwrapped with the credential being exchanged."""
    if wrapped is None:
        return None
    try:
        return upstream_vault.unwrap(wrapped, secret)
    except upstream_vault.VaultError:
        raise InvalidGrantError("The credential does not open its grant.") from None


def _within_upstream(token: dict[str, Any], key: bytes | None, sealed: bytes | None) -> None:
    """Proxy mode: a front-door access token ends before the upstream one it stands for,
    so a client refreshes (and the upstream token with it) before a tool call fails."""
    if key is None or sealed is None:
        return
    try:
        upstream_expires_at = upstream_vault.open_sealed(key, sealed).expires_at
    except upstream_vault.VaultError:
        raise InvalidGrantError("The credential does not open its grant.") from None
    left = upstream_expires_at - int(time.time()) - UPSTREAM_MARGIN_SECONDS
    token["expires_in"] = max(MIN_ACCESS_SECONDS, min(int(token["expires_in"]), left))


def _token_resource(grant: grants.BaseGrant, issued_for: str) -> None:
    """RFC 8707 §2.2: a token request's ``resource`` must be the one consented to."""
    requested = grant.request.payload.datalist.get("resource", [])
    if resources.resolve(requested, grant.server.settings, issued_for,
                         grant.server.db) != issued_for:
        raise resources.InvalidTargetError()


class S256Challenge(CodeChallenge):
    """PKCE, ``S256`` only, required of every client (OAuth 2.1)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send a code_challenge.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256.")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'.")
        super().validate_code_verifier(grant, result)


@dataclass(frozen=True)
class IssuedCode:
    """An authorization code as the grant checks it (Authlib's AuthorizationCodeMixin)."""

    id: int
    user_id: int | None
    redirect_uri: str
    scopes: frozenset[str]
    org_ids: tuple[int, ...]
    resource: str
    code_challenge: str
    code_challenge_method: str = "S256"
    #: Proxy mode: the sealed upstream tokens and the grant key wrapped by the code.
    upstream: bytes | None = None
    wrapped_key: bytes | None = None

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return registry.format_scopes(self.scopes)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    server: AuthorizationServer

    @staticmethod
    def validate_authorization_redirect_uri(request: Any, client: clients.Client) -> str:
        # Authlib's own message quotes the URI; ours names the rule only.
        uri = request.payload.redirect_uri
        if not uri:
            raise InvalidRequestError("Missing 'redirect_uri'.")
        if not client.check_redirect_uri(uri):
            raise InvalidRequestError("The redirect_uri is not registered for this client.")
        return uri

    def validate_authorization_request(self) -> str:
        redirect_uri = super().validate_authorization_request()
        try:
            self.request.resource = resources.resolve(
                self.request.payload.datalist.get("resource", []), self.server.settings,
                db=self.server.db)
        except resources.InvalidTargetError as error:
            error.redirect_uri = redirect_uri
            raise
        return redirect_uri

    def save_authorization_code(self, code: str, request: Any) -> None:
        consent: Consent = request.consent
        client: clients.Client = request.client  # a document's client has its row by now
        self.server.db.add(OAuthCode(
            code_hash=tokens.token_hash(code), client_pk=client.pk, user_id=consent.user_id,
            redirect_uri=request.payload.redirect_uri, scopes=consent.scopes,
            org_ids=sorted(consent.org_ids), resource=request.resource,
            code_challenge=request.payload.data["code_challenge"],
            expires_at=utcnow() + timedelta(seconds=self.server.settings.oauth_code_seconds),
        ))
        self.server.db.flush()

    def query_authorization_code(self, code: str, client: clients.Client) -> IssuedCode | None:
        db = self.server.db
        row = db.scalar(select(OAuthCode).where(OAuthCode.code_hash == tokens.token_hash(code)))
        if row is None or row.client_pk != client.pk:
            return None
        if row.used_at is not None:
            if row.grant_id is not None:  # RFC 6749 §4.1.2: revoke what it produced
                tokens.revoke_grant(db, self.server.ctx.deny_list, row.grant_id)
            return None
        if row.expires_at <= utcnow():
            return None
        return IssuedCode(row.id, row.user_id, row.redirect_uri, row.scopes,
                          tuple(row.org_ids), row.resource, row.code_challenge,
                          upstream=row.upstream, wrapped_key=row.wrapped_key)

    def validate_token_request(self) -> None:
        super().validate_token_request()
        _token_resource(self, self.request.authorization_code.resource)

    def delete_authorization_code(self, authorization_code: IssuedCode) -> None:
        return None  # claimed at lookup; kept so a replay finds its grant

    def authenticate_user(self, authorization_code: IssuedCode) -> Person | None:
        return _active_person(self.server, authorization_code.user_id)

    def save_token(self, token: dict[str, Any]) -> None:
        code: IssuedCode = self.request.authorization_code
        client: clients.Client = self.request.client
        db = self.server.db
        # Claim the code in one atomic update: of two concurrent exchanges one wins.
        if not db.execute(update(OAuthCode).where(OAuthCode.id == code.id,
                                                  OAuthCode.used_at.is_(None))
                          .values(used_at=utcnow())).rowcount:
            raise InvalidGrantError("The code was already used.")
        key = _grant_key(code.wrapped_key, self.request.form.get("code", ""))
        _within_upstream(token, key, code.upstream)
        grant = tokens.open_grant(db, client=client, user_id=code.user_id, scopes=code.scopes,
                                  org_ids=code.org_ids, resource=code.resource,
                                  upstream=code.upstream)
        db.execute(update(OAuthCode).where(OAuthCode.id == code.id).values(grant_id=grant.id))
        tokens.save(db, grant.id, token, grant_key=key,
                    refresh_seconds=self.server.settings.oauth_refresh_token_seconds)
        clients.mark_used(db, client)


@dataclass(frozen=True)
class PresentedRefreshToken:
    """A refresh token being exchanged (Authlib's TokenMixin, the parts it asks for)."""

    id: int
    grant_id: int
    client_pk: int
    user_id: int | None
    scopes: frozenset[str]
    resource: str
    expires_at: datetime
    #: Proxy mode: the grant's key wrapped by this refresh token.
    wrapped_key: bytes | None = None

    def check_client(self, client: clients.Client) -> bool:
        return client.pk == self.client_pk

    def get_scope(self) -> str:
        return registry.format_scopes(self.scopes)


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True
    server: AuthorizationServer

    def authenticate_refresh_token(self, refresh_token: str) -> PresentedRefreshToken | None:
        db = self.server.db
        found = tokens.find_token(db, refresh_token, tokens.REFRESH)
        if found is None or found.revoked or found.is_expired():
            return None
        if found.used:  # RFC 9700 §4.14.2: a rotated token came back; end the family
            tokens.revoke_grant(db, self.server.ctx.deny_list, found.grant_id)
            return None
        return PresentedRefreshToken(found.id, found.grant_id, found.client_pk, found.user_id,
                                     found.scopes, found.resource, found.expires_at,
                                     found.wrapped_key)

    def validate_token_request(self) -> None:
        super().validate_token_request()
        _token_resource(self, self.request.refresh_token.resource)

    def authenticate_user(self, refresh_token: PresentedRefreshToken) -> Person | None:
        return _active_person(self.server, refresh_token.user_id)

    def revoke_old_credential(self, refresh_token: PresentedRefreshToken) -> None:
        return None  # rotated (``used_at``) in ``save_token``

    def save_token(self, token: dict[str, Any]) -> None:
        old: PresentedRefreshToken = self.request.refresh_token
        db = self.server.db
        # Rotate in one atomic update: of two concurrent uses one wins, the other is reuse.
        if not db.execute(update(OAuthToken).where(OAuthToken.id == old.id,
                                                   OAuthToken.used_at.is_(None))
                          .values(used_at=utcnow())).rowcount:
            tokens.revoke_grant(db, self.server.ctx.deny_list, old.grant_id)
            raise InvalidGrantError("The refresh token was already used.")
        key = _grant_key(old.wrapped_key, self.request.form.get("refresh_token", ""))
        if key is not None:
            grant = db.get(OAuthGrant, old.grant_id)
            _within_upstream(token, key, grant.upstream if grant else None)
        tokens.save(self.server.db, old.grant_id, token, grant_key=key,
                    refresh_seconds=self.server.settings.oauth_refresh_token_seconds)


def register(server: AuthorizationServer) -> None:
    server.register_grant(AuthorizationCodeGrant, [S256Challenge(required=True)])
    server.register_grant(RefreshTokenGrant)
