"""A small service of its own — notes kept per organization — protected by scopegate.

It is not part of scopegate: it only imports the public guard. It decides in one of two
ways, chosen by its environment:

* remote (``NOTES_SCOPEGATE_URL`` set): against a scopegate server over HTTP. Register
  the service first; the command prints the three values to set::

      scopegate resource-server add http://127.0.0.1:9000/ --name Notes
      NOTES_SCOPEGATE_URL=http://127.0.0.1:8000 NOTES_AUDIENCE=http://127.0.0.1:9000/ \\
      NOTES_CLIENT_ID=… NOTES_CLIENT_SECRET=… \\
          uvicorn notes_service:app --app-dir examples --port 9000

* local (otherwise): in-process, on scopegate's own database and secret
  (``SCOPEGATE_DATABASE_URL``, ``SCOPEGATE_SECRET_KEY`` or ``_FILE``,
  ``SCOPEGATE_BASE_URL``, as scopegate itself reads them).

Reading notes needs ``event:read`` (or more); writing one needs ``event:write``. An
agent token without ``event:write`` is answered 403 with the approval URL its person
opens (``examples/agent_notes.py`` shows the agent's side).
"""

from __future__ import annotations

import os
from collections import defaultdict

from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field

from scopegate.guard import Guard, OrgAccess, Permission, Rule, ScopeMap, scopes

NOTES = ScopeMap({
    "GET": Rule((scopes.EVENT_READ, scopes.EVENT_WRITE, scopes.EVENT_ADMIN), "read notes"),
    "POST": Rule((scopes.EVENT_WRITE, scopes.EVENT_ADMIN), "write notes"),
})


def build_guard() -> Guard:
    server = os.environ.get("NOTES_SCOPEGATE_URL")
    if server is None:
        return Guard.local()
    return Guard.remote(server_url=server, audience=os.environ["NOTES_AUDIENCE"],
                        client_id=os.environ["NOTES_CLIENT_ID"],
                        client_secret=os.environ["NOTES_CLIENT_SECRET"])


class Note(BaseModel):
    text: str = Field(min_length=1, max_length=500)


guard = build_guard()
app = FastAPI(title="notes", lifespan=guard.lifespan)
guard.install(app)
_notes: dict[int, list[dict[str, object]]] = defaultdict(list)


@app.get("/organizations/{org}/notes/")
async def read_notes(oa: OrgAccess = Depends(Permission(NOTES))) -> list[dict[str, object]]:
    return _notes[oa.org.id]


@app.post("/organizations/{org}/notes/", status_code=201)
async def write_note(note: Note, oa: OrgAccess = Depends(Permission(NOTES))
                     ) -> dict[str, object]:
    entry = {"text": note.text, "by": oa.principal.user_id, "agent": oa.principal.agent}
    _notes[oa.org.id].append(entry)
    return entry
