"""The agent-token parts of the runtime: key ring, deny list, grant cache, authenticator."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from scopegate.services.agent_tokens import LEEWAY_SECONDS, AgentTokenAuthenticator
from scopegate.services.deny_list import DenyList
from scopegate.services.grant_cache import GrantCache
from scopegate.services.keys import KeyRing
from scopegate.settings import Settings
from scopegate.web.runtime import runtime


def deny_ttl_seconds(settings: Settings) -> int:
    """How long a deny entry must live: the longest token lifetime plus the leeway."""
    return settings.agent_token_max_ttl_seconds + LEEWAY_SECONDS + 60


@dataclass(frozen=True)
class AgentRuntime:
    keys: KeyRing
    deny_list: DenyList
    grant_cache: GrantCache
    authenticator: AgentTokenAuthenticator


def agent_runtime(request: Request) -> AgentRuntime:
    return runtime(request).extras["agent"]
