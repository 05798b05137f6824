"""``scopegate deployhook``: install the built-in deploy hook, narrow old installations
(a fixed public interface).

``install`` prints ``installation=…`` and ``webhook_secret=…``, one per line (the secret
once: scopegate keeps it sealed). The hook's tokens, one per environment, are never
shown: the hook presents them itself.
"""

from __future__ import annotations

from typing import Annotated

import typer

from scopegate.cli.units import echo_fields, err, unit
from scopegate.services import deploy_hook, directory
from scopegate.services.sealed_secrets import Sealer
from scopegate.settings import get_settings

deployhook_app = typer.Typer(help="The built-in deploy hook.", no_args_is_help=True)


@deployhook_app.command("install")
def deployhook_install(
    org: str,
    project: Annotated[str, typer.Option("--project", help="The project's slug.")],
    environment: Annotated[list[str] | None, typer.Option(
        "--environment",
        help="A deployment environment to keep a token for; repeat. "
             "Default: production and preview.")] = None,
) -> None:
    """Install the deploy hook for ORG's project: an org:ci integration with one token
    per environment. Prints the installation id and the webhook secret, once."""
    settings = get_settings()
    with unit(settings) as (_, db):
        new = deploy_hook.install(
            db, directory.get_org(db, org).id, project, Sealer(settings.secret()),
            environments=environment or deploy_hook.DEFAULT_ENVIRONMENTS)
        printed = {"installation": new.installation.id, "webhook_secret": new.webhook_secret}
    echo_fields(printed)


@deployhook_app.command("narrow")
def deployhook_narrow(org: str) -> None:
    """Narrow ORG's deploy hook installations to exactly org:ci (their tokens keep
    working, with org:ci only); each change is audited as scopes.narrow."""
    with unit() as (_, db):
        narrowed = [row.slug for row in
                    deploy_hook.narrow_installations(db, directory.get_org(db, org).id)]
    for slug in narrowed:
        typer.echo(f"narrowed={slug}")
    if not narrowed:
        err.print("every installation already holds only org:ci")
