"""The recommended minimal set, on the real endpoint declarations (pure: no database).

The power of a scope is derived from every API route's ``ScopeMap``; the calls below are
given as the sufficient sets the spec states for each endpoint (hand-written, as in the
access matrix), never read back from the code's maps.
"""

from __future__ import annotations

import itertools
import random

import pytest

from scopegate.core import scopes as registry
from scopegate.core.access import Principal
from scopegate.core.scope_power import ScopePower, admits, essential, recommend
from scopegate.core.scope_usage import (
    admitted_by,
    candidates_for,
    kind_of,
    row_id,
    subject_of,
)
from scopegate.core.token_kinds import TokenKind
from scopegate.web.api.declarations import scope_maps

# What each endpoint accepts, from the spec (Sentry's release permission: CI may create
# and update releases, never delete them).
RELEASE_WRITE = frozenset({"project:write", "project:admin", "project:releases", "org:ci"})
RELEASE_READ = RELEASE_WRITE | {"project:read"}
RELEASE_DELETE = frozenset({"project:admin", "project:releases"})
EVENT_READ = frozenset({"event:read", "event:write", "event:admin"})
EVENT_WRITE = frozenset({"event:write", "event:admin"})
PROJECT_READ = frozenset({"project:read", "project:write", "project:admin"})
ORG_READ = frozenset({"org:read", "org:write", "org:admin"})
TOKEN = registry.ALL_SCOPES
PERSON = registry.ALL_SCOPES - registry.TOKEN_ONLY_SCOPES
CI_TOKEN = frozenset({"project:releases", "project:read", "project:write"})


@pytest.fixture(scope="module")
def power() -> ScopePower:
    return ScopePower(scope_maps())


def test_the_order_of_scopes_is_derived_from_the_declarations(power: ScopePower) -> None:
    # org:ci unlocks the release endpoints but DELETE; project:releases unlocks them all.
    assert power.of({"org:ci"}) < power.of({"project:releases"})
    assert power.of({"project:read"}) < power.of({"project:write"}) < power.of(
        {"project:admin"})
    assert power.of({"event:read"}) < power.of({"event:write"})
    assert power.weaker_first({"project:releases", "org:ci"}) == ["org:ci", "project:releases"]
    # A scope no endpoint accepts unlocks nothing.
    assert power.of({"member:admin"}) == frozenset()


def test_a_ci_token_that_only_created_releases_needs_only_org_ci(power: ScopePower) -> None:
    rec = recommend(power, CI_TOKEN, [RELEASE_WRITE, RELEASE_WRITE], candidates=TOKEN)
    assert rec.scopes == {"org:ci"}
    assert rec.narrower
    assert rec.observed_calls == 1


def test_a_person_gets_no_token_only_scope(power: ScopePower) -> None:
    # The same calls by a person's token: no role holds org:ci. project:releases (which
    # admitted them) and project:write unlock as much; the one it used wins the tie.
    rec = recommend(power, CI_TOKEN, [RELEASE_WRITE], candidates=PERSON,
                    prefer={"project:releases"})
    assert rec.scopes == {"project:releases"}
    assert rec.narrower
    assert len(power.of({"project:write"})) == len(power.of({"project:releases"}))


def test_reading_and_creating_releases_still_needs_no_more_than_org_ci(
    power: ScopePower,
) -> None:
    rec = recommend(power, CI_TOKEN, [RELEASE_READ, RELEASE_WRITE], candidates=TOKEN)
    assert rec.scopes == {"org:ci"}


def test_deleting_a_release_needs_project_releases(power: ScopePower) -> None:
    rec = recommend(power, CI_TOKEN, [RELEASE_WRITE, RELEASE_DELETE], candidates=TOKEN)
    assert rec.scopes == {"project:releases"} and rec.narrower


def test_when_no_smaller_set_exists_it_says_so(power: ScopePower) -> None:
    held = frozenset({"project:releases"})
    rec = recommend(power, held, [RELEASE_WRITE, RELEASE_DELETE], candidates=TOKEN)
    assert rec.scopes == held
    assert not rec.narrower
    issues = recommend(power, {"event:read"}, [EVENT_READ], candidates=PERSON)
    assert issues.scopes == {"event:read"} and not issues.narrower


def test_a_credential_never_used_gets_no_scopes(power: ScopePower) -> None:
    rec = recommend(power, CI_TOKEN, [], candidates=TOKEN)
    assert rec.scopes == frozenset() and rec.observed_calls == 0 and rec.narrower


def test_calls_that_need_no_scope_constrain_nothing(power: ScopePower) -> None:
    rec = recommend(power, {"event:write"}, [frozenset(), EVENT_READ], candidates=PERSON)
    assert rec.scopes == {"event:read"} and rec.observed_calls == 1
    only_free = recommend(power, {"event:write"}, [frozenset()], candidates=PERSON)
    assert only_free.scopes == frozenset() and only_free.observed_calls == 0


