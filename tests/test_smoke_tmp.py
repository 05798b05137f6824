from conftest import bearer, login, org_token, user_token


def test_smoke(client, db, world):
    from scopegate.core import scopes as s
    tok = user_token(db, "member@acme.test", {s.EVENT_READ, s.ORG_READ})
    r = client.get("/api/0/organizations/", headers=bearer(tok))
    assert r.status_code == 200, r.text
    r = client.get("/api/0/organizations/acme/issues/", headers=bearer(tok))
    assert r.status_code == 200 and len(r.json()) == 3, r.text
    iid = world.issue_ids[0]
    r = client.put(f"/api/0/organizations/acme/issues/{iid}/", headers=bearer(tok), json={"status": "resolved"})
    assert r.status_code == 403, r.text
    print(r.headers["www-authenticate"], r.json())
    r = client.get("/api/0/organizations/globex/issues/", headers=bearer(tok))
    assert r.status_code == 404
    ot = org_token(db, "acme")
    r = client.post("/api/0/organizations/acme/releases/", headers=bearer(ot), json={"version": "1.0", "projects": ["web"]})
    assert r.status_code == 201, r.text
    r = client.delete("/api/0/organizations/acme/releases/1.0/", headers=bearer(ot))
    assert r.status_code == 403, r.text
    print(r.headers["www-authenticate"])
    r = client.get("/api/0/organizations/globex/releases/", headers=bearer(ot))
    assert r.status_code == 404
    csrf = login(client, "member@acme.test")
    r = client.put(f"/api/0/organizations/acme/issues/{iid}/", json={"status": "resolved", "assignedTo": "admin@acme.test"})
    assert r.status_code == 403, r.text
    r = client.put(f"/api/0/organizations/acme/issues/{iid}/", json={"status": "resolved", "assignedTo": "admin@acme.test"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    print(r.json())
    r = client.post("/api/0/organizations/acme/releases/", headers=bearer(ot), content=b"{bad")
    print(r.status_code, r.text)
    r = client.get("/api/0/organizations/acme/", headers={"Authorization": "Basic zzz"})
    print(r.status_code, r.text)
