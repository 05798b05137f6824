"""``scopegate deployhook``: install the built-in deploy hook, narrow old installations."""

from __future__ import annotations

import typer

deployhook_app = typer.Typer(help="The built-in deploy hook.", no_args_is_help=True)
