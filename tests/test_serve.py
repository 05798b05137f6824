"""``scopegate serve`` as operators run it: the real CLI in a subprocess, on loopback.

Two servers for the module (each start costs a second or two): one with default
settings, started with ``FORWARDED_ALLOW_IPS`` set in its environment to show that
uvicorn's own trust list no longer matters, and one with ``SCOPEGATE_TRUSTED_PROXIES``.
The filter and the option assembly are also checked directly, on hand-built records.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

import spec
from scopegate.settings import Settings
from scopegate.store.db import make_engine, make_sessionmaker
from scopegate.store.models import AuditEvent
from scopegate.web.access_log import REDACTED, QueryRedactingFilter, uvicorn_log_config
from scopegate.web.server_options import InvalidTrustedProxyError, server_options
from support.agent import AGENT_MINT_PATH
from support.http import bearer
from support.live_server import HOST, free_port, running, scopegate_env, spawn, wait_ready
from support.settings import SECRET
from support.world import World, build_world, user_token

FORGED_ADDRESS = "203.0.113.9"


@dataclass(frozen=True)
class Served:
    base_url: str
    log: Path
    database_url: str
    token: str  # a member's real sgu_ user token


def _prepared_database(directory: Path, template: Path) -> tuple[str, str]:
    """A migrated SQLite copy holding the standard world, and a member's user token."""
    path = directory / "scopegate.db"
    shutil.copy(template, path)
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            build_world(session)
            token = user_token(session, World.email("member"), spec.ROLE_SCOPES["member"])
    finally:
        engine.dispose()
    return url, token


@contextmanager
def serving(directory: Path, template: Path, extra_env: dict[str, str]) -> Iterator[Served]:
    """Run ``scopegate serve`` on a free loopback port until the block ends."""
    database_url, token = _prepared_database(directory, template)
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    env = scopegate_env({"SCOPEGATE_DATABASE_URL": database_url, "SCOPEGATE_SECRET_KEY": SECRET,
                         "SCOPEGATE_BASE_URL": base_url, **extra_env},
                        drop=("FORWARDED_ALLOW_IPS",))
    log = directory / "server.log"
    argv = [sys.executable, "-m", "scopegate.cli.main", "serve", "--host", HOST,
            "--port", str(port)]
    server = spawn("scopegate serve", argv, port=port, env=env, log=log, cwd=directory)
    with running(server):
        wait_ready([server], "/login", expect=None)
        yield Served(base_url=base_url, log=log, database_url=database_url, token=token)


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory,
                   sqlite_template: Path) -> Iterator[Served]:
    """Default settings; uvicorn's own ``FORWARDED_ALLOW_IPS`` says to trust loopback.
    Text logs: this module reads uvicorn's own access line (JSON logs, where the app's
    access line replaces it, are ``tests/test_json_logs.py``'s)."""
    directory = tmp_path_factory.mktemp("serve-default")
    env = {"FORWARDED_ALLOW_IPS": "127.0.0.1,::1", "SCOPEGATE_LOG_FORMAT": "text"}
    with serving(directory, sqlite_template, env) as s:
        yield s


@pytest.fixture(scope="module")
def proxied_server(tmp_path_factory: pytest.TempPathFactory,
                   sqlite_template: Path) -> Iterator[Served]:
    """Loopback configured as a trusted proxy (and uvicorn's own list pointing elsewhere)."""
    directory = tmp_path_factory.mktemp("serve-proxied")
    env = {"SCOPEGATE_TRUSTED_PROXIES": HOST, "FORWARDED_ALLOW_IPS": "192.0.2.1"}
    with serving(directory, sqlite_template, env) as s:
        yield s


def _recorded_mint_address(server: Served, forwarded_for: str) -> str | None:
    """Mint an agent token sending ``X-Forwarded-For``; the address its audit row holds."""
    session_id = "serve-" + secrets.token_hex(6)
    response = httpx.post(
        server.base_url + AGENT_MINT_PATH.format(org="acme"), json={"sessionId": session_id},
        headers={**bearer(server.token), "X-Forwarded-For": forwarded_for}, timeout=10,
    )
    assert response.status_code == 201, response.text
    engine = make_engine(server.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            rows = session.scalars(select(AuditEvent).where(
                AuditEvent.event == "agent.mint", AuditEvent.session_id == session_id)).all()
    finally:
        engine.dispose()
    assert len(rows) == 1, rows
    return rows[0].ip


def test_token_in_query_string_is_redacted_from_access_log(default_server: Served) -> None:
    session_id = "approval-" + secrets.token_hex(8)
    path = "/api/0/organizations/"
    refused = httpx.get(default_server.base_url + path,
                        params={"access_token": default_server.token, "other": "kept"})
    assert refused.status_code in (400, 401), refused.text  # a token in a URL is no login
    approval = httpx.get(
        default_server.base_url + "/organizations/acme/agent/approve",
        params={"session": session_id, "scopes": "event:write"}, follow_redirects=True,
    )
    # Logged out: redirected to /login?next=<the approval URL, session id and all>.
    assert approval.status_code == 200 and approval.url.path == "/login", approval.url
    assert session_id in str(approval.url)

    # uvicorn's handler writes and flushes the access line before it writes the
    # response, so the file is complete for every request that has been answered.
    log = default_server.log.read_text()
    assert f'"GET {path}?access_token={REDACTED}&other=kept HTTP/1.1" 40' in log, log
    assert f"GET /organizations/acme/agent/approve?session={REDACTED}&scopes=" in log, log
    assert "GET /login?next=" in log, log
    assert default_server.token not in log
    assert default_server.token.removeprefix("sgu_") not in log
    assert session_id not in log


def test_forwarded_for_from_loopback_is_not_trusted_by_default(
    default_server: Served, proxied_server: Served
) -> None:
    assert _recorded_mint_address(default_server, FORGED_ADDRESS) == HOST
    # Positive control: once loopback is a configured proxy, its header is believed.
    assert _recorded_mint_address(proxied_server, FORGED_ADDRESS) == FORGED_ADDRESS


def _access_record(target: str) -> logging.LogRecord:
    """A record shaped like uvicorn's access line."""
    return logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 0, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:50000", "GET", target, "1.1", 200), None,
    )


