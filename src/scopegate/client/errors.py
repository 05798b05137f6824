"""What the agent client raises: typed, and never carrying a token.

A refused API call is not an error here: it comes back as the ``httpx.Response`` it is.
These are the failures of the client's own conversation with scopegate (minting, waiting
for an approval), which the caller cannot see in any response.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Approval:
    """What the person is asked to approve: open ``url`` (a page on the scopegate server)
    to let agent session ``session_id`` use ``scopes``."""

    url: str
    scopes: tuple[str, ...]
    session_id: str


class ClientError(Exception):
    """Base class of the agent client's own failures."""


class MintError(ClientError):
    """scopegate would not mint an agent token (bad or revoked person credential, no
    access to the organization, invalid input). ``status`` is scopegate's HTTP status,
    ``error`` its error code or detail when it gave one (never the credential)."""

    def __init__(self, status: int, error: str | None = None) -> None:
        super().__init__(f"minting an agent token failed: HTTP {status}"
                         + (f" ({error})" if error else ""))
        self.status = status
        self.error = error


class GrantStatusError(ClientError):
    """scopegate refused the grant-status poll with something other than "not yet"
    (404): the person's credential cannot see the session, or the server is too old to
    have the endpoint. Waiting longer would not help."""

    def __init__(self, status: int, approval: Approval) -> None:
        super().__init__(f"checking the agent session's grant failed: HTTP {status}")
        self.status = status
        self.approval = approval


class ApprovalTimeout(ClientError, TimeoutError):
    """The person did not approve within the approval timeout (or denied: a denial
    leaves no grant, so it looks the same). ``approval`` says what was asked."""

    def __init__(self, approval: Approval, seconds: float) -> None:
        super().__init__(f"no approval of {' '.join(approval.scopes)} for agent session "
                         f"{approval.session_id!r} within {seconds:g} s")
        self.approval = approval
        self.seconds = seconds
