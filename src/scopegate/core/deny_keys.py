"""The agent deny list's keys: derived here, shared by the server and every guard.

The server writes a deny entry under one of these keys (``services/deny_list.py``) and
publishes it on the deny feed (``GET /oauth/agent-deny-list``); a resource server in
another process derives the same keys from an agent token's claims and looks them up
in the feed it polled. Neither side ever sees the other's raw values: a session id and
a parent credential reference enter a key only as a SHA-256 prefix.

* ``session_key(org_id, user_id, session_id)``: an agent session revoked (a token of it
  issued at or before the entry's ``revoked_at`` is dead);
* ``parent_key(parent)``: the credential that minted agent tokens (their ``par`` claim)
  was revoked or logged out (every token it minted is dead).
"""

from __future__ import annotations

import functools
import hashlib
from typing import Final

SESSION_PREFIX: Final = "agent-deny:"
PARENT_PREFIX: Final = "agent-parent-deny:"
PREFIXES: Final = (SESSION_PREFIX, PARENT_PREFIX)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


#: Every agent request looks up both keys of its token; tokens of one session share them.
#: Remembering the last few thousand spares two SHA-256s on each request (a quarter of a
#: warm agent decision).
_REMEMBERED = 4096


@functools.lru_cache(maxsize=_REMEMBERED)
def session_key(org_id: int, user_id: int, session_id: str) -> str:
    """The key of a revoked agent session."""
    return f"{SESSION_PREFIX}{org_id}:{user_id}:{_digest(session_id)}"


@functools.lru_cache(maxsize=_REMEMBERED)
def parent_key(parent: str) -> str:
    """The key of an ended parent credential (an agent token's ``par``)."""
    return PARENT_PREFIX + _digest(parent)
