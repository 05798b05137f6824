"""What a process must hear about when another changes it: the topics of cached state.

A ``Change`` names one cached thing that is no longer true (a credential revoked, a role
changed, an organization's settings edited, a grant approved, a deny entry added, a key
rotated). ``key`` narrows it to one entry; ``None`` means every entry of the topic.
Keys are strings so that a change travels unchanged over the bus.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Topic(StrEnum):
    #: A bearer credential stored by hash (user, org, later integration and OAuth tokens);
    #: key: the credential's SHA-256 hex digest.
    CREDENTIAL = "credential"
    #: A first-party browser session; key: the session id's SHA-256 hex digest.
    WEB_SESSION = "web_session"
    #: A person's role in an organization, or whether the person is active;
    #: key: ``member_key(user_id, org_id)``, or ``None`` for every organization of a user.
    MEMBER = "member"
    #: An organization's row (slug, settings); key: its slug.
    ORG = "org"
    #: An agent session's write grant; key: ``grant_key(org_id, user_id, session_id)``.
    GRANT = "grant"
    #: An agent deny-list entry; key: the entry's key.
    DENY = "deny"
    #: The signing key ring.
    KEYS = "keys"


@dataclass(frozen=True)
class Change:
    topic: Topic
    key: str | None = None

    def encode(self) -> str:
        return f"{self.topic.value}\x1f{self.key if self.key is not None else ''}"

    @classmethod
    def decode(cls, raw: str) -> Change | None:
        """The change ``raw`` carries, or ``None`` for anything malformed."""
        topic, sep, key = raw.partition("\x1f")
        if not sep or topic not in Topic.__members__.values():
            return None
        return cls(Topic(topic), key or None)


def member_key(user_id: int, org_id: int) -> str:
    return f"{user_id}:{org_id}"


def grant_key(org_id: int, user_id: int, session_id: str) -> str:
    return f"{org_id}:{user_id}:{session_id}"
