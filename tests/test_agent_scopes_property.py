"""Property tests of the agent-scope arithmetic: no input raises a token above its person.

The expected sets are computed from the hand-written tables in ``spec`` (roles, closure,
read scopes), never from ``scopegate.core``'s own constants, so a wrong constant cannot
agree with itself. The bound checked everywhere is the design's::

    minted ⊆ (READ_SCOPES ∪ grant) ∩ access ∩ requested
    access  = role scopes ∩ expand(credential scopes)

where ``grant`` is taken with its hierarchy (a grant of ``event:admin`` also carries
``event:write``, which is weaker). The last test drives the real HTTP mint endpoint.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import timedelta

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

import spec
from scopegate.core.access import Access, Principal, assemble_access
from scopegate.core.grants import cap_approval, merge_grant, mintable_scopes
from scopegate.core.roles import Role
from scopegate.core.token_kinds import TokenKind
from scopegate.services import directory
from scopegate.store.models import WriteGrant
from scopegate.store.types import utcnow
from scopegate.web.app import create_app
from support.agent import mint_agent
from support.http import bearer
from support.settings import BASE_URL, make_settings
from support.world import World, build_world_quick, user_token

SCOPES = sorted(spec.ALL_SCOPES)
WRITE_SCOPES = spec.ALL_SCOPES - spec.READ_SCOPES

scope_sets = st.frozensets(st.sampled_from(SCOPES))
roles = st.sampled_from(spec.ROLES)
#: ``None``: the caller did not narrow (``requestedScopes`` omitted).
requested_sets = st.none() | scope_sets
grants = st.none() | scope_sets


def closure(scopes: Iterable[str]) -> frozenset[str]:
    """The hierarchy closure, by the spec's table."""
    return frozenset(itertools.chain.from_iterable(spec.CLOSURE[s] for s in scopes))


def spec_access(role: str, credential: frozenset[str] | None) -> frozenset[str]:
    """What a person's credential holds in the org: role ∩ expand(credential scopes)."""
    held = closure(spec.ROLE_SCOPES[role])
    return held if credential is None else held & closure(credential)


def bound(
    access: frozenset[str], grant: frozenset[str] | None, requested: frozenset[str] | None
) -> frozenset[str]:
    """(READ_SCOPES ∪ grant) ∩ access ∩ requested."""
    result = (spec.READ_SCOPES | closure(grant or ())) & access
    return result if requested is None else result & requested


def core_access(role: str, credential: frozenset[str] | None) -> Access:
    kind = None if credential is None else TokenKind.USER
    principal = Principal(kind=kind, credential_ref="test", user_id=1, scopes=credential)
    result = assemble_access(principal, 7, Role(role))
    assert isinstance(result, Access), result
    return result


# --- core/access.py -----------------------------------------------------------------------


@given(role=roles, credential=st.none() | scope_sets)
def test_a_persons_access_is_role_intersect_expanded_credential(
    role: str, credential: frozenset[str] | None
) -> None:
    assert core_access(role, credential).scopes == spec_access(role, credential)


@given(role=roles, credential=scope_sets)
def test_a_persons_access_never_holds_a_token_only_scope(
    role: str, credential: frozenset[str]
) -> None:
    assert not core_access(role, credential).scopes & spec.TOKEN_ONLY_SCOPES


# --- core/grants.py: minting --------------------------------------------------------------


@given(role=roles, credential=st.none() | scope_sets, grant=grants, requested=requested_sets)
def test_minted_scopes_obey_the_bound(
    role: str,
    credential: frozenset[str] | None,
    grant: frozenset[str] | None,
    requested: frozenset[str] | None,
) -> None:
    access = core_access(role, credential).scopes
    minted = mintable_scopes(access, grant, requested)
    assert minted <= bound(access, grant, requested)
    # ... and it is exactly the bound: reads are given, grants honored within access.
    assert minted == bound(access, grant, requested)


@given(role=roles, credential=st.none() | scope_sets, grant=grants, requested=requested_sets)
def test_minted_scopes_never_exceed_access_or_request(
    role: str,
    credential: frozenset[str] | None,
    grant: frozenset[str] | None,
    requested: frozenset[str] | None,
) -> None:
    access = core_access(role, credential).scopes
    minted = mintable_scopes(access, grant, requested)
    assert minted <= access
    assert minted <= spec_access(role, credential)
    if requested is not None:
        assert minted <= requested


