"""Internal integrations: an organization's own apps, each a named set of scopes with
tokens (``sgi_``) that act as the integration, with no person behind them.

A token holds no scopes of its own: it carries its integration's current scopes, so
changing the integration changes every live token at once (each token's cached entry is
forgotten in every process, ``Topic.CREDENTIAL``). Secrets come from ``secrets`` and are
shown once; the database keeps their SHA-256. Raising an integration's scopes is bounded
by the editor's own access (``check_raise``).
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from scopegate.core import scopes as registry
from scopegate.core.access import Access, Principal
from scopegate.core.changes import Change, Topic
from scopegate.core.roles import Role
from scopegate.core.token_kinds import TokenKind
from scopegate.services import audit
from scopegate.services.authentication import UNKNOWN, StoredCredential
from scopegate.services.credentials import token_hash
from scopegate.services.directory import check_slug, insert
from scopegate.services.errors import Forbidden, Invalid, NotFound
from scopegate.store.integration_models import INTERNAL, Integration, IntegrationToken
from scopegate.store.models import NAME_MAX, SLUG_MAX
from scopegate.store.outbox import record_change
from scopegate.store.types import utcnow

#: Roles that may grant token-only scopes (``org:ci``, ...) to an integration.
TOKEN_ONLY_GRANTORS = frozenset({Role.MANAGER, Role.OWNER})
MAX_TOKENS = 100


@dataclass(frozen=True)
class MintedIntegrationToken:
    """A new token: its row and the secret, shown exactly once."""

    token: str
    row: IntegrationToken


def slug_for(name: str) -> str:
    """A slug from a display name: lowercase letters, digits and dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:SLUG_MAX].strip("-")
    return slug or "integration"


def validate_scopes(names: Iterable[str]) -> frozenset[str]:
    try:
        return registry.validate(names)
    except registry.UnknownScopeError as error:
        raise Invalid(f"scopes: {error}") from None


def check_raise(editor: Access, before: frozenset[str], after: frozenset[str]) -> None:
    """An editor may give an integration only what the editor holds, except the
    token-only scopes (no role holds them), which managers and owners may grant."""
    added = registry.expand(after) - registry.expand(before)
    token_only = added & registry.TOKEN_ONLY_SCOPES
    if token_only and editor.role not in TOKEN_ONLY_GRANTORS:
        raise Forbidden("Only managers and owners may grant token-only scopes.")
    beyond = added - registry.TOKEN_ONLY_SCOPES - editor.scopes
    if beyond:
        raise Forbidden("You cannot give an integration scopes you do not hold.")


def create_integration(db: Session, org_id: int, name: str, scopes: Iterable[str], *,
                       slug: str | None = None, kind: str = INTERNAL,
                       user_id: int | None = None) -> Integration:
    name = name.strip()
    if not name or len(name) > NAME_MAX:
        raise Invalid("name must be 1-128 characters")
    row = Integration(org_id=org_id, slug=check_slug(slug or slug_for(name)), name=name,
                      kind=kind, scopes=validate_scopes(scopes))
    insert(db, row, "an integration with this slug exists")
    audit.record(db, audit.Event.INTEGRATION_CREATE, org_id=org_id, user_id=user_id,
                 scopes=row.scopes, detail=f"integration={row.slug}")
    return row


def list_integrations(db: Session, org_id: int) -> list[Integration]:
    return list(db.scalars(select(Integration).where(Integration.org_id == org_id)
                           .order_by(Integration.name, Integration.id)))


def get_integration(db: Session, org_id: int, slug: str) -> Integration:
    row = db.scalar(select(Integration).where(Integration.org_id == org_id,
                                              Integration.slug == slug))
    if row is None:
        raise NotFound("integration not found")
    return row


def live_tokens(db: Session, integration_id: int) -> list[IntegrationToken]:
    return list(db.scalars(
        select(IntegrationToken)
        .where(IntegrationToken.integration_id == integration_id,
               IntegrationToken.revoked_at.is_(None))
        .order_by(IntegrationToken.id)))


def _forget_tokens(db: Session, integration_id: int) -> None:
    """Every process forgets the cached tokens of the integration."""
    for token in db.scalars(select(IntegrationToken)
                            .where(IntegrationToken.integration_id == integration_id)):
        record_change(db, Change(Topic.CREDENTIAL, token.token_hash))


