"""The token prefix table: the one place a credential prefix is spelled.

Every bearer credential starts with a prefix naming its kind, so the authenticator
chain routes with a cheap ``startswith`` and never parses a token of another kind.
"""

from __future__ import annotations

from enum import Enum


class TokenKind(Enum):
    """Credential kinds, each with its bearer prefix."""

    USER = "sgu_"
    ORG = "sgo_"
    INTEGRATION = "sgi_"
    OAUTH_ACCESS = "sgp_"
    OAUTH_REFRESH = "sgr_"
    AGENT = "sga_"

    @property
    def prefix(self) -> str:
        return self.value

    @property
    def acts_for_person(self) -> bool:
        """Whether a person stands behind the credential (access = scopes ∩ role)."""
        # Identity, not a set: an Enum member's hash is a Python call (the warm path).
        return self is TokenKind.USER or self is TokenKind.OAUTH_ACCESS or (
            self is TokenKind.AGENT)