@pytest.mark.parametrize(("target", "logged"), [
    ("/a?access_token=sgu_x&other=kept", f"/a?access_token={REDACTED}&other=kept"),
    ("/a?token=1&token=2", f"/a?token={REDACTED}&token={REDACTED}"),
    ("/a?Access_Token=x&ACCESS-TOKEN=y", f"/a?Access_Token={REDACTED}&ACCESS-TOKEN={REDACTED}"),
    ("/a?access%5Ftoken=x&access%255Ftoken=y",
     f"/a?access%5Ftoken={REDACTED}&access%255Ftoken={REDACTED}"),
    ("/a?client+secret=x&client_secret[]=y&Session.Id=z",
     f"/a?client+secret={REDACTED}&client_secret[]={REDACTED}&Session.Id={REDACTED}"),
    ("/a?code=c&state=s&id_token=i&refresh_token=r&password=p&csrf_token=t",
     f"/a?code={REDACTED}&state={REDACTED}&id_token={REDACTED}&refresh_token={REDACTED}"
     f"&password={REDACTED}&csrf_token={REDACTED}"),
    ("/a?x=1;session=s", f"/a?x=1;session={REDACTED}"),
    ("/a?sgu_bare", f"/a?{REDACTED}"),
    ("/a?q=sgo_orgtoken", f"/a?q={REDACTED}"),
    ("/a?token", "/a?token"),
    ("/a?&&==&=x&%zz=%", "/a?&&==&=x&%zz=%"),
    ("/login?next=%2Fapprove%3Fsession%3Dsid-1%26scopes%3Dorg%3Aread",
     f"/login?next=/approve%3Fsession%3D{REDACTED}%26scopes%3Dorg:read"),
    ("/a/sgu_inpath/b?other=kept", f"/a/{REDACTED}/b?other=kept"),
    ("/a?other=kept", "/a?other=kept"),
    ("/a", "/a"),
])
def test_filter_redacts_odd_query_strings(target: str, logged: str) -> None:
    record = _access_record(target)
    assert QueryRedactingFilter().filter(record) is True
    assert record.getMessage() == f'127.0.0.1:50000 - "GET {logged} HTTP/1.1" 200'


@pytest.mark.parametrize("args", [
    None, (), {"path": "/a?token=x"}, (b"/a?token=x", 1), ("/a?\udcff=\udcff&token=x",),
    ("/a?" + "&" * 10_000 + "token=x",), (object(),),
])
def test_filter_never_raises_and_never_drops_a_record(args: object) -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 0, "%s", None, None)
    record.args = args  # type: ignore[assignment]
    assert QueryRedactingFilter().filter(record) is True
    if isinstance(record.args, tuple) and record.args and isinstance(record.args[0], str):
        assert "token=x" not in record.args[0]


def test_log_config_puts_the_filter_on_every_uvicorn_handler() -> None:
    config = uvicorn_log_config()
    for handler in config["handlers"].values():
        assert config["filters"][handler["filters"][0]]["()"] is QueryRedactingFilter
    # A copy: uvicorn's module-level default stays as it was.
    from uvicorn.config import LOGGING_CONFIG
    assert "filters" not in LOGGING_CONFIG["handlers"]["access"]


def test_server_options_trust_forwarded_headers_only_from_configured_proxies() -> None:
    default = server_options(Settings(secret_key=SECRET, trusted_proxies=""))
    assert default["proxy_headers"] is False and default["forwarded_allow_ips"] == []
    proxied = server_options(Settings(secret_key=SECRET, trusted_proxies="10.0.0.5, 10.1.0.0/16"))
    assert proxied["proxy_headers"] is True
    assert proxied["forwarded_allow_ips"] == ["10.0.0.5", "10.1.0.0/16"]


@pytest.mark.parametrize("entry", ["*", "proxy.internal", "10.1.0.5/16", "10.0.0.300"])
def test_trusted_proxy_typo_is_refused_not_silently_ignored(entry: str) -> None:
    with pytest.raises(InvalidTrustedProxyError):
        server_options(Settings(secret_key=SECRET, trusted_proxies=f"10.0.0.5,{entry}"))
