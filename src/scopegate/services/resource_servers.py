"""Resource servers: services in other processes that trust this scopegate server.

An operator registers one (``scopegate resource-server add AUDIENCE --name NAME``) with
its *audience*: the service's own absolute URL, which is the ``aud`` of the tokens made
for it (RFC 8707 ``resource`` on ``/oauth/authorize``, ``/oauth/token`` and the device
flow; ``audience`` when minting an agent token). Registering creates its credential: a
confidential OAuth client (``registration = "resource_server"``) with no redirect URI and
no grant type, so it runs no grant; it authenticates at ``/oauth/introspect`` and at the
agent deny feed only. The secret is ``secrets.token_urlsafe(32)``, shown once, stored as
SHA-256 and compared in constant time (``services/oauth/clients.py``).

An audience is an absolute ``https`` URL (``http`` only on a loopback host), at most 512
ASCII characters, with no userinfo, query or fragment, and never scopegate's own API or
MCP resource. Every refusal names the rule, never the value.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scopegate.core.redirect_uris import LOOPBACK_HOSTS
from scopegate.services.deny_list import DenyList
from scopegate.services.errors import Conflict, Invalid, NotFound
from scopegate.services.oauth import clients, tokens
from scopegate.settings import Settings
from scopegate.store.models import NAME_MAX
from scopegate.store.oauth_models import URI_MAX, OAuthClient, OAuthGrant, ResourceServer

AUDIENCE_MAX = URI_MAX
AUDIENCE_RULE = (f"audience: an absolute https URL (http only on a loopback host) of at most "
                 f"{AUDIENCE_MAX} ASCII characters, without userinfo, query or fragment")


def check_audience(audience: str, settings: Settings) -> str:
    """``audience`` if a resource server may be registered with it, else ``Invalid``."""
    if (not audience or len(audience) > AUDIENCE_MAX or not audience.isascii()
            or not audience.isprintable() or any(c in audience for c in " \\?#")):
        raise Invalid(AUDIENCE_RULE)
    try:
        parts = urlsplit(audience)
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        raise Invalid(AUDIENCE_RULE) from None
    if not parts.hostname or "@" in parts.netloc or parts.query or parts.fragment:
        raise Invalid(AUDIENCE_RULE)
    if not (parts.scheme == "https"
            or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS)):
        raise Invalid(AUDIENCE_RULE)
    if not audience.startswith(f"{parts.scheme}://{parts.netloc.lower()}"):
        raise Invalid("audience: write the scheme and host in lowercase")
    if is_own_resource(audience, settings):
        raise Invalid("audience: scopegate's own API and MCP resources are not resource "
                      "servers")
    return audience


def is_own_resource(audience: str, settings: Settings) -> bool:
    """Whether ``audience`` is (or lies below) scopegate's own API or MCP resource."""
    api, mcp = settings.api_resource, settings.mcp_resource
    return (audience.rstrip("/") in (api.rstrip("/"), mcp) or audience.startswith(api)
            or audience.startswith(mcp + "/"))


def _check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= NAME_MAX or not name.isprintable():
        raise Invalid(f"name: 1 to {NAME_MAX} printable characters")
    return name


@dataclass(frozen=True)
class NewResourceServer:
    """A registered resource server and its credential; the secret is shown exactly once."""

    audience: str
    name: str
    client_id: str
    client_secret: str


@dataclass(frozen=True)
class ResourceServerInfo:
    audience: str
    name: str
    client_id: str
    created_at: datetime


def register(db: Session, settings: Settings, audience: str, name: str) -> NewResourceServer:
    """Register a resource server for ``audience``; ``Conflict`` if one already has it."""
    audience = check_audience(audience, settings)
    name = _check_name(name)
    taken = "audience: a resource server with this audience is already registered"
    if db.scalar(select(ResourceServer.id).where(ResourceServer.audience == audience)):
        raise Conflict(taken)
    secret = secrets.token_urlsafe(32)
    client = OAuthClient(
        client_id=secrets.token_urlsafe(18), owner_id=None, name=name, homepage="",
        redirect_uris=[], grant_types=[], is_public=False,
        secret_hash=clients.secret_hash(secret), org_bound=False,
        registration=clients.RESOURCE_SERVER, application_type="web",
    )
    db.add(client)
    try:
        db.flush()
        db.add(ResourceServer(audience=audience, name=name, client_pk=client.id))
        db.flush()
    except IntegrityError:  # registered concurrently
        raise Conflict(taken) from None
    return NewResourceServer(audience, name, client.client_id, secret)


def list_servers(db: Session) -> list[ResourceServerInfo]:
    rows = db.execute(
        select(ResourceServer, OAuthClient.client_id)
        .join(OAuthClient, OAuthClient.id == ResourceServer.client_pk)
        .order_by(ResourceServer.id)
    ).all()
    return [ResourceServerInfo(rs.audience, rs.name, client_id, rs.created_at)
            for rs, client_id in rows]


def remove(db: Session, deny_list: DenyList, audience: str) -> None:
    """Remove the resource server of ``audience``: its credential is deleted, and the
    OAuth grants issued for its audience are revoked (their tokens stop at once)."""
    row = db.scalar(select(ResourceServer).where(
        ResourceServer.audience == audience[:AUDIENCE_MAX]))
    if row is None:
        raise NotFound("no resource server has this audience")
    grant_ids = list(db.scalars(select(OAuthGrant.id).where(
        OAuthGrant.resource == row.audience, OAuthGrant.revoked_at.is_(None))))
    for grant_id in grant_ids:
        tokens.revoke_grant(db, deny_list, grant_id)
    client = db.get(OAuthClient, row.client_pk)
    db.delete(row)
    db.flush()
    if client is not None:
        db.delete(client)
        db.flush()


def is_registered(db: Session | Connection, audience: str) -> bool:
    """Whether ``audience`` is a registered resource server's (one indexed query)."""
    if not audience or len(audience) > AUDIENCE_MAX:
        return False
    return db.execute(select(ResourceServer.id).where(
        ResourceServer.audience == audience)).first() is not None


def audience_of_client(db: Session | Connection, client_pk: int) -> str | None:
    """The audience of the resource server whose credential is client ``client_pk``."""
    return db.execute(select(ResourceServer.audience).where(
        ResourceServer.client_pk == client_pk)).scalar()
