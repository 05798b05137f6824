"""An OAuth access token acts for its person like a user token: it mints agent tokens
(``act`` = the client, whatever the body claims), and when the person revokes the app,
its access tokens and the agent tokens they minted stop at once."""

from __future__ import annotations

import base64
import json

from fastapi.testclient import TestClient

from support.agent import mint_agent
from support.http import bearer
from support.oauth import access_token

ISSUES = "/api/0/organizations/acme/issues/"


def _claims(token: str) -> dict:
    payload = token.removeprefix("sga_").split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_an_oauth_token_mints_agent_tokens_acting_as_its_client(signed_in: TestClient,
                                                                confidential) -> None:
    access = access_token(signed_in, confidential)
    minted = mint_agent(signed_in, bearer(access), sessionId="cli-1", agent="someone-else")
    assert minted.status_code == 201, minted.text
    claims = _claims(minted.json()["token"])
    assert claims["act"]["sub"] == confidential.client.client_id
    assert claims["exp"] <= _claims_exp_bound(signed_in, access)
    assert set(minted.json()["scopes"]) <= {"event:read", "project:read"}
    agent = minted.json()["token"]
    assert signed_in.get(ISSUES, headers=bearer(agent)).status_code == 200


def _claims_exp_bound(web: TestClient, access: str) -> int:
    # The access token's own expiry, as introspection would tell its client.
    from scopegate.services.oauth import tokens

    app = web.app
    with app.state.runtime.factory() as db:  # type: ignore[attr-defined]
        found = tokens.find_token(db, access)
    assert found is not None
    return int(found.expires_at.timestamp())


def test_revoking_an_authorized_app_stops_its_tokens_and_their_agent_tokens(
        signed_in: TestClient, confidential) -> None:
    access = access_token(signed_in, confidential)
    agent = mint_agent(signed_in, bearer(access), sessionId="cli-2").json()["token"]
    assert signed_in.get(ISSUES, headers=bearer(agent)).status_code == 200

    from scopegate.services.oauth import tokens

    runtime = signed_in.app.state.runtime  # type: ignore[attr-defined]
    with runtime.factory() as db:
        member = tokens.find_token(db, access)
        assert member is not None
        assert tokens.revoke_authorization(db, runtime.deny_list, member.user_id,
                                           confidential.client.client_id) == 1
        db.commit()
    assert signed_in.get(ISSUES, headers=bearer(access)).status_code == 401
    assert signed_in.get(ISSUES, headers=bearer(agent)).status_code == 401
