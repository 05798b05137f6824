"""HTTP helpers for the in-process client: bearer headers, the login form, challenges."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from support.settings import PASSWORD

_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
_CHALLENGE_PARAM = r'[a-z_]+="[^"\\]*"'
_CHALLENGE = re.compile(rf"Bearer {_CHALLENGE_PARAM}(?:, {_CHALLENGE_PARAM})*")


def bearer(token: str) -> dict[str, str]:
    """The ``Authorization`` header presenting ``token``."""
    return {"Authorization": f"Bearer {token}"}


def login(client: TestClient, email: str, password: str = PASSWORD) -> str:
    """Log ``client`` in through the login form; return the session's CSRF token."""
    page = client.get("/login")
    form_csrf = _CSRF_INPUT.search(page.text)
    assert form_csrf, "login form has no CSRF field"
    response = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": form_csrf.group(1)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    account = client.get("/account")
    match = _CSRF_INPUT.search(account.text)
    assert match, "account page has no CSRF field"
    return match.group(1)


def parse_challenge(header: str | None) -> dict[str, str]:
    """The parameters of an RFC 6750 ``Bearer`` challenge; fails on anything malformed."""
    assert header is not None, "no WWW-Authenticate header"
    assert _CHALLENGE.fullmatch(header), f"not an RFC 6750 challenge: {header!r}"
    return dict(re.findall(r'([a-z_]+)="([^"\\]*)"', header))
