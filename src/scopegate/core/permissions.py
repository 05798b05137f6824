"""Per-endpoint permission declarations: HTTP method -> scopes, any one of which suffices.

Each endpoint declares a ``ScopeMap`` next to its route (Sentry's ``scope_map``). The
decision itself is ``ScopeMap.decide``; nothing else compares scopes to endpoints.
A method the map does not declare is denied (fail closed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from scopegate.core import scopes as registry
from scopegate.core.token_kinds import TokenKind


@dataclass(frozen=True)
class Rule:
    """What one method needs: any of ``scopes`` (least privilege first), and what it does."""

    scopes: tuple[str, ...]
    action: str

    def __post_init__(self) -> None:
        registry.validate(self.scopes)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    #: The scopes that would have sufficed (for the ``insufficient_scope`` challenge).
    sufficient: tuple[str, ...] = ()


_UNDECLARED = Decision(False, ())


@dataclass(frozen=True)
class ScopeMap:
    """Method -> ``Rule`` for one endpoint.

    ``org_scoped`` endpoints are decided against the caller's access in one
    organization; the others (``GET /organizations/``, my tokens) only need an
    authenticated caller of one of ``kinds`` (``None`` kind = a browser session).
    """

    rules: Mapping[str, Rule]
    org_scoped: bool = True
    kinds: frozenset[TokenKind | None] | None = field(default=None)
    #: Method -> (its scopes, the allow, the deny): decisions are made once, here, and
    #: handed out on every request (a frozen dataclass costs a microsecond to build).
    _answers: dict[str, tuple[tuple[str, ...], Decision, Decision]] = field(
        init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        answers = {}
        for method in {*self.rules, "HEAD"}:
            rule = self.rule(method)
            if rule is not None:
                scopes = rule.scopes
                answers[method] = (scopes, Decision(True, scopes if scopes else ()),
                                   Decision(False, scopes))
        object.__setattr__(self, "_answers", answers)

    def rule(self, method: str) -> Rule | None:
        method = method.upper()
        if method == "HEAD":
            method = "GET"
        return self.rules.get(method)

    def decide(self, method: str, held: Iterable[str]) -> Decision:
        """Allow when ``held`` contains any scope the method accepts; deny otherwise."""
        answer = self._answers.get(method)
        if answer is None:
            answer = self._answers.get(method.upper())
            if answer is None:
                return _UNDECLARED
        scopes, allow, deny = answer
        if not scopes:
            return allow
        held_set = held if isinstance(held, frozenset) else frozenset(held)
        for scope in scopes:
            if scope in held_set:
                return allow
        return deny

    def admits_kind(self, kind: TokenKind | None) -> bool:
        return self.kinds is None or kind in self.kinds


def actions_for_scope(scope: str, maps: Iterable[ScopeMap]) -> list[str]:
    """The concrete actions ``scope`` unlocks, derived from the declared endpoint maps.

    Used by the approval page: "event:write — resolve, ignore and reassign issues".
    """
    writes_only = scope not in registry.READ_SCOPES
    seen: dict[str, None] = {}
    for scope_map in maps:
        for method, rule in scope_map.rules.items():
            if writes_only and method in ("GET", "HEAD"):
                continue  # reads come with every agent token; list what is new
            if scope in rule.scopes:
                seen.setdefault(rule.action, None)
    return list(seen)


def least_sufficient(sufficient: Iterable[str], held: Iterable[str]) -> str | None:
    """The first (least privileged) sufficient scope within ``held``, if any."""
    held_set = registry.expand(held)
    for scope in sufficient:
        if scope in held_set:
            return scope
    return None
