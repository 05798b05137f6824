"""OAuth helpers: register a client, PKCE pairs, and a person's trip through consent."""

from __future__ import annotations

import re
import secrets
from html import unescape
from urllib.parse import parse_qs, urlsplit

import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from sqlalchemy.orm import Session

from scopegate.services.oauth import clients

REDIRECT_URI = "http://127.0.0.1:9999/callback"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def register(db: Session, owner_id: int, *, public: bool = False, org_bound: bool = False,
             redirect_uris: tuple[str, ...] = (REDIRECT_URI,),
             name: str = "Deploy dashboard") -> clients.NewClient:
    """A client registered by ``owner_id`` (committed)."""
    new = clients.create_app(db, owner_id=owner_id, name=name, redirect_uris=list(redirect_uris),
                             public=public, org_bound=org_bound)
    db.commit()
    return new


def pkce() -> tuple[str, str]:
    """A PKCE ``(code_verifier, code_challenge)`` pair (S256)."""
    verifier = secrets.token_urlsafe(48)
    return verifier, create_s256_code_challenge(verifier)


def authorize_params(client_id: str, challenge: str, **extra: str) -> dict[str, str]:
    return {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI,
            "scope": "event:read project:read", "state": "st-123", "code_challenge": challenge,
            "code_challenge_method": "S256", **extra}


def consent_form(page: httpx.Response) -> list[tuple[str, str]]:
    """The hidden fields of a consent page (the OAuth parameters and the CSRF token)."""
    assert page.status_code == 200, page.text[:500]
    return [(k, unescape(v)) for k, v in _HIDDEN.findall(page.text)]


def decide(browser: httpx.Client, page: httpx.Response, decision: str,
           orgs: tuple[str, ...] = ("acme",)) -> httpx.Response:
    """Submit a consent page as the signed-in person would."""
    fields = consent_form(page) + [("decision", decision)] + [("orgs", o) for o in orgs]
    action = "/oauth/device" if any(k == "user_code" for k, _ in fields) else "/oauth/authorize"
    data: dict[str, list[str]] = {}
    for key, value in fields:
        data.setdefault(key, []).append(value)
    return browser.post(action, data=data, follow_redirects=False)


def approve(browser: httpx.Client, authorize_url: str,
            orgs: tuple[str, ...] = ("acme",)) -> str:
    """Open ``authorize_url`` signed in, approve; the redirect's ``Location``."""
    page = browser.get(authorize_url, follow_redirects=False)
    answer = decide(browser, page, "approve", orgs)
    assert answer.status_code == 303, answer.text[:500]
    return answer.headers["location"]


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def access_token(browser: httpx.Client, app: clients.NewClient,
                 orgs: tuple[str, ...] = ("acme",), **extra: str) -> str:
    """The signed-in person approves ``app`` (``extra``: more authorization parameters,
    e.g. ``scope`` or ``resource``); the code is exchanged (client_secret_post, or none
    for a public app); the access token."""
    from urllib.parse import urlencode

    verifier, challenge = pkce()
    page = browser.get("/oauth/authorize?" + urlencode(authorize_params(
        app.client.client_id, challenge, **extra)), follow_redirects=False)
    code = query_of(decide(browser, page, "approve", orgs).headers["location"])["code"]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier, "client_id": app.client.client_id}
    if app.client_secret is not None:
        data["client_secret"] = app.client_secret
    answer = browser.post("/oauth/token", data=data)
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]
