"""The MCP server: eight tools on the SDK's ``MCPServer``, shown per capability.

Tool arguments are typed and bounded (the SDK validates them against the schema it
publishes); each tool hands its work to ``services/mcp/tools.py`` through the front
door, which knows the mode. A middleware hides the tools of capabilities the token does
not hold, from ``tools/list`` and from ``tools/call`` alike.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.request_state import RequestStateSecurity
from mcp_types import CallToolResult, InputRequiredResult, ListToolsResult, TextContent
from pydantic import Field

from scopegate.core import mcp_capabilities as caps
from scopegate.services.issues import IssueStatus
from scopegate.services.mcp.api import ApprovalNeeded, ToolFailure
from scopegate.services.mcp.tools import Backend, ToolAnswer
from scopegate.store.models import EMAIL_MAX, SLUG_MAX, TITLE_MAX, VERSION_MAX
from scopegate.web.mcp.approval import after_refusal
from scopegate.web.mcp.endpoint import principal_of

if TYPE_CHECKING:
    from scopegate.web.mcp.front_door import FrontDoor

OrgSlug = Annotated[str, Field(min_length=1, max_length=SLUG_MAX,
                               pattern=r"^[a-z0-9][a-z0-9_-]*$",
                               description="The organization's slug.")]
RegionUrl = Annotated[str | None, Field(
    default=None, max_length=512,
    description="The API region's base URL (https://host), when not the default.")]
IssueId = Annotated[int, Field(ge=1, le=2**31 - 1, description="The issue's numeric id.")]
Limit = Annotated[int, Field(ge=1, le=100, description="At most this many results.")]
ToolResult = CallToolResult | InputRequiredResult


def _result(answer: ToolAnswer) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=answer.text)],
                          structured_content=answer.data)


def build_server(front: FrontDoor) -> MCPServer:
    """The ``MCPServer`` with its tools, bound to ``front``."""
    with _root_logging_kept():
        server = MCPServer(
            "scopegate",
            instructions="Tools that act for you on scopegate's API: find organizations, "
            "projects, issues and releases; update issues and create releases after you "
            "approve.",
            request_state_security=RequestStateSecurity(keys=[front.request_state_key]),
            middleware=[CapabilityFilter()],
        )

    async def run(ctx: Context, region: str | None,
                  work: Callable[[Backend, str], Awaitable[ToolAnswer]]) -> ToolResult:
        backend = front.backend(ctx.request_context.request)
        try:
            base = front.api_base(region)
            try:
                answer = await work(backend, base)
            except ApprovalNeeded as need:
                answer_or_ask = await after_refusal(ctx, need, lambda: work(backend, base))
                if isinstance(answer_or_ask, InputRequiredResult):
                    return answer_or_ask
                answer = answer_or_ask
        except ToolFailure as failure:
            raise ToolError(str(failure)) from None
        return _result(answer)

    @server.tool(description="Who you are, and which MCP client acts for you.")
    async def whoami(ctx: Context) -> ToolResult:
        return await run(ctx, None, lambda b, base: front.tools.whoami(b, base))

    @server.tool(description="The organizations this client may act in for you.")
    async def find_organizations(ctx: Context, regionUrl: RegionUrl = None) -> ToolResult:
        return await run(ctx, regionUrl, lambda b, base: front.tools.find_organizations(b, base))

    @server.tool(description="The projects of an organization.")
    async def find_projects(ctx: Context, organizationSlug: OrgSlug,
                            regionUrl: RegionUrl = None) -> ToolResult:
        return await run(ctx, regionUrl, lambda b, base: front.tools.find_projects(
            b, base, organizationSlug))

    @server.tool(description="Issues of an organization, newest first; filter by status "
                 "or by words in the title.")
    async def find_issues(
        ctx: Context, organizationSlug: OrgSlug,
        status: IssueStatus | None = None,
        query: Annotated[str | None, Field(default=None, max_length=TITLE_MAX)] = None,
        limit: Limit = 25, regionUrl: RegionUrl = None,
    ) -> ToolResult:
        return await run(ctx, regionUrl, lambda b, base: front.tools.find_issues(
            b, base, organizationSlug, status=status.value if status else None, query=query,
            limit=limit))

    @server.tool(description="One issue in detail.")
    async def get_issue_details(ctx: Context, organizationSlug: OrgSlug,
                                issueId: IssueId,
                                regionUrl: RegionUrl = None) -> ToolResult:
        return await run(ctx, regionUrl, lambda b, base: front.tools.get_issue_details(
            b, base, organizationSlug, issueId))

    @server.tool(description="Resolve, ignore or reopen an issue, or (un)assign it. Asks "
                 "you to approve the first time.")
    async def update_issue(
        ctx: Context, organizationSlug: OrgSlug, issueId: IssueId,
        status: IssueStatus | None = None,
        assignedTo: Annotated[str | None, Field(
            default=None, max_length=EMAIL_MAX, description="A member's email.")] = None,
        unassign: bool = False, regionUrl: RegionUrl = None,
    ) -> ToolResult:
        return await run(ctx, regionUrl, lambda b, base: front.tools.update_issue(
            b, base, organizationSlug, issueId, status=status.value if status else None,
            assigned_to=assignedTo, unassign=unassign))

    @server.tool(description="Releases of an organization, newest first.")
    async def find_releases(ctx: Context, organizationSlug: OrgSlug,
                            limit: Limit = 25,
                            regionUrl: RegionUrl = None) -> ToolResult:
        return await run(ctx, regionUrl, lambda b, base: front.tools.find_releases(
            b, base, organizationSlug, limit))

    @server.tool(description="Create a release for some projects. Asks you to approve the "
                 "first time.")
    async def create_release(
        ctx: Context, organizationSlug: OrgSlug,
        version: Annotated[str, Field(min_length=1, max_length=VERSION_MAX,
                                      pattern=r"^[^/\s][^/\n\r\t]*$")],
        projects: Annotated[list[Annotated[str, Field(min_length=1, max_length=SLUG_MAX)]],
                            Field(min_length=1, max_length=100)],
        ref: Annotated[str | None, Field(default=None, max_length=VERSION_MAX)] = None,
        regionUrl: RegionUrl = None,
    ) -> ToolResult:
        return await run(ctx, regionUrl, lambda b, base: front.tools.create_release(
            b, base, organizationSlug, version, projects, ref))

    return server


@contextmanager
def _root_logging_kept() -> Iterator[None]:
    """The SDK configures the root logger when a server is built (``basicConfig`` with a
    rich handler at INFO); an app that embeds it keeps its own logging."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


class CapabilityFilter:
    """A ``ServerMiddleware``: only the tools of the token's capabilities exist for it."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any],
                       call_next: CallNext) -> HandlerResult:
        if ctx.method not in ("tools/list", "tools/call") or ctx.request is None:
            return await call_next(ctx)
        allowed = caps.tools_for(caps.granted(principal_of(ctx.request).scopes or ()))
        if ctx.method == "tools/call":
            name = (ctx.params or {}).get("name")
            if name not in allowed:
                return CallToolResult(is_error=True, content=[TextContent(
                    type="text", text=f"Unknown tool: {str(name)[:64]}")])
            return await call_next(ctx)
        result = await call_next(ctx)
        if isinstance(result, ListToolsResult):
            result.tools = [tool for tool in result.tools if tool.name in allowed]
        elif isinstance(result, dict):
            result["tools"] = [t for t in result.get("tools", []) if t.get("name") in allowed]
        return result
