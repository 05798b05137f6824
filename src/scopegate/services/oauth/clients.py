"""OAuth clients ("apps"): registered by a person, dynamically (RFC 7591), or named by
the URL of a client ID metadata document.

``Client`` is what Authlib's grants ask questions of (its ``ClientMixin``): an immutable
snapshot of the row, so nothing lazy-loads after the unit of work that read it.
Secrets are ``secrets.token_urlsafe(32)``, shown once, stored as SHA-256 and compared in
constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from authlib.oauth2.rfc6749 import ClientMixin
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from scopegate.core import redirect_uris
from scopegate.core import scopes as registry
from scopegate.services.deny_list import DenyList
from scopegate.services.errors import Invalid, NotFound
from scopegate.services.oauth.metadata_documents import (
    ClientMetadataDocument,
    MetadataDocumentError,
    MetadataDocuments,
    is_metadata_url,
)
from scopegate.store.models import NAME_MAX
from scopegate.store.oauth_models import URI_MAX, OAuthClient, OAuthGrant
from scopegate.store.types import utcnow

AUTHORIZATION_CODE = "authorization_code"
REFRESH_TOKEN = "refresh_token"  # noqa: S105  (a grant type, not a secret)
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_TYPES = (AUTHORIZATION_CODE, REFRESH_TOKEN, DEVICE_CODE)
MAX_REDIRECT_URIS = 10
OWNER, DYNAMIC, METADATA = "owner", "dynamic", "metadata"
#: A resource server's credential (``services/resource_servers.py``): confidential, no
#: redirect URI, no grant type; it authenticates at introspection and the deny feed only.
RESOURCE_SERVER = "resource_server"
#: The endpoints (Authlib's endpoint names) a resource server authenticates at.
RESOURCE_SERVER_ENDPOINTS = frozenset({"introspection", "agent_deny_list"})


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Client(ClientMixin):
    """An OAuth client as the grants see it."""

    pk: int
    client_id: str
    name: str
    homepage: str
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    is_public: bool
    secret_hash: str | None
    org_bound: bool
    registration: str
    application_type: str
    owner_id: int | None

    @property
    def verified(self) -> bool:
        """Registered by a person on this server (not dynamically, not by a document)."""
        return self.registration == OWNER

    # -- Authlib's ClientMixin -------------------------------------------------------
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # RFC 9700: the client always names its redirect URI, so no default.
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        """Requested scopes the server knows (registry order); none asked: read scopes.
        Whether the person holds them is decided at consent."""
        if not scope:
            return registry.format_scopes(registry.READ_SCOPES)
        try:
            return registry.format_scopes(registry.validate(scope.split()))
        except registry.UnknownScopeError:
            return ""

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return any(redirect_uris.matches(r, redirect_uri) for r in self.redirect_uris)

    def check_client_secret(self, client_secret: str) -> bool:
        if self.secret_hash is None:
            return False
        return hmac.compare_digest(self.secret_hash, secret_hash(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.registration == RESOURCE_SERVER and endpoint not in RESOURCE_SERVER_ENDPOINTS:
            return False  # a resource server's credential opens nothing else
        if self.is_public:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and AUTHORIZATION_CODE in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


def _client(row: OAuthClient) -> Client:
    return Client(
        pk=row.id, client_id=row.client_id, name=row.name, homepage=row.homepage,
        redirect_uris=tuple(row.redirect_uris), grant_types=tuple(row.grant_types),
        is_public=row.is_public, secret_hash=row.secret_hash, org_bound=row.org_bound,
        registration=row.registration, application_type=row.application_type,
        owner_id=row.owner_id,
    )


def check_redirect_uris(uris: list[str] | tuple[str, ...]) -> list[str]:
    """Validated redirect URIs (1 to 10, each https or loopback), or ``Invalid``."""
    if not 1 <= len(uris) <= MAX_REDIRECT_URIS:
        raise Invalid(f"redirectUris: give 1 to {MAX_REDIRECT_URIS} redirect URIs")
    try:
        return [redirect_uris.validate(uri) for uri in uris]
    except redirect_uris.InvalidRedirectURI as error:
        raise Invalid(f"redirectUris: {error}") from None


def _check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= NAME_MAX:
        raise Invalid(f"name: 1 to {NAME_MAX} characters")
    return name


def _check_homepage(homepage: str) -> str:
    if homepage and (len(homepage) > URI_MAX or not homepage.startswith(("https://",
                                                                           "http://"))):
        raise Invalid(f"homepage: an http(s) URL of at most {URI_MAX} characters")
    return homepage


@dataclass(frozen=True)
class NewClient:
    """A new client and its secret (``None`` for a public client), shown exactly once."""

    client: Client
    client_secret: str | None


def create_app(db: Session, *, owner_id: int | None, name: str, redirect_uris: list[str],
               homepage: str = "", public: bool = False, org_bound: bool = False,
               registration: str = OWNER, application_type: str = "web",
               grant_types: tuple[str, ...] = GRANT_TYPES,
               expires_at: datetime | None = None) -> NewClient:
    """Register a client; a confidential one gets a secret."""
    secret = None if public else secrets.token_urlsafe(32)
    row = OAuthClient(
        client_id=secrets.token_urlsafe(18), owner_id=owner_id, name=_check_name(name),
        homepage=_check_homepage(homepage), redirect_uris=check_redirect_uris(redirect_uris),
        grant_types=list(grant_types), is_public=public,
        secret_hash=secret_hash(secret) if secret else None, org_bound=org_bound,
        registration=registration, application_type=application_type, expires_at=expires_at,
    )
    db.add(row)
    db.flush()
    return NewClient(_client(row), secret)


def _owned(db: Session, owner_id: int, client_id: str) -> OAuthClient:
    row = db.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id[:URI_MAX],
                                              OAuthClient.owner_id == owner_id))
    if row is None:
        raise NotFound("app not found")
    return row


def list_apps(db: Session, owner_id: int) -> list[Client]:
    rows = db.scalars(select(OAuthClient).where(OAuthClient.owner_id == owner_id)
                      .order_by(OAuthClient.id))
    return [_client(row) for row in rows]


def get_app(db: Session, owner_id: int, client_id: str) -> Client:
    return _client(_owned(db, owner_id, client_id))


def update_app(db: Session, owner_id: int, client_id: str, *, name: str | None = None,
               homepage: str | None = None, redirect_uris: list[str] | None = None) -> Client:
    row = _owned(db, owner_id, client_id)
    if name is not None:
        row.name = _check_name(name)
    if homepage is not None:
        row.homepage = _check_homepage(homepage)
    if redirect_uris is not None:
        row.redirect_uris = check_redirect_uris(redirect_uris)
    db.flush()
    return _client(row)


def rotate_secret(db: Session, owner_id: int, client_id: str) -> NewClient:
    row = _owned(db, owner_id, client_id)
    if row.is_public:
        raise Invalid("a public client has no secret")
    secret = secrets.token_urlsafe(32)
    row.secret_hash = secret_hash(secret)
    db.flush()
    return NewClient(_client(row), secret)


def delete_app(db: Session, deny_list: DenyList, owner_id: int | None, client_id: str) -> None:
    """Delete a client and everything it holds: its access tokens stop at once, and so
    do the agent tokens they minted. ``owner_id`` ``None``: whoever owns it (operators)."""
    if owner_id is None:
        row = db.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id[:URI_MAX]))
        if row is None:
            raise NotFound("app not found")
    else:
        row = _owned(db, owner_id, client_id)
    from scopegate.services.oauth import tokens  # tokens imports this module

    grant_ids = list(db.scalars(select(OAuthGrant.id).where(OAuthGrant.client_pk == row.id)))
    for grant_id in grant_ids:
        tokens.revoke_grant(db, deny_list, grant_id)
    db.delete(row)
    db.flush()


def find_client(db: Session, client_id: str | None,
                documents: MetadataDocuments) -> Client | None:
    """The client ``client_id`` names: a row, or a metadata document fetched (and its row
    written in step with it, so codes and grants can refer to it). ``None`` when there is
    no such client, or a dynamic registration expired unused."""
    if not client_id or len(client_id) > URI_MAX:
        return None
    row = db.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))
    if row is not None and row.expires_at is not None and row.expires_at <= utcnow():
        return None
    if not is_metadata_url(client_id):
        return _client(row) if row is not None else None
    try:
        document = documents.get(client_id)
    except MetadataDocumentError:
        return None
    return _client(_keep_document(db, row, document))


def _keep_document(db: Session, row: OAuthClient | None,
                   document: ClientMetadataDocument) -> OAuthClient:
    # A document's client is public; it gets rotating refresh tokens like every public one.
    grant_types = [AUTHORIZATION_CODE, REFRESH_TOKEN]
    if row is None:
        row = OAuthClient(client_id=document.client_id, owner_id=None, is_public=True,
                          secret_hash=None, org_bound=False, registration=METADATA,
                          application_type="web")
        db.add(row)
    row.name = document.client_name[:NAME_MAX]
    row.homepage = (document.client_uri or "")[:URI_MAX]
    row.redirect_uris = list(document.redirect_uris)
    row.grant_types = grant_types
    db.flush()
    return row


def mark_used(db: Session, client: Client) -> None:
    """A client completed an authorization: a dynamic registration no longer expires."""
    db.execute(OAuthClient.__table__.update().where(OAuthClient.id == client.pk,
                                                    OAuthClient.expires_at.is_not(None))
               .values(expires_at=None))


def purge_unused_registrations(db: Session) -> int:
    """Delete dynamic registrations past their expiry (never completed an authorization)."""
    expired = (OAuthClient.registration == DYNAMIC, OAuthClient.expires_at <= utcnow())
    if db.scalar(select(OAuthClient.id).where(*expired).limit(1)) is None:
        return 0  # the usual case: no write, so no write lock taken
    return int(db.execute(delete(OAuthClient).where(*expired)).rowcount or 0)


def unused_registration_expiry(seconds: int) -> datetime:
    return utcnow() + timedelta(seconds=seconds)
