"""An agent that reads its person's notes and adds one, through ``scopegate.client``.

It holds the person's credential (``PERSON_TOKEN``: a user token ``sgu_…`` or an OAuth
access token ``sgp_…``) and only ever sends agent tokens to the notes service. Reading
needs no approval; the first write does: the client prints the approval URL (the person
opens it in a browser and clicks Approve), waits for the grant, mints again and retries::

    SCOPEGATE_URL=http://127.0.0.1:8000 PERSON_TOKEN=sgu_… ORG=acme \\
    NOTES_URL=http://127.0.0.1:9000/ NOTES_AUDIENCE=http://127.0.0.1:9000/ \\
        python examples/agent_notes.py "Deploy went fine"

Leave ``NOTES_AUDIENCE`` unset when the notes service runs in local mode (it then
accepts tokens minted for scopegate's own API).
"""

from __future__ import annotations

import os
import sys

from scopegate.client import AgentClient, Approval


def ask_person(approval: Approval) -> None:
    """Where a real agent would message its person; here, one line on stdout."""
    print(f"approve {' '.join(approval.scopes)} at: {approval.url}", flush=True)


def main(text: str) -> int:
    org = os.environ.get("ORG", "acme")
    with AgentClient(
        os.environ["SCOPEGATE_URL"], os.environ["PERSON_TOKEN"], org=org,
        session_id=os.environ.get("SESSION_ID", "notes-agent-1"), agent="notes-agent",
        audience=os.environ.get("NOTES_AUDIENCE"), api_url=os.environ["NOTES_URL"],
        on_approval=ask_person,
        approval_timeout=float(os.environ.get("APPROVAL_TIMEOUT", "300")),
        poll_interval=0.2,
    ) as agent:
        notes = agent.get(f"organizations/{org}/notes/")
        print(f"read {notes.status_code}: {len(notes.json())} notes", flush=True)
        written = agent.post(f"organizations/{org}/notes/", json={"text": text})
        print(f"write {written.status_code}: {written.text}", flush=True)
        return 0 if written.status_code == 201 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "hello from an agent"))
