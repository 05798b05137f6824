"""Endpoint permission maps, access assembly, and the org token format (all pure core)."""

from __future__ import annotations

import base64
import json

import pytest

import spec
from scopegate.core import org_token_format
from scopegate.core.access import Access, Principal, Refusal, assemble_access
from scopegate.core.permissions import Rule, ScopeMap, actions_for_scope, least_sufficient
from scopegate.core.roles import Role
from scopegate.core.scopes import UnknownScopeError
from scopegate.core.token_kinds import TokenKind

# ---------------------------------------------------------------------------------------
# ScopeMap.decide: any one of the method's scopes suffices; undeclared methods fail closed.

ISSUE = ScopeMap(
    {
        "GET": Rule(("event:read", "event:write", "event:admin"), "view issues"),
        "PUT": Rule(("event:write", "event:admin"), "resolve issues"),
        "POST": Rule((), "anyone authenticated"),
    }
)


@pytest.mark.parametrize(
    ("method", "held", "allowed"),
    [
        ("GET", {"event:read"}, True),
        ("GET", {"event:admin"}, True),
        ("GET", {"org:read", "project:admin"}, False),
        ("GET", set(), False),
        ("PUT", {"event:read"}, False),
        ("PUT", {"event:write"}, True),
        ("PUT", {"event:admin", "org:read"}, True),
        ("POST", set(), True),
        ("DELETE", spec.ALL_SCOPES, False),
        ("PATCH", spec.ALL_SCOPES, False),
        ("OPTIONS", spec.ALL_SCOPES, False),
    ],
)
def test_decide_allows_when_any_accepted_scope_is_held(method, held, allowed):
    assert ISSUE.decide(method, held).allowed is allowed


def test_a_denial_names_the_scopes_that_would_suffice():
    decision = ISSUE.decide("PUT", {"event:read"})
    assert not decision.allowed
    assert decision.sufficient == ("event:write", "event:admin")


def test_an_undeclared_method_is_denied_and_names_nothing():
    decision = ISSUE.decide("DELETE", spec.ALL_SCOPES)
    assert decision.allowed is False
    assert decision.sufficient == ()


@pytest.mark.parametrize("held", [set(), {"event:read"}, {"event:write"}])
def test_head_is_decided_as_get(held):
    assert ISSUE.decide("HEAD", held) == ISSUE.decide("GET", held)
    assert ISSUE.rule("HEAD") is ISSUE.rule("GET")


def test_head_without_a_get_rule_is_denied():
    post_only = ScopeMap({"POST": Rule(("org:write",), "create")})
    assert not post_only.decide("HEAD", spec.ALL_SCOPES).allowed


def test_methods_are_case_insensitive():
    assert ISSUE.decide("put", {"event:write"}).allowed
    assert ISSUE.rule("get") is ISSUE.rule("GET")


def test_a_rule_naming_an_unknown_scope_cannot_be_declared():
    with pytest.raises(UnknownScopeError) as raised:
        Rule(("event:read", "event:resolve"), "typo")
    assert raised.value.unknown == ["event:resolve"]


@pytest.mark.parametrize(
    ("kinds", "kind", "admitted"),
    [
        (None, None, True),
        (None, TokenKind.ORG, True),
        (frozenset({None, TokenKind.USER}), None, True),
        (frozenset({None, TokenKind.USER}), TokenKind.USER, True),
        (frozenset({None, TokenKind.USER}), TokenKind.ORG, False),
        (frozenset({None, TokenKind.USER}), TokenKind.AGENT, False),
        (frozenset({TokenKind.USER}), None, False),
    ],
)
def test_admits_kind_only_lists_declared_credential_kinds(kinds, kind, admitted):
    scope_map = ScopeMap({"GET": Rule((), "x")}, org_scoped=False, kinds=kinds)
    assert scope_map.admits_kind(kind) is admitted


