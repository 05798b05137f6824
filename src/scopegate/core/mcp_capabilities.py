"""What an MCP client may do, as capabilities a person picks: each names its tools and the
least scopes those tools need.

A capability is granted when the token holds all its scopes (closed under the registry's
hierarchy). ``tools/list`` shows only the tools of granted capabilities, and in proxy
mode the upstream authorization asks for only the scopes of the chosen ones (Sentry's
MCP server asks for every scope it might ever use).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Final

from scopegate.core import scopes as s


class Capability(StrEnum):
    INSPECT = "inspect"
    TRIAGE = "triage"
    RELEASES = "releases"


#: The least scopes each capability's tools need.
SCOPES: Final[dict[Capability, tuple[str, ...]]] = {
    Capability.INSPECT: (s.ORG_READ, s.PROJECT_READ, s.EVENT_READ),
    Capability.TRIAGE: (s.EVENT_WRITE,),
    Capability.RELEASES: (s.PROJECT_RELEASES,),
}

#: The tools each capability brings.
TOOLS: Final[dict[Capability, tuple[str, ...]]] = {
    Capability.INSPECT: ("whoami", "find_organizations", "find_projects", "find_issues",
                         "get_issue_details", "find_releases"),
    Capability.TRIAGE: ("update_issue",),
    Capability.RELEASES: ("create_release",),
}

#: One line each, for the approval page.
DESCRIPTIONS: Final[dict[Capability, str]] = {
    Capability.INSPECT: "Read organizations, projects, issues and releases.",
    Capability.TRIAGE: "Resolve, ignore and reassign issues.",
    Capability.RELEASES: "Create releases.",
}

#: Preselected on the approval page: read only.
DEFAULT: Final[frozenset[Capability]] = frozenset({Capability.INSPECT})

#: What ``/mcp`` needs at all: a token without these gets ``insufficient_scope``.
REQUIRED_SCOPES: Final[tuple[str, ...]] = SCOPES[Capability.INSPECT]

#: Every scope a capability can ask for (the protected resource's ``scopes_supported``).
SUPPORTED_SCOPES: Final[tuple[str, ...]] = tuple(
    s.ordered({scope for needed in SCOPES.values() for scope in needed}))


def granted(scopes: Iterable[str]) -> frozenset[Capability]:
    """The capabilities a token holding ``scopes`` has."""
    held = s.expand(frozenset(scopes))
    return frozenset(c for c, needed in SCOPES.items() if held.issuperset(needed))


def scopes_for(capabilities: Iterable[Capability]) -> tuple[str, ...]:
    """The least scopes that grant ``capabilities``, in registry order."""
    return tuple(s.ordered({scope for c in capabilities for scope in SCOPES[c]}))


def tools_for(capabilities: Iterable[Capability]) -> frozenset[str]:
    return frozenset(tool for c in capabilities for tool in TOOLS[c])


def parse(values: Iterable[str]) -> frozenset[Capability]:
    """Capabilities by name; unknown names are refused (``ValueError``, not echoed)."""
    try:
        return frozenset(Capability(v) for v in values)
    except ValueError:
        raise ValueError("every capability must be one of: "
                         + ", ".join(c.value for c in Capability)) from None
