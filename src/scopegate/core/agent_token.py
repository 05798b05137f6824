"""Agent capability token claims: what an ``sga_`` token says, and checking it says it well.

The token is ``sga_`` + a compact JWS (RFC 7515) signed with EdDSA (RFC 8037), header
``{"alg": "EdDSA", "kid": ..., "typ": "sg-agent+jwt"}`` and claims (RFC 7519)::

    iss   the issuer (scopegate's base URL)
    aud   the audience: scopegate's API, or a registered resource server's audience
    sub   the person, as a user id string
    org   the organization id the token is bound to
    org_slug  that organization's slug (what a resource server in another process
          matches against the path's organization); optional when parsing, so tokens
          minted before it existed still parse
    sid   the agent session, chosen by the caller
    scopes  granted scopes
    act   who acts (RFC 8693 section 4.1): {"sub": "<agent or OAuth client>"}
    par   the parent credential that minted it ("user_token:12:9c1e…", "web_session:3f9a…"): the
          token dies when its parent is revoked or logged out (the deny list)
    iat, exp, jti   (``exp`` never later than the parent credential's own expiry)

Signature checks live in services; this module only shapes and validates claims.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Final

from scopegate.core import scopes as registry
from scopegate.core.access import Principal
from scopegate.core.token_kinds import TokenKind

ALGORITHM: Final = "EdDSA"
TOKEN_TYPE: Final = "sg-agent+jwt"  # noqa: S105 - a JWS "typ", not a secret
SESSION_ID_RE: Final = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
AGENT_MAX: Final = 128
#: An agent's self-chosen name, shown to its person as a claim: printable ASCII letters,
#: digits and ``space . _ : @ / + ~ ( ) -``, no space at either end; so neither markup nor
#: bidi or other control characters reach the approval page or the audit log.
AGENT_NAME_RE: Final = re.compile(r"[A-Za-z0-9._:@/+~()-](?:[A-Za-z0-9 ._:@/+~()-]{0,126}"
                                  r"[A-Za-z0-9._:@/+~()-])?")
PARENT_MAX: Final = 128
#: An organization slug as the ``org_slug`` claim may carry it (the store's limit is 50).
ORG_SLUG_MAX: Final = 64
REQUIRED_CLAIMS: Final = (
    "iss", "aud", "sub", "org", "sid", "scopes", "act", "par", "iat", "exp", "jti",
)
#: User ids are 32-bit database keys; a larger ``sub`` names nobody (and must not reach SQL).
USER_ID_RE: Final = re.compile(r"[1-9][0-9]{0,9}")
USER_ID_MAX: Final = 2**31 - 1


class MalformedClaims(ValueError):
    """The signature was good but the claims are not what an agent token carries."""


@dataclass(frozen=True)
class AgentClaims:
    issuer: str
    audience: str
    user_id: int
    org_id: int
    session_id: str
    scopes: frozenset[str]
    #: The acting agent (the ``act`` claim's ``sub``).
    agent: str
    #: The minting credential's reference (``Principal.credential_ref``), never a secret.
    parent: str
    issued_at: int
    expires_at: int
    jti: str
    #: The organization's slug (``None``: a token minted before the claim existed).
    org_slug: str | None = None

    @functools.cached_property
    def principal(self) -> Principal:
        """Who the token speaks for, with every scope it names; built once per verified
        token (claims are cached), as a warm agent request's share of a decision is
        otherwise a tenth spent here. Write scopes are for the caller to narrow."""
        return Principal(kind=TokenKind.AGENT, credential_ref=f"agent_token:{self.jti}",
                         user_id=self.user_id, org_id=self.org_id, scopes=self.scopes,
                         session_id=self.session_id, agent=self.agent)

    def to_jwt(self) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(self.user_id),
            "org": self.org_id,
            "sid": self.session_id,
            "scopes": registry.ordered(self.scopes),
            "act": {"sub": self.agent},
            "par": self.parent,
            "iat": self.issued_at,
            "exp": self.expires_at,
            "jti": self.jti,
        }
        if self.org_slug is not None:
            claims["org_slug"] = self.org_slug
        return claims


def valid_session_id(value: str) -> bool:
    # fullmatch: with match(), "$" also matches before a trailing newline ("s1\n").
    return bool(SESSION_ID_RE.fullmatch(value))


def valid_agent_name(value: str) -> bool:
    """Whether ``value`` is an acceptable agent name (see ``AGENT_NAME_RE``)."""
    return bool(AGENT_NAME_RE.fullmatch(value))


def _int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise MalformedClaims(f"claim {name} must be a non-negative integer")
    return value


def _str(value: object, name: str, limit: int = 256) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise MalformedClaims(f"claim {name} must be a non-empty string")
    return value


def parse_claims(payload: dict[str, Any]) -> AgentClaims:
    """Turn verified JWT claims into ``AgentClaims``, or raise ``MalformedClaims``."""
    missing = [name for name in REQUIRED_CLAIMS if name not in payload]
    if missing:
        raise MalformedClaims("missing claim(s): " + ", ".join(missing))
    sub = _str(payload["sub"], "sub", 20)
    # ASCII digits only: str.isdigit() also accepts "²" (which int() refuses) and "٣".
    if not USER_ID_RE.fullmatch(sub) or int(sub) > USER_ID_MAX:
        raise MalformedClaims("claim sub must be a user id")
    sid = _str(payload["sid"], "sid", 128)
    if not valid_session_id(sid):
        raise MalformedClaims("claim sid is not a valid agent session id")
    raw_scopes = payload["scopes"]
    if not isinstance(raw_scopes, list) or len(raw_scopes) > len(registry.ALL_SCOPES):
        raise MalformedClaims("claim scopes must be a list")
    if not all(isinstance(s, str) for s in raw_scopes):
        raise MalformedClaims("claim scopes must hold strings")
    try:
        scopes = registry.validate(raw_scopes)
    except registry.UnknownScopeError:
        raise MalformedClaims("claim scopes holds an unknown scope") from None
    act = payload["act"]
    if not isinstance(act, dict):
        raise MalformedClaims("claim act must be an object")
    aud = payload["aud"]
    if isinstance(aud, list):
        if len(aud) != 1:
            raise MalformedClaims("claim aud must name one audience")
        aud = aud[0]
    org_slug = payload.get("org_slug")
    if org_slug is not None:
        org_slug = _str(org_slug, "org_slug", ORG_SLUG_MAX)
    return AgentClaims(
        issuer=_str(payload["iss"], "iss", 512),
        audience=_str(aud, "aud", 512),
        user_id=int(sub),
        org_id=_int(payload["org"], "org"),
        session_id=sid,
        scopes=scopes,
        agent=_str(act.get("sub"), "act.sub", AGENT_MAX),
        parent=_str(payload["par"], "par", PARENT_MAX),
        issued_at=_int(payload["iat"], "iat"),
        expires_at=_int(payload["exp"], "exp"),
        jti=_str(payload["jti"], "jti", 64),
        org_slug=org_slug,
    )