@pytest.mark.parametrize(
    ("sufficient", "held", "expected"),
    [
        (("event:write", "event:admin"), {"event:admin"}, "event:write"),
        (("event:write", "event:admin"), {"event:read"}, None),
        (("project:releases", "project:admin", "org:ci"), {"org:ci"}, "org:ci"),
        (("project:releases", "project:admin"), {"project:admin", "project:releases"},
         "project:releases"),
    ],
)
def test_least_sufficient_picks_the_first_sufficient_scope_held(sufficient, held, expected):
    assert least_sufficient(sufficient, held) == expected


def test_actions_for_a_write_scope_list_only_what_it_adds_beyond_reads():
    other = ScopeMap({"GET": Rule(("event:read",), "view issues")})
    assert actions_for_scope("event:write", [ISSUE, other]) == ["resolve issues"]
    assert actions_for_scope("org:ci", [ISSUE, other]) == []


def test_actions_for_a_read_scope_list_the_reads_once_each():
    other = ScopeMap({"GET": Rule(("event:read",), "view issues")})
    assert actions_for_scope("event:read", [ISSUE, other]) == ["view issues"]


# ---------------------------------------------------------------------------------------
# assemble_access: the one place a credential meets an organization.

ACME, GLOBEX = 1, 2


def _person(kind, scopes=None, org_id=None):
    return Principal(kind=kind, credential_ref="test:1", user_id=7, org_id=org_id, scopes=scopes)


@pytest.mark.parametrize(
    ("scopes", "role", "expected"),
    [
        # A browser session is not scope-limited: the role decides alone.
        (None, "member", spec.ROLE_SCOPES["member"]),
        (None, "owner", spec.ROLE_SCOPES["owner"]),
        # A token's scopes, closed under the hierarchy, intersected with the role.
        ({"event:admin"}, "member", {"event:admin", "event:write", "event:read"}),
        ({"org:admin"}, "member", {"org:read"}),
        ({"org:admin"}, "manager", {"org:write", "org:read", "org:integrations"}),
        ({"org:admin"}, "owner", spec.CLOSURE["org:admin"]),
        ({"member:write"}, "member", {"member:read", "member:invite"}),
        ({"project:write"}, "member", {"project:read"}),
        (spec.ALL_SCOPES, "admin", spec.ROLE_SCOPES["admin"]),
        (spec.READ_SCOPES, "owner", spec.READ_SCOPES),
        # Token-only scopes never reach a person.
        ({"org:ci", "project:distribution"}, "owner", set()),
    ],
)
def test_a_person_credential_gets_its_scopes_intersected_with_the_role(scopes, role, expected):
    principal = _person(TokenKind.USER if scopes is not None else None,
                        frozenset(scopes) if scopes is not None else None)
    access = assemble_access(principal, ACME, Role(role))
    assert isinstance(access, Access)
    assert access.scopes == expected
    assert access.role is Role(role)
    assert access.org_id == ACME


@pytest.mark.parametrize("kind", [None, TokenKind.USER, TokenKind.OAUTH_ACCESS, TokenKind.AGENT])
def test_a_person_who_is_not_a_member_is_refused(kind):
    principal = _person(kind, None if kind is None else frozenset({"org:read"}))
    assert assemble_access(principal, ACME, None) is Refusal.NOT_MEMBER


def test_a_person_credential_bound_to_one_org_is_refused_in_another_even_for_a_member():
    agent = _person(TokenKind.AGENT, frozenset({"event:read"}), org_id=ACME)
    assert assemble_access(agent, GLOBEX, Role.OWNER) is Refusal.OTHER_ORG
    own = assemble_access(agent, ACME, Role.MEMBER)
    assert isinstance(own, Access)
    assert own.scopes == {"event:read"}


def _org_token(org_id, scopes=frozenset({"org:ci"}), kind=TokenKind.ORG):
    return Principal(kind=kind, credential_ref="org_token:1", org_id=org_id, scopes=scopes)


