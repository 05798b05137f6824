"""What a recorded call is: which credential (its *subject*) and which of its scopes
admitted it.

The subject is the unit that holds the scopes, so usage adds up where a narrowing would
apply: an integration (all its tokens), an OAuth grant (across refreshes), an agent
session (across the short-lived tokens it mints), a user token, an org token. A browser
session holds its role, not scopes, and is not recorded.
"""

from __future__ import annotations

import functools
from typing import Final

from scopegate.core import scopes as registry
from scopegate.core.access import Principal
from scopegate.core.token_kinds import TokenKind

INTEGRATION: Final = "integration"
ORG_TOKEN: Final = "org_token"  # noqa: S105  (a kind of credential, not a secret)
USER_TOKEN: Final = "user_token"  # noqa: S105  (likewise)
OAUTH: Final = "oauth"
AGENT_SESSION: Final = "agent_session"
#: Subjects whose scopes belong to the organization, so its managers may narrow them.
NARROWABLE: Final = frozenset({INTEGRATION, ORG_TOKEN})
#: Subjects a person stands behind: their role never holds a token-only scope.
ACTS_FOR_PERSON: Final = frozenset({USER_TOKEN, OAUTH, AGENT_SESSION})


def subject_of(principal: Principal) -> str | None:
    """The credential a call is recorded against; ``None``: not recorded."""
    kind = principal.kind
    if kind is None:
        return None
    if kind is TokenKind.INTEGRATION:
        return f"{INTEGRATION}:{principal.integration_id}"
    if kind is TokenKind.AGENT:
        return f"{AGENT_SESSION}:{principal.user_id}:{principal.session_id}"
    if kind is TokenKind.OAUTH_ACCESS:
        return f"{OAUTH}:{principal.session_id}"
    return principal.credential_ref


def kind_of(subject: str) -> str:
    """``"integration"``, ``"org_token"``, ``"user_token"``, ``"oauth"`` or
    ``"agent_session"`` (the subject's first part)."""
    return subject.partition(":")[0]


def row_id(subject: str) -> int | None:
    """The row id a subject names (``integration:7`` → 7, ``user_token:12:ab…`` → 12);
    ``None`` when its second part is not a number."""
    part = subject.partition(":")[2].partition(":")[0]
    return int(part) if part.isdigit() and len(part) < 19 else None


def subject_for(kind: str, row: int) -> str:
    """The subject of an integration or org token by its row id."""
    return f"{kind}:{row}"


def candidates_for(subject: str) -> frozenset[str]:
    """The scopes a recommendation may name: a person's role never holds a token-only
    scope, so recommending one to a person's credential would admit nothing."""
    if kind_of(subject) in ACTS_FOR_PERSON:
        return registry.ALL_SCOPES - registry.TOKEN_ONLY_SCOPES
    return registry.ALL_SCOPES


@functools.lru_cache(maxsize=4096)
def admitted_by(sufficient: tuple[str, ...], granted: frozenset[str],
                held: frozenset[str]) -> str:
    """The granted scope that admitted a call: for the first sufficient scope (least
    privileged first) the caller held, the granted scope implying it. ``granted`` is
    what the credential carries, ``held`` what it held in the organization (granted ∩
    role, for a person). ``""``: the endpoint needs no scope."""
    for scope in sufficient:
        if scope not in held:
            continue
        for candidate in registry.ordered(granted):
            if scope in registry.expand({candidate}):
                return candidate
        return scope
    return ""
