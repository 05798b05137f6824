"""The agent-token parts of the runtime: key ring, deny list, authenticator."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from scopegate.services.agent_tokens import AgentTokenAuthenticator
from scopegate.services.deny_list import DenyList
from scopegate.services.keys import KeyRing
from scopegate.web.runtime import runtime


@dataclass(frozen=True)
class AgentRuntime:
    keys: KeyRing
    deny_list: DenyList
    authenticator: AgentTokenAuthenticator

    @property
    def deny_ttl_seconds(self) -> int:
        # Longest token lifetime plus the verification leeway.
        return self.authenticator.max_ttl_seconds + 60


def agent_runtime(request: Request) -> AgentRuntime:
    return runtime(request).extras["agent"]