def set_scopes(db: Session, integration: Integration, scopes: frozenset[str], *,
               user_id: int | None = None, event: str = audit.Event.INTEGRATION_UPDATE) -> None:
    """Give the integration ``scopes``; its live tokens carry them at once."""
    scopes = validate_scopes(scopes)
    before = integration.scopes
    integration.scopes = scopes
    integration.updated_at = utcnow()
    db.flush()
    _forget_tokens(db, integration.id)
    audit.record(db, event, org_id=integration.org_id, user_id=user_id, scopes=scopes,
                 detail=(f"integration={integration.slug} "
                         f"before={registry.format_scopes(before)}")[:512])


def rename(db: Session, integration: Integration, name: str) -> None:
    name = name.strip()
    if not name or len(name) > NAME_MAX:
        raise Invalid("name must be 1-128 characters")
    integration.name = name
    integration.updated_at = utcnow()
    db.flush()


def delete_integration(db: Session, integration: Integration, *,
                       user_id: int | None = None) -> None:
    """Delete the integration; its tokens stop at once."""
    _forget_tokens(db, integration.id)
    audit.record(db, audit.Event.INTEGRATION_DELETE, org_id=integration.org_id, user_id=user_id,
                 detail=f"integration={integration.slug}")
    db.delete(integration)
    db.flush()


def create_token(db: Session, integration: Integration, *, name: str = "",
                 user_id: int | None = None,
                 sealed_secret: bytes | None = None) -> MintedIntegrationToken:
    """A new token for ``integration``; the secret is returned once."""
    if len(name) > NAME_MAX:
        raise Invalid("name is too long")
    if len(live_tokens(db, integration.id)) >= MAX_TOKENS:
        raise Invalid(f"an integration holds at most {MAX_TOKENS} live tokens")
    token = TokenKind.INTEGRATION.prefix + secrets.token_urlsafe(32)
    row = IntegrationToken(integration_id=integration.id, name=name,
                           token_hash=token_hash(token), last_chars=token[-4:],
                           sealed_secret=sealed_secret)
    db.add(row)
    db.flush()
    audit.record(db, audit.Event.INTEGRATION_TOKEN_CREATE, org_id=integration.org_id,
                 user_id=user_id, detail=f"integration={integration.slug} token={row.id}")
    return MintedIntegrationToken(token, row)


def revoke_token(db: Session, integration: Integration, token_id: int, *,
                 user_id: int | None = None) -> None:
    row = db.scalar(select(IntegrationToken).where(
        IntegrationToken.id == token_id, IntegrationToken.integration_id == integration.id,
        IntegrationToken.revoked_at.is_(None)))
    if row is None:
        raise NotFound("token not found")
    row.revoked_at = utcnow()
    db.flush()
    record_change(db, Change(Topic.CREDENTIAL, row.token_hash))
    audit.record(db, audit.Event.INTEGRATION_TOKEN_REVOKE, org_id=integration.org_id,
                 user_id=user_id, detail=f"integration={integration.slug} token={row.id}")


def load_integration_token(conn: Connection, digest: str) -> StoredCredential:
    """The integration token stored under ``digest`` as the request path caches it: the
    integration's scopes, in its organization only (one query)."""
    tokens, integrations = IntegrationToken.__table__, Integration.__table__
    row = conn.execute(
        select(tokens.c.id, tokens.c.token_hash, tokens.c.revoked_at,
               integrations.c.id.label("integration_id"), integrations.c.org_id,
               integrations.c.scopes, integrations.c.slug)
        .join(integrations, integrations.c.id == tokens.c.integration_id)
        .where(tokens.c.token_hash == digest)
    ).first()
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return UNKNOWN
    if row.revoked_at is not None:
        return StoredCredential(None, "The access token was revoked.")
    principal = Principal(kind=TokenKind.INTEGRATION,
                          credential_ref=f"integration_token:{row.id}",
                          org_id=row.org_id, scopes=row.scopes, agent=row.slug,
                          integration_id=row.integration_id)
    return StoredCredential(principal, table=tokens, row_id=row.id)
