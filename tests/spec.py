"""The scope model as the design brief and Sentry's tables state it, written out by hand.

Tests compare the code against these literals instead of against the code's own
constants, so a wrong constant in ``scopegate.core`` cannot agree with itself. Every set
here is spelled in full (already closed under the hierarchy) on purpose.
"""

from __future__ import annotations

#: Every scope in the vocabulary.
ALL_SCOPES = frozenset({
    "org:read", "org:write", "org:admin", "org:integrations", "org:ci",
    "member:read", "member:invite", "member:write", "member:admin",
    "team:read", "team:write", "team:admin",
    "project:read", "project:write", "project:admin", "project:releases",
    "project:distribution",
    "event:read", "event:write", "event:admin",
    "alerts:read", "alerts:write",
})

#: Scope -> everything holding it grants (itself included): admin => write => read per
#: resource; org:admin => org:integrations; member:write => member:invite; extras alone.
CLOSURE: dict[str, frozenset[str]] = {
    "org:read": frozenset({"org:read"}),
    "org:write": frozenset({"org:write", "org:read"}),
    "org:admin": frozenset({"org:admin", "org:write", "org:read", "org:integrations"}),
    "org:integrations": frozenset({"org:integrations"}),
    "org:ci": frozenset({"org:ci"}),
    "member:read": frozenset({"member:read"}),
    "member:invite": frozenset({"member:invite"}),
    "member:write": frozenset({"member:write", "member:read", "member:invite"}),
    "member:admin": frozenset({"member:admin", "member:write", "member:read", "member:invite"}),
    "team:read": frozenset({"team:read"}),
    "team:write": frozenset({"team:write", "team:read"}),
    "team:admin": frozenset({"team:admin", "team:write", "team:read"}),
    "project:read": frozenset({"project:read"}),
    "project:write": frozenset({"project:write", "project:read"}),
    "project:admin": frozenset({"project:admin", "project:write", "project:read"}),
    "project:releases": frozenset({"project:releases"}),
    "project:distribution": frozenset({"project:distribution"}),
    "event:read": frozenset({"event:read"}),
    "event:write": frozenset({"event:write", "event:read"}),
    "event:admin": frozenset({"event:admin", "event:write", "event:read"}),
    "alerts:read": frozenset({"alerts:read"}),
    "alerts:write": frozenset({"alerts:write", "alerts:read"}),
}

#: Scopes that imply nothing but themselves.
EXTRAS = frozenset({
    "org:integrations", "org:ci", "project:releases", "project:distribution", "member:invite",
})

READ_SCOPES = frozenset({
    "org:read", "member:read", "team:read", "project:read", "event:read", "alerts:read",
})

#: No role holds these; only org and integration tokens do.
TOKEN_ONLY_SCOPES = frozenset({"org:ci", "project:distribution"})

_MEMBER = frozenset({
    "event:read", "event:write", "event:admin",
    "project:read", "project:releases",
    "org:read",
    "member:read", "member:invite",
    "team:read",
    "alerts:read", "alerts:write",
})
_ADMIN = _MEMBER | {
    "project:write", "project:admin", "team:write", "team:admin", "org:integrations",
}
_MANAGER = _ADMIN | {"org:write", "member:write", "member:admin"}
_OWNER = _MANAGER | {"org:admin"}

#: Organization role -> its scopes (Sentry's role table).
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "member": _MEMBER,
    "admin": _ADMIN,
    "manager": _MANAGER,
    "owner": _OWNER,
}
ROLES = tuple(ROLE_SCOPES)

#: The scopes an org token is minted with.
ORG_TOKEN_SCOPES = frozenset({"org:ci"})
