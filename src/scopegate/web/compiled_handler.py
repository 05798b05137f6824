"""A route's request handler with its parameters worked out once, at build time.

FastAPI's ``solve_dependencies`` re-derives, on every request and for every parameter,
facts that never change: whether the annotation is a sequence, a model or JSON, which
aliases to read, whether a callable is a coroutine or a generator. That is about 25 µs
per parameter, a fifth of a warm read's time on the demo's issue list (four query
parameters and the ``org`` path parameter). A route whose dependency tree is simple
(path and query parameters of single values, the ``Request``, async sub-dependencies of
the same kind, an async endpoint that returns a ``Response``) is compiled here: those
facts are computed once with FastAPI's own functions, and each request runs only the
lookups and FastAPI's own validation, so answers and validation errors are FastAPI's.
The order is FastAPI's too: sub-dependencies first (a 401 before a validation error), a
sub-dependency whose own parameters fail is not called. Anything else (bodies, headers,
cookies, yield or sync dependencies, security scopes, background tasks, FastAPI's
telemetry, an override that is not simple) goes through FastAPI's handler.

This leans on FastAPI internals, so ``pyproject.toml`` pins FastAPI's minor version and
``tests/test_compiled_handler.py`` compares both handlers on every compiled route.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import Response

try:
    from fastapi._compat import Undefined
    from fastapi.dependencies.models import (
        _is_async_gen_callable,
        _is_coroutine_callable,
        _is_gen_callable,
    )
    from fastapi.dependencies.utils import (
        _get_param_aliases,
        _get_param_model,
        _is_json_field,
        _validate_value_with_model_field,
        field_annotation_is_sequence,
        get_dependant,
    )
    from fastapi.routing import _effective_route_context_var, _extract_endpoint_context
    from fastapi.telemetry._api import _get_request_telemetry, _validation_failed
except ImportError:  # another FastAPI: every route keeps FastAPI's own handler
    SUPPORTED = False
else:
    SUPPORTED = True

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class _Param:
    field: Any  # fastapi's ModelField
    name: str
    location: str  # "path" or "query"
    keys: tuple[str, ...]  # request keys to try, in FastAPI's order of preference


@dataclass(frozen=True)
class _Node:
    """One dependant (the endpoint or a sub-dependency), compiled."""

    call: Callable[..., Awaitable[Any]]
    name: str | None
    path: str | None
    scope: Any
    subs: tuple[_Node, ...]
    path_params: tuple[_Param, ...]
    query_params: tuple[_Param, ...]
    request_names: tuple[str, ...]
    calls: frozenset[Any] = field(default_factory=frozenset)


class _NotSimple(Exception):
    """The dependant needs something only FastAPI's own solver does."""


def _param(f: Any) -> _Param:
    info = f.field_info
    if (_get_param_model(f) is not None or _is_json_field(f)
            or field_annotation_is_sequence(info.annotation)):
        raise _NotSimple(f.name)
    keys = tuple(key for _, key in _get_param_aliases(f))
    return _Param(field=f, name=f.name, location=info.in_.value, keys=keys)


def _compile(dependant: Any, *, seen: set[int]) -> _Node:
    d = dependant
    call = d.call
    if (d.header_params or d.cookie_params or d.body_params or d.websocket_param_name
            or d.response_param_name or d.background_tasks_param_name
            or d.security_scopes_param_name or getattr(d, "concurrency", None) is not None
            or call is None or not _is_coroutine_callable(call)
            or _is_gen_callable(call) or _is_async_gen_callable(call)):
        raise _NotSimple(repr(call))
    if id(call) in seen:  # FastAPI would answer the second use from its cache
        raise _NotSimple(f"{call!r} twice")
    seen.add(id(call))
    subs = tuple(_compile(sub, seen=seen) for sub in d.dependencies)
    names = tuple(n for n in (d.request_param_name, d.http_connection_param_name) if n)
    calls = frozenset({call}).union(*(sub.calls for sub in subs))
    return _Node(
        call=call, name=d.name, path=d.path, scope=d.scope, subs=subs,
        path_params=tuple(_param(f) for f in d.path_params),
        query_params=tuple(_param(f) for f in d.query_params),
        request_names=names, calls=calls,
    )


