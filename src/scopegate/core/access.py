"""Access: what one credential may do in one organization. Decided here and only here.

* A credential acting for a person (browser session, user token, OAuth token, agent
  token) gets ``credential scopes ∩ the member's role scopes``, hierarchy applied.
* A credential with no person behind it (org token, integration token) gets its own
  scopes, in its own organization only.
* A credential bound to one organization is never honored against another.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from scopegate.core import scopes as registry
from scopegate.core.roles import Role, role_scopes
from scopegate.core.token_kinds import TokenKind


@dataclass(frozen=True)
class Principal:
    """An authenticated caller, as the authenticator chain established it.

    ``kind`` is ``None`` for a first-party browser session. ``scopes`` is ``None`` when
    the credential is not scope-limited (a browser session: the role decides alone).
    ``credential_ref`` names the credential for logs ("user_token:12"); never a secret.
    """

    kind: TokenKind | None
    credential_ref: str
    user_id: int | None = None
    org_id: int | None = None
    scopes: frozenset[str] | None = None
    #: Agent tokens: the agent session and the acting agent's name. OAuth access tokens:
    #: the session their grant's agent tokens join, and the client.
    session_id: str | None = None
    agent: str | None = None
    #: When the credential itself stops working (Unix seconds), if it does: what it mints
    #: (agent tokens) must not outlive it.
    expires_at: int | None = None
    #: OAuth access tokens: the organizations the person chose at consent (``None``: not
    #: limited this way) and the resource (RFC 8707) the token was issued for.
    orgs: frozenset[int] | None = None
    audience: str | None = None
    #: Integration tokens: the integration whose scopes the token carries.
    integration_id: int | None = None

    @property
    def acts_for_person(self) -> bool:
        return self.kind is None or self.kind.acts_for_person


class Refusal(Enum):
    NOT_MEMBER = "not_member"
    OTHER_ORG = "other_org"


@dataclass(frozen=True)
class Access:
    """The scopes ``principal`` holds in organization ``org_id``."""

    principal: Principal
    org_id: int
    scopes: frozenset[str]
    role: Role | None = None


@dataclass(frozen=True)
class OrgRef:
    """An organization as a decision names it: its id and its slug (the one in URLs)."""

    id: int
    slug: str


@dataclass(frozen=True)
class OrgAccess:
    """What a request may do in the organization it names: the answer of the gate and
    of every guard (``scopegate.guard``), in-process or remote. ``org`` is an ``OrgRef``;
    in-process it is the fuller ``services.access.OrgRecord``."""

    org: OrgRef
    access: Access

    @property
    def scopes(self) -> frozenset[str]:
        return self.access.scopes

    @property
    def principal(self) -> Principal:
        return self.access.principal


def assemble_access(principal: Principal, org_id: int, role: Role | None) -> Access | Refusal:
    """Build the access for ``principal`` in ``org_id``; ``role`` is the person's role there.

    Returns a ``Refusal`` (the caller answers 404 and logs) rather than raising, so the
    one place that calls this also owns the logging of cross-organization attempts.
    """
    if principal.org_id is not None and principal.org_id != org_id:
        return Refusal.OTHER_ORG
    if principal.orgs is not None and org_id not in principal.orgs:
        return Refusal.OTHER_ORG
    if principal.acts_for_person:
        if role is None:
            return Refusal.NOT_MEMBER
        held = role_scopes(role)
        if principal.scopes is not None:
            held = held & registry.expand(principal.scopes)
        return Access(principal=principal, org_id=org_id, scopes=held, role=role)
    if principal.org_id is None:
        return Refusal.OTHER_ORG
    return Access(
        principal=principal,
        org_id=org_id,
        scopes=registry.expand(principal.scopes or frozenset()),
    )
