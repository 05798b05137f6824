"""Introspection (RFC 7662) as a resource server asks it: what an opaque credential may do,
organization by organization.

A resource server in another process (``services/resource_servers.py``) cannot read
scopegate's database; it asks ``/oauth/introspect`` about each opaque bearer credential
it is shown (and caches the answer briefly). The credential is authenticated by the
runtime's authenticator chain, exactly as the gate authenticates it for scopegate's own
API (revoked, expired, unknown, or a person deactivated: inactive), and the answer lists
every organization the credential may act in with its *effective* scopes there:
``core.access.assemble_access`` (credential scopes ∩ the person's role, hierarchy
expanded), the one access rule. A user token's organizations are the person's
memberships; an OAuth token's, the consented ones among them; an org or integration
token's, its own. The roles come in one query; at most ``MAX_ORGS`` organizations.

Only ``sgu_``, ``sgo_``, ``sgi_`` and ``sgp_`` are answered; an ``sgp_`` only when it was
issued for the asking resource server's audience. Refresh tokens (``sgr_``) are never
presented to a resource server, and agent tokens (``sga_``) are verified offline against
the JWKS: both, and anything else, are inactive (``None``).
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import Connection, null, select

from scopegate.core import scopes as registry
from scopegate.core.access import Access, Principal, assemble_access
from scopegate.core.roles import Role
from scopegate.core.token_kinds import TokenKind
from scopegate.services.authentication import AuthenticationFailed, AuthenticatorChain
from scopegate.services.oauth.tokens import token_hash
from scopegate.store.models import Member, Organization, User
from scopegate.store.oauth_models import OAuthToken

#: Most organizations one answer lists.
MAX_ORGS: Final = 200
#: The kinds a resource server may ask about, and how the answer names each.
CREDENTIAL_KINDS: Final = {
    TokenKind.USER: "user",
    TokenKind.ORG: "org",
    TokenKind.INTEGRATION: "integration",
    TokenKind.OAUTH_ACCESS: "oauth_access",
}


def _kind(token: str) -> TokenKind | None:
    return next((kind for kind in CREDENTIAL_KINDS if token.startswith(kind.prefix)), None)


def effective_orgs(conn: Connection, principal: Principal) -> list[dict[str, Any]]:
    """Every organization ``principal`` may act in (at most ``MAX_ORGS``, by id), each
    with its effective scopes there; an organization where access is refused is left
    out. One query."""
    if principal.org_id is not None:  # org and integration tokens: their own only
        rows = conn.execute(select(Organization.id, Organization.slug, null())
                            .where(Organization.id == principal.org_id)).all()
    elif principal.user_id is not None:
        query = (select(Organization.id, Organization.slug, Member.role)
                 .join(Member, Member.org_id == Organization.id)
                 .join(User, User.id == Member.user_id)
                 .where(Member.user_id == principal.user_id, User.is_active))
        if principal.orgs is not None:  # an OAuth token: the organizations consented to
            query = query.where(Organization.id.in_(sorted(principal.orgs)))
        rows = conn.execute(query.order_by(Organization.id).limit(MAX_ORGS)).all()
    else:  # proxy mode: no local person, no local organization
        return []
    orgs = []
    for org_id, slug, role in rows:
        access = assemble_access(principal, org_id, Role(role) if role else None)
        if isinstance(access, Access):
            orgs.append({"id": org_id, "slug": slug, "scopes": registry.ordered(access.scopes)})
    return orgs


def introspect(conn: Connection, chain: AuthenticatorChain, token: str, *, audience: str,
               issuer: str) -> dict[str, Any] | None:
    """The active introspection answer for ``token`` as the resource server of
    ``audience`` may see it, or ``None`` (inactive)."""
    kind = _kind(token)
    if kind is None:
        return None
    try:
        principal = chain.authenticate(token, conn)
    except AuthenticationFailed:
        return None
    if principal.kind is not kind:
        return None
    if kind is TokenKind.OAUTH_ACCESS and principal.audience != audience:
        return None  # issued for another resource: not this server's to honour
    answer: dict[str, Any] = {
        "active": True,
        "token_type": "Bearer",
        "scope": registry.format_scopes(principal.scopes or frozenset()),
        "iss": issuer,
        "credential_kind": CREDENTIAL_KINDS[kind],
        "credential_ref": principal.credential_ref,
        "orgs": effective_orgs(conn, principal),
    }
    if principal.user_id is not None:
        answer["sub"] = str(principal.user_id)
    if principal.expires_at is not None:
        answer["exp"] = principal.expires_at
    if kind is TokenKind.OAUTH_ACCESS:
        answer["aud"] = principal.audience
        answer["client_id"] = principal.agent
        issued = conn.execute(select(OAuthToken.created_at).where(
            OAuthToken.token_hash == token_hash(token))).scalar()
        if issued is not None:
            answer["iat"] = int(issued.timestamp())
    return answer
