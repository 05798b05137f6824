"""Organization roles: Sentry's role table, nested, and never a token-only scope."""

from __future__ import annotations

import pytest

import spec
from scopegate.core.roles import Role, role_scopes


def test_the_roles_are_member_admin_manager_owner():
    assert [role.value for role in Role] == ["member", "admin", "manager", "owner"]


@pytest.mark.parametrize(("role", "expected"), sorted(spec.ROLE_SCOPES.items()))
def test_role_holds_exactly_sentrys_scope_set(role, expected):
    held = role_scopes(role)
    assert held == expected, (
        f"{role}: missing {sorted(expected - held)}, unexpected {sorted(held - expected)}"
    )


def test_a_member_can_read_and_triage_events_create_releases_and_invite():
    held = role_scopes(Role.MEMBER)
    assert {"event:read", "event:write", "event:admin", "project:releases"} <= held
    assert "member:invite" in held
    assert not {"project:write", "org:write", "member:write"} & held


@pytest.mark.parametrize(
    ("lower", "higher", "added"),
    [
        ("member", "admin", {"project:write", "project:admin", "team:write", "team:admin",
                             "org:integrations"}),
        ("admin", "manager", {"org:write", "member:write", "member:admin"}),
        ("manager", "owner", {"org:admin"}),
    ],
)
def test_each_role_adds_exactly_its_scopes_to_the_one_below(lower, higher, added):
    assert role_scopes(higher) - role_scopes(lower) == added
    assert role_scopes(lower) < role_scopes(higher)


@pytest.mark.parametrize("role", spec.ROLES)
def test_no_role_holds_a_token_only_scope(role):
    assert not role_scopes(role) & spec.TOKEN_ONLY_SCOPES


def test_owner_holds_everything_but_the_token_only_scopes():
    assert role_scopes(Role.OWNER) == spec.ALL_SCOPES - spec.TOKEN_ONLY_SCOPES


@pytest.mark.parametrize("role", spec.ROLES)
def test_role_scopes_are_closed_under_the_hierarchy(role):
    # Against the spec's own statement of the hierarchy (not ``registry.expand``, which
    # would only compare the code with itself): every scope a role holds brings all it
    # implies.
    held = role_scopes(role)
    for scope in held:
        assert spec.CLOSURE[scope] <= held, (role, scope, sorted(spec.CLOSURE[scope] - held))


@pytest.mark.parametrize("role", spec.ROLES)
def test_role_scopes_accepts_the_enum_and_its_string(role):
    assert role_scopes(role) == role_scopes(Role(role))


@pytest.mark.parametrize("bogus", ["superuser", "Owner", ""])
def test_an_unknown_role_is_refused(bogus):
    with pytest.raises(ValueError):
        role_scopes(bogus)
