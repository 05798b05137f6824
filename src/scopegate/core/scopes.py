"""The scope registry: the one place that spells a scope string.

Scopes are ``resource:level`` strings (Sentry's vocabulary). Per resource the levels
form a ladder (``admin`` implies ``write`` implies ``read``); a few extra scopes imply
nothing, and two are *token-only*: no role holds them, only org and integration tokens.
Every other module imports the constants below instead of writing scope strings.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Final

ORG_READ: Final = "org:read"
ORG_WRITE: Final = "org:write"
ORG_ADMIN: Final = "org:admin"
ORG_INTEGRATIONS: Final = "org:integrations"
ORG_CI: Final = "org:ci"

MEMBER_READ: Final = "member:read"
MEMBER_INVITE: Final = "member:invite"
MEMBER_WRITE: Final = "member:write"
MEMBER_ADMIN: Final = "member:admin"

TEAM_READ: Final = "team:read"
TEAM_WRITE: Final = "team:write"
TEAM_ADMIN: Final = "team:admin"

PROJECT_READ: Final = "project:read"
PROJECT_WRITE: Final = "project:write"
PROJECT_ADMIN: Final = "project:admin"
PROJECT_RELEASES: Final = "project:releases"
PROJECT_DISTRIBUTION: Final = "project:distribution"

EVENT_READ: Final = "event:read"
EVENT_WRITE: Final = "event:write"
EVENT_ADMIN: Final = "event:admin"

ALERTS_READ: Final = "alerts:read"
ALERTS_WRITE: Final = "alerts:write"

#: Every scope with a one-line description of what it lets a holder do.
DESCRIPTIONS: Final[dict[str, str]] = {
    ORG_READ: "See the organization's settings, projects and members list.",
    ORG_WRITE: "Change the organization's settings and create org tokens.",
    ORG_ADMIN: "Administer the organization, including deleting it.",
    ORG_INTEGRATIONS: "Install, configure and remove integrations.",
    ORG_CI: "Act as CI: create and update releases and upload build artifacts.",
    MEMBER_READ: "See who belongs to the organization and their roles.",
    MEMBER_INVITE: "Invite new members to the organization.",
    MEMBER_WRITE: "Invite, update and remove members.",
    MEMBER_ADMIN: "Manage members, including changing their roles.",
    TEAM_READ: "See teams and their membership.",
    TEAM_WRITE: "Create and update teams.",
    TEAM_ADMIN: "Create, update and delete teams.",
    PROJECT_READ: "See projects and their settings.",
    PROJECT_WRITE: "Create and change projects and releases.",
    PROJECT_ADMIN: "Create, change and delete projects and releases.",
    PROJECT_RELEASES: "Create, update and delete releases.",
    PROJECT_DISTRIBUTION: "Upload build distributions (token-only).",
    EVENT_READ: "See issues and events.",
    EVENT_WRITE: "Resolve, ignore and reassign issues.",
    EVENT_ADMIN: "Resolve, reassign and delete issues.",
    ALERTS_READ: "See alert rules.",
    ALERTS_WRITE: "Create and change alert rules.",
}

ALL_SCOPES: Final[frozenset[str]] = frozenset(DESCRIPTIONS)

#: Scope -> the scopes it directly implies (the closure is taken by ``expand``).
IMPLIES: Final[dict[str, frozenset[str]]] = {
    ORG_ADMIN: frozenset({ORG_WRITE, ORG_INTEGRATIONS}),
    ORG_WRITE: frozenset({ORG_READ}),
    MEMBER_ADMIN: frozenset({MEMBER_WRITE}),
    MEMBER_WRITE: frozenset({MEMBER_READ, MEMBER_INVITE}),
    TEAM_ADMIN: frozenset({TEAM_WRITE}),
    TEAM_WRITE: frozenset({TEAM_READ}),
    PROJECT_ADMIN: frozenset({PROJECT_WRITE}),
    PROJECT_WRITE: frozenset({PROJECT_READ}),
    EVENT_ADMIN: frozenset({EVENT_WRITE}),
    EVENT_WRITE: frozenset({EVENT_READ}),
    ALERTS_WRITE: frozenset({ALERTS_READ}),
}

#: Scopes that only read: what an agent gets without any approval.
READ_SCOPES: Final[frozenset[str]] = frozenset(s for s in ALL_SCOPES if s.endswith(":read"))

#: Scopes no role holds; granted only to org and integration tokens.
TOKEN_ONLY_SCOPES: Final[frozenset[str]] = frozenset({ORG_CI, PROJECT_DISTRIBUTION})

#: Display order: by resource, then by level.
ORDERED: Final[tuple[str, ...]] = tuple(DESCRIPTIONS)


class UnknownScopeError(ValueError):
    """A scope string that the registry does not know.

    The message names the rule, not the strings: it reaches HTTP answers and pages, where
    echoing the caller's text would reflect it. ``unknown`` holds them for an operator
    (the CLI prints them back to the person who typed them).
    """

    def __init__(self, unknown: Iterable[str]) -> None:
        self.unknown = sorted(unknown)
        super().__init__(
            f"{len(self.unknown)} unknown scope(s): every scope must be one of the registry's"
        )


def validate(scopes: Iterable[str]) -> frozenset[str]:
    """Return ``scopes`` as a frozenset, or raise ``UnknownScopeError``."""
    given = frozenset(scopes)
    unknown = given - ALL_SCOPES
    if unknown:
        raise UnknownScopeError(unknown)
    return given


def expand(scopes: Iterable[str]) -> frozenset[str]:
    """Close ``scopes`` under the hierarchy: ``event:admin`` also yields write and read.

    A frozenset's closure is remembered (the request path asks for the same few sets on
    every request)."""
    if isinstance(scopes, frozenset):
        return _expand_frozen(scopes)
    return _close(scopes)


@functools.lru_cache(maxsize=4096)
def _expand_frozen(scopes: frozenset[str]) -> frozenset[str]:
    return _close(scopes)


def _close(scopes: Iterable[str]) -> frozenset[str]:
    result: set[str] = set()
    stack = list(scopes)
    while stack:
        scope = stack.pop()
        if scope in result:
            continue
        result.add(scope)
        stack.extend(IMPLIES.get(scope, ()))
    return frozenset(result)


def ordered(scopes: Iterable[str]) -> list[str]:
    """Sort scopes in registry order (unknown strings last, alphabetically)."""
    rank = {s: i for i, s in enumerate(ORDERED)}
    return sorted(set(scopes), key=lambda s: (rank.get(s, len(rank)), s))


def parse(text: str) -> frozenset[str]:
    """Parse a space- or comma-separated scope list and validate it."""
    return validate(part for part in text.replace(",", " ").split() if part)


def format_scopes(scopes: Iterable[str]) -> str:
    """The RFC 6749 ``scope`` form: space-separated, in registry order."""
    return " ".join(ordered(scopes))