def test_the_recommendation_never_unlocks_more_than_was_granted(power: ScopePower) -> None:
    # Holding project:write, CI calls are served by project:write itself: org:ci would
    # be weaker but project:releases (which would admit too) could delete releases.
    rec = recommend(power, {"project:write"}, [RELEASE_WRITE], candidates=PERSON)
    assert rec.scopes == {"project:write"} and not rec.narrower
    assert power.of(rec.scopes) <= power.of({"project:write"})


def test_several_resources_need_several_scopes(power: ScopePower) -> None:
    granted = {"org:admin", "project:admin", "event:admin"}
    rec = recommend(power, granted, [EVENT_WRITE, PROJECT_READ, ORG_READ], candidates=PERSON)
    assert rec.scopes == {"event:write", "project:read", "org:read"}


def test_a_call_no_candidate_admits_keeps_what_was_granted(power: ScopePower) -> None:
    # A person's token holding only org:ci (no role holds it): nothing to recommend.
    rec = recommend(power, {"org:ci"}, [RELEASE_WRITE], candidates=PERSON)
    assert rec.scopes == {"org:ci"} and not rec.narrower


def test_a_granted_scope_that_unlocks_nothing_is_still_a_smaller_set(
    power: ScopePower,
) -> None:
    rec = recommend(power, {"org:ci", "project:distribution"}, [RELEASE_WRITE],
                    candidates=TOKEN)
    assert rec.scopes == {"org:ci"} and rec.narrower
    # ... but a scope implied by another granted one is not counted twice.
    same = recommend(power, {"project:write", "project:read"}, [RELEASE_WRITE, PROJECT_READ],
                     candidates=PERSON)
    assert same.scopes == {"project:write"} and not same.narrower
    assert essential({"project:write", "project:read"}) == {"project:write"}


def test_the_search_is_exact_against_brute_force(power: ScopePower) -> None:
    """Random grants and calls: the answer admits every call, stays within the grant,
    and no set of up to three candidates does so with less power (then fewer scopes)."""
    calls = [RELEASE_READ, RELEASE_WRITE, RELEASE_DELETE, EVENT_READ, EVENT_WRITE,
             PROJECT_READ, ORG_READ, frozenset({"org:write", "org:admin"}),
             frozenset({"org:integrations", "org:write", "org:admin"})]
    rng = random.Random(10)
    scopes = sorted(registry.ALL_SCOPES)
    for _ in range(150):
        granted = frozenset(rng.sample(scopes, rng.randint(1, 6)))
        observed = [c for c in rng.sample(calls, rng.randint(1, 4))
                    if registry.expand(granted) & c]
        rec = recommend(power, granted, observed, candidates=TOKEN)
        assert all(any(admits(s, c) for s in rec.scopes) for c in observed)
        assert power.of(rec.scopes) <= power.of(granted)
        cost = (len(power.of(rec.scopes)), len(rec.scopes))
        pool = [s for s in scopes if power.of({s}) <= power.of(granted)]
        for size in range(1, 4):
            for other in itertools.combinations(pool, size):
                if all(any(admits(s, c) for s in other) for c in observed):
                    assert cost <= (len(power.of(other)), size), (granted, observed, other)


def test_admitted_by_names_the_granted_scope_that_let_the_call_in() -> None:
    order = ("project:releases", "project:write", "project:admin", "org:ci")
    held = registry.expand(CI_TOKEN)
    assert admitted_by(order, CI_TOKEN, held) == "project:releases"
    admin = frozenset({"project:admin"})
    assert admitted_by(order, admin, registry.expand(admin)) == "project:admin"
    # A person whose role lacks project:releases: their project:write admitted it.
    assert admitted_by(order, CI_TOKEN, held - {"project:releases"}) == "project:write"
    assert admitted_by((), CI_TOKEN, held) == ""


def test_subjects_name_the_credential_that_holds_the_scopes() -> None:
    assert subject_of(Principal(kind=None, credential_ref="session:1", user_id=1)) is None
    integration = Principal(kind=TokenKind.INTEGRATION, credential_ref="integration_token:9",
                            org_id=1, integration_id=4)
    assert subject_of(integration) == "integration:4"
    agent = Principal(kind=TokenKind.AGENT, credential_ref="agent_token:x", user_id=7,
                      session_id="s1")
    assert subject_of(agent) == "agent_session:7:s1"
    oauth = Principal(kind=TokenKind.OAUTH_ACCESS, credential_ref="oauth_token:3:ab",
                      user_id=7, session_id="oauth-grant-3")
    assert subject_of(oauth) == "oauth:oauth-grant-3"
    assert subject_of(Principal(kind=TokenKind.ORG, credential_ref="org_token:5")) == (
        "org_token:5")
    assert kind_of("user_token:12:abcdef") == "user_token"
    assert row_id("user_token:12:abcdef") == 12 and row_id("integration:4") == 4
    assert row_id("oauth:oauth-grant-3") is None
    assert "org:ci" in candidates_for("integration:4")
    assert "org:ci" not in candidates_for("agent_session:7:s1")
