"""``scopegate resource-server``: register, list and remove resource servers (a fixed
public interface).

A resource server is a service in another process that trusts this scopegate server
(``scopegate.guard`` in remote mode). ``add AUDIENCE --name NAME`` prints
``client_id=…``, ``client_secret=…`` (shown once; scopegate keeps its SHA-256) and
``audience=…``, one ``key=value`` per line, or one JSON object with ``--json``.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from scopegate.cli.units import echo_fields, unit
from scopegate.services import resource_servers

resource_server_app = typer.Typer(
    help="Resource servers: services in other processes that verify scopegate credentials.",
    no_args_is_help=True)


@resource_server_app.command("add")
def resource_server_add(
    audience: Annotated[str, typer.Argument(
        help="The service's own absolute URL (https, or http on loopback): the aud its "
             "tokens carry.")],
    name: Annotated[str, typer.Option(help="A name for operators.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Register a resource server; print its client_id and client_secret (once)."""
    with unit() as (runtime, db):
        new = resource_servers.register(db, runtime.settings, audience, name)
    printed = {"client_id": new.client_id, "client_secret": new.client_secret,
               "audience": new.audience}
    echo_fields(printed, as_json)


@resource_server_app.command("list")
def resource_server_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List the registered resource servers (never their secrets)."""
    with unit() as (_, db):
        servers = resource_servers.list_servers(db)
    rows = [{"audience": s.audience, "name": s.name, "client_id": s.client_id,
             "created_at": s.created_at.isoformat()} for s in servers]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for row in rows:
        typer.echo(f"{row['audience']}  {row['name']}  client_id={row['client_id']}  "
                   f"created {row['created_at']}")


@resource_server_app.command("remove")
def resource_server_remove(
    audience: Annotated[str, typer.Argument(help="The audience it was registered with.")],
) -> None:
    """Remove a resource server: its credential stops working, and OAuth tokens issued
    for its audience are revoked."""
    with unit() as (runtime, db):
        resource_servers.remove(db, runtime.deny_list, audience)
    typer.echo(f"removed {audience}")
