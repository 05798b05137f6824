"""Layers import downward only: core (pure) <- services <- runtime <- guard <- web/cli;
store below services."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "scopegate"

#: For each layer, the scopegate layers it may import.
ALLOWED = {
    "core": {"core"},
    "store": {"store", "core"},
    "services": {"services", "store", "core", "settings"},
    "runtime": {"runtime", "services", "store", "core", "settings"},
    "guard": {"guard", "runtime", "services", "store", "core", "settings"},
    "web": {"web", "guard", "runtime", "services", "store", "core", "settings"},
    "cli": {"cli", "web", "guard", "runtime", "services", "store", "core", "settings"},
    #: Settings validate with core's pure definitions (a rate limit's "N/S" form).
    "settings": {"core"},
    #: The agent-side client ships to agents: nothing of the server, only pure core.
    "client": {"client", "core"},
}
#: Third-party packages that mean I/O or a framework: never in core.
CORE_FORBIDDEN = {"sqlalchemy", "fastapi", "starlette", "redis", "httpx", "psycopg", "jwt",
                  "cryptography", "alembic", "uvicorn", "typer", "jinja2", "os", "socket"}


def _modules() -> list[tuple[str, Path]]:
    result = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC)
        if relative.parts[0] in ("__init__.py",):
            continue
        layer = relative.parts[0].removesuffix(".py")
        result.append((layer, path))
    return result


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _id(value: object) -> str:
    return str(value).split("scopegate/")[-1]


@pytest.mark.parametrize(("layer", "path"), _modules(), ids=_id)
def test_module_imports_only_lower_layers(layer: str, path: Path) -> None:
    if layer not in ALLOWED:
        pytest.skip(f"{layer} is not a layer")
    wrong = set()
    for name in _imports(path):
        parts = name.split(".")
        if parts[0] == "scopegate" and len(parts) > 1 and parts[1] not in ALLOWED[layer]:
            wrong.add(name)
        if layer == "core" and parts[0] in CORE_FORBIDDEN:
            wrong.add(name)
    assert not wrong, f"{path.relative_to(SRC)} ({layer}) imports {sorted(wrong)}"


def test_the_layer_table_covers_every_package() -> None:
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(ALLOWED), packages - set(ALLOWED)


def test_the_client_needs_only_httpx() -> None:
    """``scopegate.client`` runs in an agent's process: the standard library, httpx and
    anyio (httpx's own dependency), nothing the server needs."""
    import sys

    allowed = set(sys.stdlib_module_names) | {"httpx", "anyio", "scopegate", "__future__"}
    for path in sorted((SRC / "client").rglob("*.py")):
        wrong = {name for name in _imports(path) if name.split(".")[0] not in allowed}
        assert not wrong, f"{path.relative_to(SRC)} imports {sorted(wrong)}"
