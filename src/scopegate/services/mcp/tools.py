"""The MCP tools' work: which API route each calls, and how its answer reads.

The protocol side (``web/mcp/server.py``) validates arguments and asks the person for
approvals; this side calls the API through a ``Backend``, the one thing that differs
between the two modes: in direct mode a bearer is an agent token minted for the MCP
client's grant; in proxy mode it is the upstream token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from scopegate.services.mcp.api import ApiClient, ApprovalNeeded, ToolFailure


class Backend(Protocol):
    """Where a tool call's credentials and identity come from."""

    async def bearer(self, api: str, org: str, *, renew: bool = False) -> str:
        """A bearer for calls to ``api`` about ``org``; ``renew``: not the one handed out
        before (an approval may have been given since)."""
        ...

    async def whoami(self, api: str) -> dict[str, Any]: ...

    async def organizations(self, api: str) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class ToolAnswer:
    """Readable text for the model, and the same facts as structured content."""

    text: str
    data: dict[str, Any]


def _seg(value: str) -> str:
    return quote(value, safe="")


class Tools:
    def __init__(self, api: ApiClient) -> None:
        self._api = api

    async def _call(self, backend: Backend, base: str, org: str, method: str, path: str,
                    **kwargs: Any) -> Any:
        token = await backend.bearer(base, org)
        try:
            return await self._api.call(base, token, method, path, **kwargs)
        except ApprovalNeeded:
            # The person may have approved since this bearer was minted: once more, fresh.
            token = await backend.bearer(base, org, renew=True)
            return await self._api.call(base, token, method, path, **kwargs)

    async def whoami(self, backend: Backend, base: str) -> ToolAnswer:
        me = await backend.whoami(base)
        text = f"You are {me.get('name') or me.get('email')}"
        text += f" <{me['email']}>." if me.get("email") else "."
        if me.get("client"):
            text += f" This MCP client is {me['client']}."
        return ToolAnswer(text, me)

    async def find_organizations(self, backend: Backend, base: str) -> ToolAnswer:
        orgs = await backend.organizations(base)
        lines = [f"- {o['slug']}: {o['name']}" for o in orgs]
        text = ("Organizations:\n" + "\n".join(lines)) if lines else "No organizations."
        return ToolAnswer(text, {"organizations": orgs})

    async def find_projects(self, backend: Backend, base: str, org: str) -> ToolAnswer:
        projects = _list(await self._call(
            backend, base, org, "GET", f"organizations/{_seg(org)}/projects/"))
        lines = [f"- {p.get('slug')}: {p.get('name')}" for p in projects]
        text = (f"Projects in {org}:\n" + "\n".join(lines)) if lines else "No projects."
        return ToolAnswer(text, {"projects": projects})

    async def find_issues(self, backend: Backend, base: str, org: str, *,
                          status: str | None, query: str | None, limit: int) -> ToolAnswer:
        params: dict[str, Any] = {"perPage": limit}
        if status:
            params["status"] = status
        if query:
            params["query"] = query
        issues = _list(await self._call(
            backend, base, org, "GET", f"organizations/{_seg(org)}/issues/", params=params))
        lines = [_issue_line(i) for i in issues]
        text = (f"Issues in {org}:\n" + "\n".join(lines)) if lines else "No matching issues."
        return ToolAnswer(text, {"issues": issues})

    async def get_issue_details(self, backend: Backend, base: str, org: str,
                                issue_id: int) -> ToolAnswer:
        issue = _dict(await self._call(
            backend, base, org, "GET", f"organizations/{_seg(org)}/issues/{issue_id}/"))
        return ToolAnswer(_issue_text(issue), {"issue": issue})

    async def update_issue(self, backend: Backend, base: str, org: str, issue_id: int, *,
                           status: str | None, assigned_to: str | None,
                           unassign: bool) -> ToolAnswer:
        body: dict[str, Any] = {}
        if status is not None:
            body["status"] = status
        if unassign:
            body["assignedTo"] = None
        elif assigned_to is not None:
            body["assignedTo"] = assigned_to
        if not body:
            raise ToolFailure("Give a status, an assignee, or unassign.")
        issue = _dict(await self._call(
            backend, base, org, "PUT", f"organizations/{_seg(org)}/issues/{issue_id}/",
            body=body))
        return ToolAnswer("Updated. " + _issue_text(issue), {"issue": issue})

    async def find_releases(self, backend: Backend, base: str, org: str,
                            limit: int) -> ToolAnswer:
        releases = _list(await self._call(
            backend, base, org, "GET", f"organizations/{_seg(org)}/releases/",
            params={"perPage": limit}))
        lines = [f"- {r.get('version')} ({', '.join(r.get('projects') or [])})"
                 for r in releases]
        text = (f"Releases in {org}:\n" + "\n".join(lines)) if lines else "No releases."
        return ToolAnswer(text, {"releases": releases})

    async def create_release(self, backend: Backend, base: str, org: str, version: str,
                             projects: list[str], ref: str | None) -> ToolAnswer:
        body: dict[str, Any] = {"version": version, "projects": projects}
        if ref is not None:
            body["ref"] = ref
        release = _dict(await self._call(
            backend, base, org, "POST", f"organizations/{_seg(org)}/releases/", body=body))
        return ToolAnswer(f"Created release {release.get('version')}.", {"release": release})


def _list(data: Any) -> list[dict[str, Any]]:
    if not isinstance(data, list):
        raise ToolFailure("The API answered in an unexpected shape.")
    return [item for item in data if isinstance(item, dict)]


def _dict(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ToolFailure("The API answered in an unexpected shape.")
    return data


def _issue_line(issue: dict[str, Any]) -> str:
    return (f"- #{issue.get('id')} [{issue.get('status')}] {issue.get('title')}"
            f" ({issue.get('project')})")


def _issue_text(issue: dict[str, Any]) -> str:
    assignee = issue.get("assignedTo") or "nobody"
    return (f"Issue #{issue.get('id')}: {issue.get('title')}\n"
            f"Status: {issue.get('status')}; project {issue.get('project')}; "
            f"assigned to {assignee}; last seen {issue.get('lastSeen')}.")
