"""The flow of ``flow.py`` as an ``httpx.Auth``: httpx sends what the flow asks for.

An auth flow is where httpx lets a request be re-sent with other headers, after other
requests (here: mint, poll the grant status) went out through the same client, its
transport, proxies and TLS settings. The two drivers below only execute steps; they decide
nothing. A blocking ``on_approval`` in the async driver blocks the event loop: give the
async client an async callback if the person takes time.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

import anyio
import httpx

from scopegate.client.errors import Approval
from scopegate.client.flow import AgentSession, Notify, Send

OnApproval = Callable[[Approval], Any]


class AgentAuth(httpx.Auth):
    """Presents the session's agent token; minting, refreshing and the approval wait
    happen inside the request (see ``AgentSession.flow``)."""

    # The flow re-sends the request: read its body once, up front, so it can be replayed.
    requires_request_body = True

    def __init__(self, session: AgentSession, on_approval: OnApproval | None) -> None:
        self.session = session
        self._on_approval = on_approval

    def __repr__(self) -> str:
        return f"AgentAuth({self.session!r})"

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response,
                                                                  None]:
        request.read()
        flow = self.session.flow(request)
        outcome: Any = None
        while True:
            try:
                step = flow.send(outcome)
            except StopIteration:
                return
            outcome = None
            if isinstance(step, Send):
                response = yield step.request
                if step.wants_body(response.status_code):
                    response.read()
                outcome = response
            elif isinstance(step, Notify):
                self._notify_sync(step.approval)
            else:
                time.sleep(step.seconds)

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request,
                                                                               httpx.Response]:
        await request.aread()
        flow = self.session.flow(request)
        outcome: Any = None
        while True:
            try:
                step = flow.send(outcome)
            except StopIteration:
                return
            outcome = None
            if isinstance(step, Send):
                response = yield step.request
                if step.wants_body(response.status_code):
                    await response.aread()
                outcome = response
            elif isinstance(step, Notify):
                result = self._call(step.approval)
                if inspect.isawaitable(result):
                    await result
            else:
                await anyio.sleep(step.seconds)

    def _notify_sync(self, approval: Approval) -> None:
        result = self._call(approval)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()  # never awaited: say so instead of a RuntimeWarning
            raise TypeError("AgentClient needs a sync on_approval callback; "
                            "use AsyncAgentClient for an async one")

    def _call(self, approval: Approval) -> Any:
        if self._on_approval is None:  # the flow notifies only when there is a callback
            raise RuntimeError("no on_approval callback")
        return self._on_approval(approval)
