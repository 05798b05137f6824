"""``scopegate integration``: internal integrations and their tokens (a fixed public
interface). ``token create`` prints the ``sgi_`` secret once, alone on stdout."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from sqlalchemy.orm import Session

from scopegate.cli.units import err, unit
from scopegate.core import scopes as registry
from scopegate.services import directory, integrations
from scopegate.services.errors import NotFound
from scopegate.store.integration_models import Integration

integration_app = typer.Typer(help="Internal integrations (an organization's own apps).",
                              no_args_is_help=True)
token_app = typer.Typer(help="Integration tokens.", no_args_is_help=True)
integration_app.add_typer(token_app, name="token")


def parse_scopes(text: str) -> frozenset[str]:
    """A scope list typed by an operator; unknown scopes are named back and exit 2."""
    try:
        return registry.parse(text)
    except registry.UnknownScopeError as error:
        err.print("[red]error:[/red] unknown scope(s): " + escape(", ".join(error.unknown)))
        raise typer.Exit(2) from None


def find_integration(db: Session, org_id: int, name: str) -> Integration:
    """By slug, or by the slug its name makes."""
    try:
        return integrations.get_integration(db, org_id, name)
    except NotFound:
        return integrations.get_integration(db, org_id, integrations.slug_for(name))


@integration_app.command("create")
def integration_create(
    org: str,
    name: str,
    scopes: Annotated[str, typer.Option(help='Space-separated, e.g. "org:ci".')] = "",
) -> None:
    """Create an internal integration NAME in ORG holding SCOPES."""
    chosen = parse_scopes(scopes)
    with unit() as (_, db):
        row = integrations.create_integration(db, directory.get_org(db, org).id, name, chosen)
        typer.echo(f"created integration {row.slug} ({registry.format_scopes(row.scopes)})")


@token_app.command("create")
def integration_token_create(
    org: str,
    name: str,
    token_name: Annotated[str, typer.Option("--name", help="A label for the token.")] = "",
) -> None:
    """Create a token for integration NAME of ORG and print its secret once."""
    with unit() as (_, db):
        row = find_integration(db, directory.get_org(db, org).id, name)
        minted = integrations.create_token(db, row, name=token_name)
    typer.echo(minted.token)
