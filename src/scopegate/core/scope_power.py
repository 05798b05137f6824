"""How powerful a scope is, and the least powerful set of scopes that serves a record
of calls.

The power of a scope is what it unlocks according to the endpoint permission
declarations (every ``ScopeMap``): the (endpoint, method) pairs that accept it or a
scope it implies. So the order of scopes is derived from the declarations, never
written by hand: ``org:ci`` is weaker than ``project:releases`` because the release
endpoints accept both but only the latter may delete a release.

``recommend`` finds, among the scopes whose power lies within what the credential was
granted, a set that would have admitted every observed call and unlocks the fewest
(endpoint, method) pairs (then: the fewest scopes; then: the most of those the
credential used). The search is exact (branch and bound over the calls); the registry
is small and a credential's calls touch a handful of endpoints.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scopegate.core import scopes as registry
from scopegate.core.permissions import ScopeMap

Unlock = tuple[int, str]


class ScopePower:
    """The power of every scope in the registry, for one set of endpoint declarations."""

    def __init__(self, maps: Iterable[ScopeMap]) -> None:
        unlocks: dict[str, set[Unlock]] = {scope: set() for scope in registry.ORDERED}
        distinct = list({id(m): m for m in maps}.values())  # a map shared by routes: once
        for index, scope_map in enumerate(distinct):
            for method, rule in scope_map.rules.items():
                accepted = frozenset(rule.scopes)
                for scope in registry.ORDERED:
                    if registry.expand({scope}) & accepted:
                        unlocks[scope].add((index, method))
        self._unlocks = {scope: frozenset(found) for scope, found in unlocks.items()}

    def of(self, scopes: Iterable[str]) -> frozenset[Unlock]:
        """What ``scopes`` unlock together (the hierarchy applied)."""
        result: set[Unlock] = set()
        for scope in registry.expand(scopes):
            result |= self._unlocks.get(scope, frozenset())
        return frozenset(result)

    def weaker_first(self, scopes: Iterable[str]) -> list[str]:
        """``scopes`` from least to most powerful (registry order breaks ties)."""
        rank = {s: i for i, s in enumerate(registry.ORDERED)}
        return sorted(set(scopes), key=lambda s: (len(self.of({s})), rank.get(s, len(rank))))


@dataclass(frozen=True)
class Recommendation:
    """The least powerful set that would have admitted every observed call.

    ``narrower`` says whether it is smaller than what was granted: it unlocks less, or
    as much with fewer scopes (a granted scope that unlocks nothing); when it is not, no
    smaller set exists. ``scopes`` is empty when no observed call needed a scope;
    ``observed_calls`` counts the distinct calls (by their sufficient sets) that did."""

    scopes: frozenset[str]
    narrower: bool
    observed_calls: int


def admits(scope: str, sufficient: frozenset[str]) -> bool:
    """Whether holding ``scope`` would have admitted a call that accepted ``sufficient``."""
    return bool(registry.expand({scope}) & sufficient)


def recommend(power: ScopePower, granted: Iterable[str],
              observed: Sequence[frozenset[str]], *,
              candidates: Iterable[str] | None = None,
              prefer: Iterable[str] = ()) -> Recommendation:
    """The least powerful set of ``candidates`` (default: every scope) admitting each
    call in ``observed`` (each given as the scopes its endpoint accepted), never
    unlocking anything ``granted`` does not. A call whose endpoint needs no scope (an
    empty set) is admitted by any set and constrains nothing. Between sets of equal
    power and size, the one with more of ``prefer`` (the scopes that admitted the
    calls) wins: ``project:releases`` rather than an equally strong ``project:write``
    for a token that used the former."""
    granted = frozenset(granted)
    preferred = frozenset(prefer)
    granted_power = power.of(granted)
    pool = [s for s in power.weaker_first(candidates if candidates is not None
                                          else registry.ORDERED)
            if power.of({s}) <= granted_power]
    calls = [call for call in dict.fromkeys(observed) if call]
    if not calls:
        return Recommendation(frozenset(), bool(granted), 0)
    best: tuple[int, int, int, frozenset[str]] | None = None

    def search(chosen: frozenset[str], unlocked: frozenset[Unlock]) -> None:
        nonlocal best
        cost = (len(unlocked), len(chosen), len(chosen - preferred))
        if best is not None and cost > best[:3]:
            return  # adding scopes only adds to each part of the cost
        uncovered = next((c for c in calls if not any(admits(s, c) for s in chosen)), None)
        if uncovered is None:
            if best is None or cost < best[:3]:
                best = (*cost, chosen)
            return
        if best is not None and cost[:2] >= best[:2]:
            return  # one more scope: more scopes for no less power
        for scope in pool:
            if scope not in chosen and admits(scope, uncovered):
                search(chosen | {scope}, unlocked | power.of({scope}))

    search(frozenset(), frozenset())
    if best is None:  # a call no candidate admits: keep what was granted
        return Recommendation(granted, False, len(calls))
    narrower = (best[0], best[1]) < (len(granted_power), len(essential(granted)))
    return Recommendation(best[3], narrower, len(calls))


def essential(scopes: Iterable[str]) -> frozenset[str]:
    """``scopes`` without those another of them implies (``project:read`` beside
    ``project:write``): what counts when comparing the size of two sets."""
    given = frozenset(scopes)
    return frozenset(s for s in given
                     if not any(s in registry.expand({o}) for o in given if o != s))
