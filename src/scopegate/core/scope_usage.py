"""What a recorded call is: which credential (its *subject*) and which of its scopes
admitted it.

The subject is the unit that holds the scopes, so usage adds up where a narrowing would
apply: an integration (all its tokens), an OAuth grant (across refreshes), an agent
session (across the short-lived tokens it mints), a user token, an org token. A browser
session holds its role, not scopes, and is not recorded.
"""

from __future__ import annotations

import functools

from scopegate.core import scopes as registry
from scopegate.core.access import Principal
from scopegate.core.token_kinds import TokenKind


def subject_of(principal: Principal) -> str | None:
    """The credential a call is recorded against; ``None``: not recorded."""
    kind = principal.kind
    if kind is None:
        return None
    if kind is TokenKind.INTEGRATION:
        return f"integration:{principal.integration_id}"
    if kind is TokenKind.AGENT:
        return f"agent_session:{principal.user_id}:{principal.session_id}"
    if kind is TokenKind.OAUTH_ACCESS:
        return f"oauth:{principal.session_id}"
    return principal.credential_ref


@functools.lru_cache(maxsize=4096)
def admitted_by(sufficient: tuple[str, ...], granted: frozenset[str],
                held: frozenset[str]) -> str:
    """The granted scope that admitted a call: for the first sufficient scope (least
    privileged first) the caller held, the granted scope implying it. ``granted`` is
    what the credential carries, ``held`` what it held in the organization (granted ∩
    role, for a person)."""
    for scope in sufficient:
        if scope not in held:
            continue
        for candidate in registry.ordered(granted):
            if scope in registry.expand({candidate}):
                return candidate
        return scope
    return ""
