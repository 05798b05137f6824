"""``scopegate``: serve, migrate, and create users, organizations, projects and tokens.

Commands that create a credential print its secret exactly once, on stdout.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from scopegate.cli.apps import app_app
from scopegate.cli.audit import audit_app
from scopegate.cli.deploy_hook import deployhook_app
from scopegate.cli.integrations import integration_app
from scopegate.cli.metrics_directory import metrics_directory
from scopegate.cli.resource_servers import resource_server_app
from scopegate.cli.units import err, store
from scopegate.core import scopes as registry
from scopegate.runtime.prepare import prepare
from scopegate.services import credentials, directory, issues
from scopegate.services.keys import SecretMismatch
from scopegate.settings import Settings, get_settings
from scopegate.store.db import make_sessionmaker

app = typer.Typer(help="scopegate: least-privilege credentials for agents.", no_args_is_help=True)
user_app = typer.Typer(help="Users.", no_args_is_help=True)
org_app = typer.Typer(help="Organizations.", no_args_is_help=True)
member_app = typer.Typer(help="Memberships.", no_args_is_help=True)
project_app = typer.Typer(help="Projects.", no_args_is_help=True)
issue_app = typer.Typer(help="Issues.", no_args_is_help=True)
token_app = typer.Typer(help="User tokens.", no_args_is_help=True)
orgtoken_app = typer.Typer(help="Org tokens.", no_args_is_help=True)
keys_app = typer.Typer(help="Agent-token signing keys.", no_args_is_help=True)
for name, sub in [("app", app_app), ("audit", audit_app), ("deployhook", deployhook_app),
                  ("integration", integration_app), ("keys", keys_app),
                  ("user", user_app), ("org", org_app), ("member", member_app),
                  ("project", project_app), ("issue", issue_app), ("token", token_app),
                  ("orgtoken", orgtoken_app), ("resource-server", resource_server_app)]:
    app.add_typer(sub, name=name)

console = Console()
#: How long a worker may take to answer uvicorn's supervisor before it is killed as hung.
WORKER_HEALTHCHECK_SECONDS = 30


def _prepare(settings: Settings) -> None:
    """``prepare``, with a wrong server secret told in one line (exit 2), not a trace."""
    try:
        prepare(settings)
    except SecretMismatch as error:
        err.print(f"[red]error:[/red] {escape(str(error))}")
        raise typer.Exit(2) from None


@app.command()
def migrate() -> None:
    """Bring the database schema up to date and create the first signing key (under a
    lock: concurrent starts do not race)."""
    _prepare(get_settings())
    console.print("database is up to date")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    demo: Annotated[bool, typer.Option(help="Seed a demo organization on an empty database.")]
    = False,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
) -> None:
    """Prepare the database, optionally seed the demo organization, and serve HTTP."""
    import uvicorn

    from scopegate.services.demo import seed_demo
    from scopegate.web.app import create_app
    from scopegate.web.server_options import InvalidTrustedProxyError, server_options

    settings = get_settings()
    try:
        options = server_options(settings)
    except InvalidTrustedProxyError as error:
        err.print(f"[red]error:[/red] {escape(str(error))}")
        raise typer.Exit(2) from None
    if workers > 1 and settings.mcp_process_sessions:
        # A session held in one worker's memory is unknown to the others.
        err.print("[red]error:[/red] SCOPEGATE_MCP_PROCESS_SESSIONS needs --workers 1")
        raise typer.Exit(2)
    _prepare(settings)  # before any worker starts, under the start-up lock
    if demo:
        with store(settings) as db:
            logins = seed_demo(db)
        if logins:
            console.print("[bold]Demo organization 'acme' created.[/bold] Log in as:")
            for login in logins:
                console.print(f"  {login.role.value:8} {login.email}  password: {login.password}")
        else:
            console.print("Database already has data; demo not seeded. Demo logins, if it was "
                          "seeded before: owner@acme.test / demo-password")
    console.print(f"Web:     {settings.base_url}/login")
    console.print(f"API:     {settings.base_url}/api/0/")
    console.print(f"OpenAPI: {settings.base_url}/openapi.json")
    console.print(f"OAuth:   {settings.base_url}/.well-known/oauth-authorization-server")
    mode = f"proxy to {settings.upstream_issuer}" if settings.proxy_mode else "direct"
    console.print(f"MCP:     {settings.mcp_resource}  ({mode})")
    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, **options)
        return
    with metrics_directory(workers):
        # Each worker builds its own app (and Runtime) from the same environment. A new
        # worker imports the whole app before it can answer the supervisor's health check:
        # on a busy host that takes longer than uvicorn's 5 s, which would kill it as hung.
        uvicorn.run("scopegate.web.app:create_app", factory=True, workers=workers,
                    host=host, port=port, timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
                    **options)  # in prometheus_client multiprocess mode: see metrics_directory


@user_app.command("create")
def user_create(
    email: str,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True)],
    name: str = "",
) -> None:
    """Create a user (password hashed with Argon2)."""
    with store() as db:
        user = directory.create_user(db, email, password, name=name)
        console.print(f"created user {user.email}")


@org_app.command("create")
def org_create(slug: str, owner: Annotated[str, typer.Option(help="Owner's email.")],
               name: str = "") -> None:
    """Create an organization owned by OWNER."""
    with store() as db:
        org = directory.create_org(db, slug, directory.get_user_by_email(db, owner), name or None)
        console.print(f"created organization {org.slug}")


@member_app.command("add")
def member_add(org: str, email: str,
               role: Annotated[str, typer.Option(help="member, admin, manager or owner")]) -> None:
    """Add EMAIL to ORG with ROLE (or change their role)."""
    with store() as db:
        directory.add_member(db, directory.get_org(db, org), directory.get_user_by_email(db, email),
                             role)
        console.print(f"{email} is now {role} of {org}")


@project_app.command("create")
def project_create(org: str, slug: str, name: str = "") -> None:
    """Create project SLUG in ORG."""
    with store() as db:
        directory.create_project(db, directory.get_org(db, org), slug, name or None)
        console.print(f"created project {org}/{slug}")


@issue_app.command("create")
def issue_create(org: str, project: str, title: str) -> None:
    """Create an issue in ORG/PROJECT."""
    with store() as db:
        organization = directory.get_org(db, org)
        issue = issues.create_issue(db, directory.get_project(db, organization.id, project), title)
        console.print(f"created issue {issue.id}")


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Option(help="The token owner's email.")],
    scopes: Annotated[str, typer.Option(help='Space-separated, e.g. "org:read event:write".')],
    name: str = "",
) -> None:
    """Create a user token and print its secret once."""
    try:
        chosen = registry.parse(scopes)
    except registry.UnknownScopeError as error:
        err.print("[red]error:[/red] unknown scope(s): " + escape(", ".join(error.unknown)))
        raise typer.Exit(2) from None
    with store() as db:
        minted = credentials.create_user_token(
            db, directory.get_user_by_email(db, user), chosen, name=name
        )
        typer.echo(minted.token)


@orgtoken_app.command("create")
def orgtoken_create(org: str, name: str = "") -> None:
    """Create an org token (scope org:ci) for ORG and print its secret once."""
    settings = get_settings()
    with store(settings) as db:
        minted = credentials.create_org_token(
            db, directory.get_org(db, org), None, settings.base_url, name=name
        )
        typer.echo(minted.token)


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Make a new active signing key. Old public keys stay published (JWKS) until every
    token they signed has expired."""
    from scopegate.services import audit
    from scopegate.services.keys import KeyRing

    settings = get_settings()
    with store(settings) as db:
        ring = KeyRing(make_sessionmaker(db.get_bind()), settings.secret())
        kid = ring.rotate(db, settings.agent_token_max_ttl_seconds)
        audit.record(db, audit.Event.KEY_ROTATE, org_id=None, user_id=None, detail=f"kid={kid}")
    console.print(f"new active key: {kid}")


@keys_app.command("list")
def keys_list() -> None:
    """List signing keys: kid, state, and until when a retired key stays published."""
    from sqlalchemy import select

    from scopegate.store.models import SigningKey

    with store() as db:
        for key in db.scalars(select(SigningKey).order_by(SigningKey.created_at)):
            state = "active" if key.active else (
                f"retired, published until {key.retire_after:%Y-%m-%d %H:%M UTC}"
                if key.retire_after else "inactive")
            console.print(f"{key.kid}  created {key.created_at:%Y-%m-%d %H:%M UTC}  {state}")


if __name__ == "__main__":
    app()
