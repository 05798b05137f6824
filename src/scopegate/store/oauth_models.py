"""Tables of the OAuth 2.1 authorization server (``services/oauth/``).

Every secret (client secret, code, device code, access and refresh token) is kept as its
SHA-256 only. A *grant* is one consent (or one device approval): the family its access
and refresh tokens belong to, revoked as a whole on refresh-token reuse, code replay or
when the person revokes the app.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from scopegate.store.models import NAME_MAX, Base
from scopegate.store.types import ScopeSet, UTCDateTime, utcnow

URI_MAX = 512
#: Long enough for a client ID metadata document's URL.
CLIENT_ID_MAX = 512


class OAuthClient(Base):
    """A client: registered by a person, dynamically (RFC 7591), or known by the URL of
    its metadata document (``registration`` says which)."""

    __tablename__ = "oauth_clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(CLIENT_ID_MAX), unique=True)
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True
    )
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    homepage: Mapped[str] = mapped_column(String(URI_MAX), default="")
    redirect_uris: Mapped[list[str]] = mapped_column(JSON)
    grant_types: Mapped[list[str]] = mapped_column(JSON)
    is_public: Mapped[bool] = mapped_column(Boolean)
    secret_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    org_bound: Mapped[bool] = mapped_column(Boolean, default=False)
    #: "owner" (a person registered it), "dynamic" (RFC 7591), "metadata" (a document).
    registration: Mapped[str] = mapped_column(String(16))
    #: "web" or "native" (RFC 7591 ``application_type``).
    application_type: Mapped[str] = mapped_column(String(8), default="web")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: A dynamic registration that never completes an authorization is deleted then.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class OAuthGrant(Base):
    """One consent: person, client, scopes, organizations and resource; a token family."""

    __tablename__ = "oauth_grants"
    __table_args__ = (Index("ix_oauth_grants_user_client", "user_id", "client_pk"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    client_pk: Mapped[int] = mapped_column(ForeignKey("oauth_clients.id", ondelete="CASCADE"))
    #: ``None`` in proxy mode: the person signed in upstream.
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                                nullable=True)
    scopes: Mapped[frozenset[str]] = mapped_column(ScopeSet)
    org_ids: Mapped[list[int]] = mapped_column(JSON)
    resource: Mapped[str] = mapped_column(String(URI_MAX))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: Proxy mode: the upstream tokens, sealed under the grant's key, which is stored only
    #: wrapped by each of the grant's tokens (``services/oauth/upstream_vault.py``).
    upstream: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    #: Proxy mode: one upstream refresh at a time per grant, claimed until this time.
    upstream_refreshing_until: Mapped[datetime | None] = mapped_column(UTCDateTime,
                                                                       nullable=True)


class OAuthCode(Base):
    """An authorization code: single use, short-lived, bound to client, redirect URI and
    PKCE challenge. Kept after use (``used_at``, ``grant_id``) so a replay can revoke the
    tokens the first exchange produced."""

    __tablename__ = "oauth_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_pk: Mapped[int] = mapped_column(ForeignKey("oauth_clients.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                                nullable=True)
    redirect_uri: Mapped[str] = mapped_column(String(URI_MAX))
    scopes: Mapped[frozenset[str]] = mapped_column(ScopeSet)
    org_ids: Mapped[list[int]] = mapped_column(JSON)
    resource: Mapped[str] = mapped_column(String(URI_MAX))
    code_challenge: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: Proxy mode: the upstream tokens (sealed) and the grant key wrapped by the code.
    upstream: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    grant_id: Mapped[int | None] = mapped_column(
        ForeignKey("oauth_grants.id", ondelete="CASCADE"), nullable=True
    )


class OAuthToken(Base):
    """An access (``sgp_``) or refresh (``sgr_``) token of a grant."""

    __tablename__ = "oauth_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    grant_id: Mapped[int] = mapped_column(
        ForeignKey("oauth_grants.id", ondelete="CASCADE"), index=True
    )
    #: "access" or "refresh".
    kind: Mapped[str] = mapped_column(String(8))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    last_chars: Mapped[str] = mapped_column(String(4))
    scopes: Mapped[frozenset[str]] = mapped_column(ScopeSet)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: A refresh token's rotation: set when it was exchanged; a second use is reuse.
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: Proxy mode: the grant's key, wrapped by this token (never by anything stored).
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class OAuthDeviceCode(Base):
    """A device authorization (RFC 8628): the device polls with the device code, the
    person approves the user code in a browser."""

    __tablename__ = "oauth_device_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_code: Mapped[str] = mapped_column(String(16), unique=True)
    client_pk: Mapped[int] = mapped_column(ForeignKey("oauth_clients.id", ondelete="CASCADE"))
    scopes: Mapped[frozenset[str]] = mapped_column(ScopeSet)
    resource: Mapped[str] = mapped_column(String(URI_MAX))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    interval: Mapped[int] = mapped_column(Integer)
    last_polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: "pending", "approved", "denied" or "used".
    status: Mapped[str] = mapped_column(String(12), default="pending")
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True
    )
    org_ids: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)


class OAuthProxyState(Base):
    """Proxy mode: one trip to the upstream authorization server, usable once.

    The ``state`` sent upstream is signed and names this row (``jti``); the row keeps what
    must not travel through the browser: the upstream PKCE verifier and the MCP client's
    own request."""

    __tablename__ = "oauth_proxy_states"

    jti: Mapped[str] = mapped_column(String(43), primary_key=True)
    client_pk: Mapped[int] = mapped_column(ForeignKey("oauth_clients.id", ondelete="CASCADE"))
    redirect_uri: Mapped[str] = mapped_column(String(URI_MAX))
    client_state: Mapped[str | None] = mapped_column(String(URI_MAX), nullable=True)
    code_challenge: Mapped[str] = mapped_column(String(128))
    capabilities: Mapped[list[str]] = mapped_column(JSON)
    upstream_verifier: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ResourceServer(Base):
    """A service in another process that trusts this server (``services/resource_servers.py``):
    the audience (RFC 8707 resource) its tokens carry, and the confidential client it
    authenticates as at ``/oauth/introspect`` and the deny feed (a client that runs no
    grant; deleting it deletes this row)."""

    __tablename__ = "resource_servers"

    id: Mapped[int] = mapped_column(primary_key=True)
    audience: Mapped[str] = mapped_column(String(URI_MAX), unique=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    client_pk: Mapped[int] = mapped_column(
        ForeignKey("oauth_clients.id", ondelete="CASCADE"), unique=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
