"""The agent side of scopegate: call an API as an agent session of a person.

An agent holds its person's credential (a user token ``sgu_`` or an OAuth access token
``sgp_``) and never sends it to the API: it mints short-lived agent tokens (``sga_``)
with it and calls the API with those::

    from scopegate.client import AgentClient, Approval

    def ask(approval: Approval) -> None:
        print(f"Please approve {' '.join(approval.scopes)}: {approval.url}")

    with AgentClient("https://scopegate.example", person_token, org="acme",
                     session_id="claude-42", agent="claude", on_approval=ask) as agent:
        issues = agent.get("organizations/acme/issues/").json()
        agent.put(f"organizations/acme/issues/{issues[0]['id']}/",
                  json={"status": "resolved"})

``AsyncAgentClient`` takes the same arguments (``async with``, ``await agent.get(...)``;
``on_approval`` may be a coroutine function).

What every request does:

1. Mints an agent token first if there is none or it expires within ``refresh_margin``
   (``POST /api/0/organizations/{org}/agent/token/`` with the person's credential).
2. Sends the request with ``Authorization: Bearer sga_…``. On 401 (the token was revoked
   or expired server side) it mints once more and re-sends once.
3. On ``403`` with ``"error": "insufficient_scope"`` and an ``approval`` hint for this
   session on this scopegate server, it calls ``on_approval(Approval(url, scopes,
   session_id))``, polls ``GET …/agent/sessions/{session_id}/grant/`` every
   ``poll_interval`` seconds until the grant covers those scopes (at most
   ``approval_timeout`` seconds, then ``ApprovalTimeout``; a denial looks the same),
   mints again and re-sends once. Whatever comes back then is returned, even a 403.
4. Any other answer, including a 403 without a hint (``"approval": null``: the person's
   role lacks the scope) or when there is no ``on_approval``, is returned as is.

The request body is read once and replayed on a retry. Tokens never appear in a repr, an
exception or a log record (logger ``scopegate.client``, DEBUG: mints and approvals).
"""

from scopegate.client.clients import AgentClient, AsyncAgentClient
from scopegate.client.errors import (
    Approval,
    ApprovalTimeout,
    ClientError,
    GrantStatusError,
    MintError,
)

__all__ = [
    "AgentClient",
    "Approval",
    "ApprovalTimeout",
    "AsyncAgentClient",
    "ClientError",
    "GrantStatusError",
    "MintError",
]
