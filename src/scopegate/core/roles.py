"""Organization roles and their scope sets (Sentry's table).

A member's access in an organization is exactly its role's scopes. No role holds a
token-only scope (``org:ci``, ``project:distribution``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from scopegate.core import scopes as s


class Role(StrEnum):
    MEMBER = "member"
    ADMIN = "admin"
    MANAGER = "manager"
    OWNER = "owner"


_MEMBER: Final = frozenset({
    s.EVENT_READ, s.EVENT_WRITE, s.EVENT_ADMIN,
    s.PROJECT_READ, s.PROJECT_RELEASES,
    s.ORG_READ,
    s.MEMBER_READ, s.MEMBER_INVITE,
    s.TEAM_READ,
    s.ALERTS_READ, s.ALERTS_WRITE,
})
_ADMIN: Final = _MEMBER | {
    s.PROJECT_WRITE, s.PROJECT_ADMIN, s.TEAM_WRITE, s.TEAM_ADMIN, s.ORG_INTEGRATIONS,
}
_MANAGER: Final = _ADMIN | {s.ORG_WRITE, s.MEMBER_WRITE, s.MEMBER_ADMIN}
_OWNER: Final = _MANAGER | {s.ORG_ADMIN}

ROLE_SCOPES: Final[dict[Role, frozenset[str]]] = {
    Role.MEMBER: _MEMBER,
    Role.ADMIN: _ADMIN,
    Role.MANAGER: _MANAGER,
    Role.OWNER: _OWNER,
}


def role_scopes(role: Role | str) -> frozenset[str]:
    """The scopes a role holds. The table is written closed under the hierarchy (a role
    holding ``event:write`` lists ``event:read`` too); ``tests/test_roles.py`` holds it
    to that against the spec's own statement of the hierarchy."""
    return ROLE_SCOPES[role if type(role) is Role else Role(role)]
