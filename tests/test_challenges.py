"""RFC 6750 ``WWW-Authenticate: Bearer`` challenges: 401 invalid_token, 403 insufficient_scope."""

from __future__ import annotations

import re

import pytest

from scopegate.core.challenges import insufficient_scope, invalid_token

# RFC 6750 section 3: auth-param values are quoted strings without '"' or '\'.
_PARAM = r'[a-z_]+="[\x20\x21\x23-\x5b\x5d-\x7e]*"'
CHALLENGE = re.compile(rf"Bearer {_PARAM}(?:, {_PARAM})*")


def test_invalid_token_is_a_401_with_the_exact_header():
    challenge = invalid_token("The access token expired.")
    assert challenge.status == 401
    assert challenge.headers == {
        "WWW-Authenticate": 'Bearer realm="scopegate", error="invalid_token", '
        'error_description="The access token expired."'
    }
    assert challenge.body == {"detail": "The access token expired.", "error": "invalid_token"}


def test_invalid_token_uses_the_given_realm():
    header = invalid_token("gone", realm="acme-api").headers["WWW-Authenticate"]
    assert header.startswith('Bearer realm="acme-api", error="invalid_token"')


def test_insufficient_scope_is_a_403_naming_what_would_suffice_in_registry_order():
    challenge = insufficient_scope(["event:admin", "event:write"])
    assert challenge.status == 403
    assert challenge.headers == {
        "WWW-Authenticate": 'Bearer realm="scopegate", error="insufficient_scope", '
        'error_description="The credential lacks a scope this request needs.", '
        'scope="event:write event:admin"'
    }
    assert challenge.body["error"] == "insufficient_scope"
    assert challenge.body["scope"] == "event:write event:admin"
    assert challenge.body["detail"]


def test_insufficient_scope_header_and_body_name_the_same_scopes():
    challenge = insufficient_scope(["project:admin", "org:ci", "project:releases"])
    header = challenge.headers["WWW-Authenticate"]
    assert f'scope="{challenge.body["scope"]}"' in header
    assert set(challenge.body["scope"].split()) == {"project:admin", "org:ci", "project:releases"}


@pytest.mark.parametrize(
    ("description", "quoted"),
    [
        ('say "hi"', "say hi"),
        ("back\\slash", "backslash"),
        ('"\\"', ""),
        ("line\r\nInjected: yes", "lineInjected: yes"),
        ("tab\there", "tabhere"),
        ("caf\u00e9 \u2603", "caf "),
        ("plain text, with comma", "plain text, with comma"),
    ],
)
def test_header_values_drop_quotes_backslashes_and_non_printables(description, quoted):
    challenge = invalid_token(description)
    header = challenge.headers["WWW-Authenticate"]
    assert CHALLENGE.fullmatch(header), header
    assert f'error_description="{quoted}"' in header
    # The JSON body is not a header: it keeps the description as given.
    assert challenge.body["detail"] == description


def test_a_hostile_realm_cannot_break_out_of_its_quotes():
    header = invalid_token("x", realm='evil", error="none').headers["WWW-Authenticate"]
    assert CHALLENGE.fullmatch(header), header
    assert header.startswith('Bearer realm="evil, error=none", error="invalid_token"')


def test_insufficient_scope_header_is_well_formed_for_every_description():
    header = insufficient_scope(["org:read"], description='a "b" \\ c').headers[
        "WWW-Authenticate"
    ]
    assert CHALLENGE.fullmatch(header), header
