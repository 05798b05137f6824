"""``scopegate app``: register, list and delete OAuth apps (a fixed public interface).

``create`` prints ``client_id=…`` and, for a confidential app, ``client_secret=…`` (shown
once; scopegate keeps its SHA-256), one ``key=value`` per line, or one JSON object with
``--json``.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from scopegate.cli.units import echo_fields, unit
from scopegate.services import directory
from scopegate.services.oauth import clients

app_app = typer.Typer(help="OAuth apps (clients of scopegate's authorization server).",
                      no_args_is_help=True)


@app_app.command("create")
def app_create(
    owner: Annotated[str, typer.Option(help="The owner's email.")],
    name: Annotated[str, typer.Option(help="Shown to people on the consent page.")],
    redirect_uri: Annotated[list[str], typer.Option(
        "--redirect-uri", help="Exact redirect URI (https, or http on loopback); repeat.")],
    public: Annotated[bool, typer.Option(
        "--public", help="A public client (no secret; PKCE only), e.g. a native app.")] = False,
    org_bound: Annotated[bool, typer.Option(
        "--org-bound", help="Its tokens work in the one organization picked at consent.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Register an app; print its client_id (and client_secret, once)."""
    with unit() as (_, db):
        new = clients.create_app(db, owner_id=directory.get_user_by_email(db, owner).id,
                                 name=name, redirect_uris=redirect_uri, public=public,
                                 org_bound=org_bound)
    printed = {"client_id": new.client.client_id}
    if new.client_secret is not None:
        printed["client_secret"] = new.client_secret
    echo_fields(printed, as_json)


@app_app.command("list")
def app_list(
    owner: Annotated[str, typer.Option(help="The owner's email.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List the apps a person registered."""
    with unit() as (_, db):
        apps = clients.list_apps(db, directory.get_user_by_email(db, owner).id)
    rows = [{"client_id": a.client_id, "name": a.name,
             "type": "public" if a.is_public else "confidential", "org_bound": a.org_bound,
             "redirect_uris": list(a.redirect_uris)} for a in apps]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for row in rows:
        bound = ", org-bound" if row["org_bound"] else ""
        typer.echo(f"{row['client_id']}  {row['name']}  ({row['type']}{bound})  "
                   + " ".join(row["redirect_uris"]))


@app_app.command("delete")
def app_delete(client_id: str) -> None:
    """Delete an app: its tokens, and the agent tokens they minted, stop at once."""
    with unit() as (runtime, db):
        clients.delete_app(db, runtime.deny_list, None, client_id)
    typer.echo(f"deleted {client_id}")
