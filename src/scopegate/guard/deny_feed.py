"""The agent deny list, as a remote guard knows it: polled from the server.

An agent token is verified offline, but a revoked agent session (or a revoked, logged
out parent credential) must stop working before its ``exp``, here as in-process. The
server publishes its live deny entries at ``GET /oauth/agent-deny-list?since=…``
(HTTP Basic as the resource server); a background task (``run``, started by
``RemoteVerifier.running``) keeps a local copy:

* a full sync first (``since=0``), then every ``bound / 4`` seconds an incremental poll
  from the previous answer's ``now`` minus ``SINCE_OVERLAP`` (an entry carries the time
  its transaction *started* writing, and may commit a little later; seeing one twice is
  harmless), following ``more`` page by page;
* ``bound`` is ``deny_bound_seconds`` if configured, else the server's own
  ``bound_seconds`` (its in-process ``cache_seconds``): the same bound as in-process;
* the copy is *fresh* for ``bound`` seconds after the start of the last poll that
  succeeded from first page to last. An entry committed before a poll starts is in
  that poll's answer, so a revocation is honoured here within ``bound / 4`` plus one
  poll's duration; and when polls fail, freshness lapses at most ``bound`` after the
  last good one started, and from then on agent tokens get 503 (``fresh``), never a
  cached allow;
* an entry is kept until every token it can refuse has expired: its ``revoked_at``
  plus the longest agent-token lifetime, the verification leeway and a margin.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scopegate.core.deny_keys import PREFIXES, parent_key, session_key
from scopegate.guard.remote_http import RemoteError, fetch_json
from scopegate.services.agent_tokens import LEEWAY_SECONDS
from scopegate.settings import MAX_AGENT_TOKEN_TTL

log = logging.getLogger("scopegate.guard")

#: How far before the previous answer's ``now`` an incremental poll starts.
SINCE_OVERLAP = 60
#: How long an entry is kept after its ``revoked_at`` (as the server keeps it).
ENTRY_SECONDS = MAX_AGENT_TOKEN_TTL + LEEWAY_SECONDS + 60
PAGE_ENTRIES = 10_000
MAX_PAGES = 100
MAX_ENTRIES = 1_000_000
MAX_PAGE_BYTES = 4 * 1024 * 1024
#: The pace of polls before the server has said its bound.
FIRST_POLL_INTERVAL = 0.5


class Entry(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")
    key: str = Field(min_length=1, max_length=160)
    revoked_at: int = Field(ge=0, lt=2**53)


class Page(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")
    now: int = Field(ge=0, lt=2**53)
    bound_seconds: float = Field(gt=0, le=60)
    entries: list[Entry] = Field(max_length=PAGE_ENTRIES)
    more: bool


class DenyFeed:
    def __init__(self, url: str, authorization: str, http: Callable[[], httpx.AsyncClient],
                 *, timeout: float, bound: float | None = None) -> None:
        self.url = url
        self._authorization = authorization
        self._http = http
        self._timeout = timeout
        self._configured_bound = bound
        self._server_bound: float | None = None
        #: Deny key -> its latest ``revoked_at``.
        self.entries: dict[str, int] = {}
        self._since = 0
        self._fresh_until = float("-inf")
        self._failing = False
        self._attempted_at = float("-inf")

    @property
    def bound(self) -> float | None:
        """Seconds the copy stays trusted after a good poll (``None``: not known yet)."""
        return self._configured_bound or self._server_bound

    def fresh(self) -> bool:
        """Whether every revocation committed more than ``bound`` ago is in the copy."""
        return time.monotonic() < self._fresh_until

    def is_denied(self, org_id: int, user_id: int, session_id: str, issued_at: int,
                  parent: str) -> bool:
        """The in-process rule (``services/deny_list.py``): a token of a revoked session
        issued at or before the revocation, or any token of an ended parent, is dead."""
        session_revoked = self.entries.get(session_key(org_id, user_id, session_id))
        if session_revoked is not None and issued_at <= session_revoked:
            return True
        return parent_key(parent) in self.entries

    async def _page(self, since: int) -> Page:
        # A page slower than the bound is of no use: the copy is stale by then anyway.
        timeout = min(self._timeout, self.bound or self._timeout)
        _, document = await fetch_json(
            self._http(), "GET", self.url, limit=MAX_PAGE_BYTES, timeout=timeout,
            headers={"Authorization": self._authorization}, params={"since": str(since)})
        try:
            return Page.model_validate(document)
        except ValidationError:
            raise RemoteError("malformed deny feed answer") from None

    async def poll(self) -> None:
        """One poll, every page of it; the copy is fresh again only if all of it worked
        (``RemoteError`` otherwise, the copy left as it was)."""
        started = time.monotonic()
        since = self._since
        first = await self._page(since)
        page, found = first, list(first.entries)
        for _ in range(MAX_PAGES):
            if not page.more:
                break
            # The next page starts at this one's last ``revoked_at``: it must advance.
            if not page.entries or page.entries[-1].revoked_at <= since:
                raise RemoteError("the deny feed's pages do not advance")
            since = page.entries[-1].revoked_at
            page = await self._page(since)
            found.extend(page.entries)
        else:
            raise RemoteError("the deny feed has too many pages")
        self._merge(found)
        self._server_bound = first.bound_seconds
        self._since = max(0, first.now - SINCE_OVERLAP)
        self._fresh_until = started + (self.bound or 0.0)

    def _merge(self, found: list[Entry]) -> None:
        horizon = int(time.time()) - ENTRY_SECONDS
        entries = {k: v for k, v in self.entries.items() if v >= horizon}
        for entry in found:
            if entry.key.startswith(PREFIXES) and entry.revoked_at >= horizon:
                entries[entry.key] = max(entry.revoked_at, entries.get(entry.key, 0))
        if len(entries) > MAX_ENTRIES:
            raise RemoteError("the deny list is larger than this guard holds")
        self.entries = entries

    async def attempt(self) -> bool:
        """One poll, its failure logged (once until it works again), never raised."""
        self._attempted_at = time.monotonic()
        try:
            await self.poll()
        except RemoteError as error:
            self._note_failure(str(error))
            return False
        except Exception as error:  # the loop must outlive any one bad answer
            self._note_failure(type(error).__name__)
            return False
        if self._failing:
            log.warning("the scopegate deny feed answers again")
        self._failing = False
        return True

    async def run(self) -> None:
        """Poll until cancelled, every ``bound / 4`` seconds from one poll's start to
        the next (the first at once unless ``attempt`` just ran)."""
        while True:
            interval = self.bound / 4 if self.bound else FIRST_POLL_INTERVAL
            await asyncio.sleep(max(0.0, self._attempted_at + interval - time.monotonic()))
            await self.attempt()

    def _note_failure(self, reason: str) -> None:
        if not self._failing:
            log.warning("could not poll the scopegate deny feed (%s); agent tokens get "
                        "503 once the last good poll is %ss old", reason, self.bound)
        self._failing = True