def test_an_org_token_gets_its_own_scopes_in_its_own_org_whatever_the_role():
    for role in (None, Role.MEMBER, Role.OWNER):
        access = assemble_access(_org_token(ACME), ACME, role)
        assert isinstance(access, Access)
        assert access.scopes == spec.ORG_TOKEN_SCOPES
        assert access.role is None


def test_an_org_token_is_refused_in_another_org():
    assert assemble_access(_org_token(ACME), GLOBEX, None) is Refusal.OTHER_ORG
    assert assemble_access(_org_token(ACME), GLOBEX, Role.OWNER) is Refusal.OTHER_ORG


def test_an_integration_token_gets_its_own_scopes_closed_under_the_hierarchy():
    token = _org_token(ACME, frozenset({"project:admin", "org:ci"}), TokenKind.INTEGRATION)
    access = assemble_access(token, ACME, None)
    assert isinstance(access, Access)
    assert access.scopes == spec.CLOSURE["project:admin"] | {"org:ci"}


def test_a_credential_with_no_person_and_no_org_is_refused():
    unbound = _org_token(None)
    assert assemble_access(unbound, ACME, Role.OWNER) is Refusal.OTHER_ORG


# ---------------------------------------------------------------------------------------
# Token prefixes and the org token format.


def test_only_user_oauth_and_agent_tokens_act_for_a_person():
    assert {k for k in TokenKind if k.acts_for_person} == {
        TokenKind.USER,
        TokenKind.OAUTH_ACCESS,
        TokenKind.AGENT,
    }


PAYLOAD = org_token_format.OrgTokenPayload(org="acme", url="https://sg.example", iat=1700000000)
SECRET = "0123456789abcdef" * 4


def test_org_token_round_trips_payload():
    token = org_token_format.encode(PAYLOAD, SECRET)
    assert token.startswith("sgo_")
    assert token.endswith("_" + SECRET)
    assert org_token_format.decode(token) == PAYLOAD


def test_org_token_round_trips_when_its_base64url_body_contains_underscores():
    payload = next(
        p
        for p in (
            org_token_format.OrgTokenPayload(org=f"org-{n}", url="https://x.test/?", iat=n)
            for n in range(10_000)
        )
        if "_" in org_token_format.encode(p, SECRET)[len("sgo_"):-len(SECRET) - 1]
    )
    assert org_token_format.decode(org_token_format.encode(payload, SECRET)) == payload


def test_org_token_secret_may_not_contain_the_separator():
    with pytest.raises(ValueError):
        org_token_format.encode(PAYLOAD, "abc_def")


def _body(obj) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "sgo_",
        "sgo__",
        "sgo_nounderscore",
        "sgo__" + SECRET,
        "sgo_" + _body({"org": "a", "url": "u", "iat": 1}) + "_",
        "sgu_" + _body({"org": "a", "url": "u", "iat": 1}) + "_" + SECRET,
        "sgo_!!!not-base64!!!_" + SECRET,
        "sgo_" + _body(b"not json") + "_" + SECRET,
        "sgo_" + _body(b"\xff\xfe\xfd") + "_" + SECRET,
        "sgo_" + _body(None) + "_" + SECRET,
        "sgo_" + _body([1, 2, 3]) + "_" + SECRET,
        "sgo_" + _body("a string") + "_" + SECRET,
        "sgo_" + _body({"org": "a", "url": "u"}) + "_" + SECRET,
        "sgo_" + _body({"org": "a", "iat": 1}) + "_" + SECRET,
        "sgo_" + _body({"org": "a", "url": "u", "iat": "yesterday"}) + "_" + SECRET,
        "sgo_" + _body({"org": "a", "url": "u", "iat": None}) + "_" + SECRET,
        "sgo_" + _body({"org": "a" * 2000, "url": "u", "iat": 1}) + "_" + SECRET,
    ],
)
def test_a_malformed_org_token_decodes_to_none(token):
    assert org_token_format.decode(token) is None
