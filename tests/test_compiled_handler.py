"""A compiled route handler answers exactly as FastAPI's own handler does.

``web/compiled_handler.py`` works out a route's parameters once instead of on every
request. Two apps on one database, one with compiled handlers and one with FastAPI's
(``TransactionalRoute.compile_handlers = False``), get the same requests on every compiled
route: good and bad credentials, good and bad path and query parameters. Status, body and
headers (but the date and the request id) must be the same. The hot reads must actually
be compiled, and an app with ``dependency_overrides`` keeps honouring them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.responses import Response

import spec
from scopegate.core.access import OrgAccess
from scopegate.guard.dependencies import Permission
from scopegate.guard.routes import api_routes
from scopegate.web.app import create_app
from scopegate.web.compiled_handler import CompiledHandler
from scopegate.web.transactions import TransactionalRoute
from support.http import bearer
from support.settings import BASE_URL
from support.world import World, org_token, user_token

API = "/api/0"
HOT_READS = {
    "/api/0/organizations/{org}/issues/",
    "/api/0/organizations/{org}/issues/{issue_id}/",
    "/api/0/organizations/{org}/releases/",
}
#: Headers that differ between any two answers.
VOLATILE = {"date", "x-request-id"}
QUERIES = [
    "", "status=resolved", "status=unresolved&page=2&perPage=1", "status=bogus", "page=0",
    "page=abc", "page=100001", "perPage=101", "perPage=1", "per_page=5",
    "page=1&page=2", "query=" + "x" * 300, "query=bench%25", "unknown=1",
]


@pytest.fixture
def compiled_calls(monkeypatch) -> list[str]:
    """The paths a compiled handler answered, in order."""
    calls: list[str] = []
    answer = CompiledHandler.__call__

    async def counted(self: CompiledHandler, request: Request) -> Response:
        calls.append(request.url.path)
        return await answer(self, request)

    monkeypatch.setattr(CompiledHandler, "__call__", counted)
    return calls


def _fill(template: str, org: str = "acme", issue_id: str = "1") -> str:
    return template.replace("{org}", org).replace("{issue_id}", issue_id)


@pytest.fixture
def twin(settings) -> Iterator[TestClient]:
    """An app like ``app`` on the same database, with FastAPI's own handlers."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TransactionalRoute, "compile_handlers", False)
        application = create_app(settings)
        # FastAPI builds an included route's handler when the route is first walked:
        # walk them all now, while the switch is off.
        api_routes(application.routes)
    with TestClient(application, base_url=BASE_URL) as test_client:
        yield test_client
    application.state.runtime.engine.dispose()


def _answer(client: TestClient, path: str, headers: dict[str, str]) -> tuple:
    response = client.get(path, headers=headers, follow_redirects=False)
    kept = sorted((k, v) for k, v in response.headers.items() if k not in VOLATILE)
    return response.status_code, response.content, kept


def _requests(world: World, db, template: str) -> list[tuple[str, dict[str, str]]]:
    owner = bearer(user_token(db, World.email("owner"), spec.ALL_SCOPES))
    narrow = bearer(user_token(db, World.email("member"), {"org:read"}))
    credentials = [owner, narrow, bearer(org_token(db, "acme")), {},
                   bearer("sgu_" + "x" * 40), {"Authorization": "Basic eA=="}]
    issue = str(world.issue_ids[0])
    paths = {
        _fill(template, org, issue_id)
        for org in ("acme", "globex", "nope", "x" * 200)
        for issue_id in (issue, str(world.globex_issue_id), "0", "abc", str(2**40))
    }
    asked = [(path, credentials[0]) for path in sorted(paths)]
    acme = _fill(template, issue_id=issue)
    asked += [(acme, who) for who in credentials[1:]]
    asked += [(f"{acme}?{query}", owner) for query in QUERIES]
    return asked


def _get_templates(app: FastAPI) -> list[str]:
    return sorted(m.path for m in api_routes(app.routes)
                  if m.methods == {"GET"} and isinstance(m.route, TransactionalRoute))


def test_the_hot_reads_are_compiled(client, compiled_calls):
    for template in sorted(HOT_READS):
        compiled_calls.clear()
        client.get(_fill(template))
        assert compiled_calls == [_fill(template)]


def test_compiled_handlers_answer_as_fastapi_does(app, client, twin, db, world,
                                                 compiled_calls):
    statuses = set()
    compared = set()
    for template in _get_templates(app):
        for path, headers in _requests(world, db, template):
            compiled_calls.clear()
            ours = _answer(client, path, headers)
            if not compiled_calls:
                break  # FastAPI's own handler on both sides: nothing to compare
            theirs = _answer(twin, path, headers)
            assert ours == theirs, (path, headers)
            assert compiled_calls == [path.split("?")[0]]  # the twin's was FastAPI's
            statuses.add(ours[0])
            compared.add(template)
    assert compared >= HOT_READS
    assert {200, 400, 401, 403, 404} <= statuses  # 400: a bad parameter (web/errors.py)


def test_an_override_of_a_compiled_dependency_is_honoured(app, client, db, world,
                                                          compiled_calls):
    route = next(m.route for m in api_routes(app.routes)
                 if m.path == f"{API}/organizations/{{org}}/issues/" and "GET" in m.methods)
    permission = next(d.call for d in route.dependant.dependencies
                      if isinstance(d.call, Permission))
    fixed: list[OrgAccess] = []

    async def remembered(request: Request, org: str) -> OrgAccess:
        if not fixed:
            fixed.append(await permission(request, org))
        return fixed[0]

    path = f"{API}/organizations/acme/issues/"
    owner = bearer(user_token(db, World.email("owner"), spec.ALL_SCOPES))
    assert client.get(path).status_code == 401
    app.dependency_overrides[permission] = remembered
    try:
        assert client.get(path, headers=owner).status_code == 200
        assert client.get(path).status_code == 200  # the override answers, not the gate
        assert client.get(path + "?page=0").status_code == 400  # params still validated
    finally:
        app.dependency_overrides.clear()
    assert client.get(path).status_code == 401
    assert compiled_calls == [path] * 5  # no request fell back to FastAPI's handler
