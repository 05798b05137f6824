"""Write approval inside the chat: a tool the API refused for want of an approval asks
the person, then tries once more.

* A client that declared URL-mode elicitation is asked to open the approval URL: on the
  2026-07-28 protocol as an ``input_required`` result the client answers by retrying
  the call; on older ones as an ``elicitation/create`` request during the call.
* Any other client (or a person who has not approved yet) gets a tool error whose text
  gives the approval URL and says to retry after approving.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import NoBackChannelError
from mcp_types import ElicitRequest, ElicitRequestURLParams, ElicitResult, InputRequiredResult
from mcp_types.version import is_version_at_least

from scopegate.services.mcp.api import ApprovalNeeded
from scopegate.services.mcp.tools import ToolAnswer

INPUT_REQUIRED_VERSION = "2026-07-28"
#: The key of our one input request, in ``input_required`` results and their answers.
APPROVAL_KEY = "approval"


def _message(need: ApprovalNeeded) -> str:
    scopes = " ".join(need.scopes) or "a write scope"
    return (f"This needs your approval ({scopes}). Open the link, approve, and the call "
            "will continue.")


def refused_text(need: ApprovalNeeded) -> str:
    return (f"This call needs your approval first. Open {need.url} , approve, then retry "
            "the same call.")


def _supports_url_elicitation(ctx: Context) -> bool:
    capabilities = ctx.client_capabilities
    return bool(capabilities and capabilities.elicitation
                and capabilities.elicitation.url is not None)


def _modern(ctx: Context) -> bool:
    version = ctx.protocol_version
    return version is not None and is_version_at_least(version, INPUT_REQUIRED_VERSION)


def approval_answer(ctx: Context) -> str | None:
    """On a retried 2026-07-28 call: what the person answered (accept/decline/cancel)."""
    responses = ctx.input_responses or {}
    answer = responses.get(APPROVAL_KEY)
    return answer.action if isinstance(answer, ElicitResult) else None


async def after_refusal(ctx: Context, need: ApprovalNeeded,
                        retry: Callable[[], Awaitable[ToolAnswer]]
                        ) -> ToolAnswer | InputRequiredResult:
    """Ask the person to approve ``need`` and retry, or fail with the URL."""
    if not _supports_url_elicitation(ctx):
        raise ToolError(refused_text(need))
    if _modern(ctx):
        answered = approval_answer(ctx)
        if answered is None:
            return InputRequiredResult(input_requests={APPROVAL_KEY: ElicitRequest(
                params=ElicitRequestURLParams(message=_message(need), url=need.url))})
    else:
        try:
            answered = (await ctx.elicit_url(_message(need), need.url,
                                             elicitation_id=f"approve-{ctx.request_id}")).action
        except NoBackChannelError:
            raise ToolError(refused_text(need)) from None
    if answered != "accept":
        raise ToolError("The approval was declined; nothing was changed.")
    try:
        return await retry()
    except ApprovalNeeded as still:
        raise ToolError(refused_text(still)) from None