@given(role=roles, credential=st.none() | scope_sets, grant=grants, requested=requested_sets)
def test_minted_never_holds_a_write_scope_absent_from_the_grant(
    role: str,
    credential: frozenset[str] | None,
    grant: frozenset[str] | None,
    requested: frozenset[str] | None,
) -> None:
    minted = mintable_scopes(core_access(role, credential).scopes, grant, requested)
    assert minted & WRITE_SCOPES <= closure(grant or ())
    if not grant:
        assert minted <= spec.READ_SCOPES


@given(role=roles, grant=grants, extra=scope_sets)
def test_a_wider_request_or_grant_never_yields_more_than_access(
    role: str, grant: frozenset[str] | None, extra: frozenset[str]
) -> None:
    """Asking for everything with a grant of everything is still capped at the role."""
    access = core_access(role, None).scopes
    everything = frozenset(SCOPES)
    assert mintable_scopes(access, everything, everything) == closure(spec.ROLE_SCOPES[role])
    widened = mintable_scopes(access, (grant or frozenset()) | extra, None)
    assert mintable_scopes(access, grant, None) <= widened <= access


# --- core/grants.py: approving and merging ------------------------------------------------


@given(role=roles, requested=scope_sets)
def test_cap_approval_never_stores_a_scope_the_approver_lacks(
    role: str, requested: frozenset[str]
) -> None:
    approver = spec_access(role, None)
    stored = cap_approval(requested, core_access(role, None).scopes)
    assert stored <= approver
    assert stored <= requested
    assert stored == requested & approver
    assert not stored & spec.TOKEN_ONLY_SCOPES


@given(existing=st.none() | scope_sets, approved=scope_sets)
def test_merge_is_a_union(existing: frozenset[str] | None, approved: frozenset[str]) -> None:
    assert merge_grant(existing, approved) == (existing or frozenset()) | approved


@given(approvals=st.lists(scope_sets, min_size=1, max_size=8), order=st.randoms())
def test_merging_approvals_in_any_order_gives_their_union(
    approvals: list[frozenset[str]], order
) -> None:
    shuffled = list(approvals)
    order.shuffle(shuffled)
    merged: frozenset[str] | None = None
    for approved in shuffled:
        merged = merge_grant(merged, approved)
    assert merged == frozenset().union(*approvals)


# --- the same bound through the real mint endpoint (SQLite) -------------------------------


def test_http_mint_obeys_the_bound(sqlite_url: str) -> None:
    """Random role, user-token scopes, requested scopes and a stored grant: the token the
    endpoint returns never holds more than (READ ∪ grant) ∩ role ∩ token ∩ requested.

    The grant row is written directly (it may hold scopes beyond the role: a grant
    approved before a downgrade); the person's role is changed for each example.
    """
    app = create_app(make_settings(sqlite_url))
    counter = itertools.count()
    try:
        with TestClient(app, base_url=BASE_URL) as client, app.state.runtime.factory() as db:
            world = build_world_quick(db)
            acme = directory.get_org(db, "acme")
            member = directory.get_user(db, world.users["member"])

            @settings(max_examples=40, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])
            @given(role=roles, credential=scope_sets.filter(bool), grant=grants,
                   requested=requested_sets)
            def check(
                role: str,
                credential: frozenset[str],
                grant: frozenset[str] | None,
                requested: frozenset[str] | None,
            ) -> None:
                session_id = f"prop-{next(counter)}"
                directory.add_member(db, acme, member, role)
                if grant is not None:
                    db.add(WriteGrant(
                        org_id=acme.id, user_id=member.id, session_id=session_id,
                        scopes=grant, created_at=utcnow(), updated_at=utcnow(),
                        expires_at=utcnow() + timedelta(days=1),
                    ))
                db.commit()
                token = user_token(db, World.email("member"), credential)
                body: dict[str, object] = {"sessionId": session_id}
                if requested is not None:
                    body["requestedScopes"] = sorted(requested)
                response = mint_agent(client, bearer(token), **body)
                assert response.status_code == 201, response.text
                minted = frozenset(response.json()["scopes"])
                limit = bound(spec_access(role, credential), grant, requested)
                assert minted <= limit, (minted - limit, role, credential, grant, requested)
                assert minted == limit
                stored = db.scalar(select(WriteGrant.scopes).where(
                    WriteGrant.session_id == session_id))
                assert stored == grant, "minting must not touch the grant"

            check()
    finally:
        app.state.runtime.engine.dispose()