def _read(params: tuple[_Param, ...], received: Mapping[str, Any], values: dict[str, Any],
          errors: list[Any]) -> None:
    """FastAPI's ``request_params_to_args`` for single-valued path or query params."""
    own: dict[str, Any] = {}
    for p in params:
        key = p.keys[0]
        if len(p.keys) > 1:
            key = next((k for k in p.keys if k in received), key)
        # ``_get_multidict_value`` for a single-valued, non-JSON field (``_param``):
        value = received.get(key)
        if value is None:
            value = Undefined
        solved, problems = _validate_value_with_model_field(
            field=p.field, value=value, values=own, loc=(p.location, key))
        if problems:
            errors.extend(problems)
        else:
            own[p.name] = solved
    values.update(own)


class CompiledHandler:
    """The request handler of one route whose dependency tree ``_compile`` accepted."""

    def __init__(self, root: _Node, fallback: Handler, overrides_provider: Any) -> None:
        self.root = root
        self.fallback = fallback
        self.overrides_provider = overrides_provider
        self._overridden: dict[tuple[Any, Any], _Node | None] = {}

    async def __call__(self, request: Request) -> Response:
        overrides = getattr(self.overrides_provider, "dependency_overrides", None) or {}
        if _get_request_telemetry() is not None or (
                overrides and not self._overrides_simple(self.root, overrides)):
            return await self.fallback(request)
        errors: list[Any] = []
        values = await self._solve(self.root, request, overrides, errors)
        if errors:
            context = _extract_endpoint_context(self.root.call)
            mount = request.scope.get("root_path", "").rstrip("/")
            context["path"] = f"{request.method} {mount}{self.root.path}"
            failure = RequestValidationError(errors, body=None, endpoint_ctx=context)
            _validation_failed(failure)
            raise failure
        response = await self.root.call(**values)
        if not isinstance(response, Response):
            raise TypeError(f"{self.root.path}: a compiled endpoint must return a Response")
        return response

    async def _solve(self, node: _Node, request: Request, overrides: Mapping[Any, Any],
                     errors: list[Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for sub in node.subs:
            use = self._override(sub, overrides[sub.call]) if sub.call in overrides else sub
            if use is None:  # _overrides_simple said otherwise: a bug, not a request's fault
                raise RuntimeError(f"{self.root.path}: an override changed mid-request")
            own_errors: list[Any] = []
            arguments = await self._solve(use, request, overrides, own_errors)
            if own_errors:
                errors.extend(own_errors)
                continue
            solved = await use.call(**arguments)
            if sub.name is not None:
                values[sub.name] = solved
        if node.path_params:
            _read(node.path_params, request.path_params, values, errors)
        if node.query_params:
            _read(node.query_params, request.query_params, values, errors)
        for name in node.request_names:
            values[name] = request
        return values

    def _override(self, node: _Node, replacement: Any) -> _Node | None:
        """The compiled dependant FastAPI would build for an overridden dependency."""
        key = (node.call, replacement)
        if key not in self._overridden:
            dependant = get_dependant(path=node.path or "", call=replacement,
                                      name=node.name, scope=node.scope)
            try:
                self._overridden[key] = _compile(dependant, seen=set())
            except _NotSimple:
                self._overridden[key] = None
        return self._overridden[key]

    def _overrides_simple(self, node: _Node, overrides: Mapping[Any, Any]) -> bool:
        if overrides.keys().isdisjoint(node.calls):
            return True
        for sub in node.subs:
            use = self._override(sub, overrides[sub.call]) if sub.call in overrides else sub
            if use is None or not self._overrides_simple(use, overrides):
                return False
        return True


def compiled_handler(route: Any, fallback: Handler) -> Handler | None:
    """``route``'s compiled handler, or ``None`` when FastAPI's own must answer.

    ``route`` is an ``APIRoute``; under an included router FastAPI builds the handler
    from the route's effective context (the router's prefix and dependencies), which is
    what is compiled then."""
    if not SUPPORTED:
        return None
    effective = _effective_route_context_var.get()
    if effective is not None and effective.original_route is route:
        route = effective
    if route.body_field is not None or not _returns_response(route.dependant.call):
        return None
    try:
        root = _compile(route.dependant, seen=set())
    except _NotSimple:
        return None
    return CompiledHandler(root, fallback, route.dependency_overrides_provider)


def _returns_response(call: Any) -> bool:
    try:
        returns = inspect.signature(call).return_annotation
    except (TypeError, ValueError):
        return False
    return isinstance(returns, type) and issubclass(returns, Response)


__all__ = ["SUPPORTED", "CompiledHandler", "compiled_handler"]
