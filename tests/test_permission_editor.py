"""The permission editor: a control for every scope in the registry, and opening then
saving an integration never fails and never changes what it may do.

(In Sentry, narrowing the Vercel deploy integration to ``org:ci`` broke its edit form:
the form had no control for ``org:ci``.)
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from scopegate.core import permission_editor
from scopegate.core import scopes as registry
from scopegate.services import integrations
from support.http import bearer, login
from support.world import World, user_token

ACME = "/api/0/organizations/acme"
PAGE = "/organizations/acme/integrations"


class _EditorForm(HTMLParser):
    """The permission editor's fields as a browser would submit them."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self.disabled: set[str] = set()
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "select":
            self._select = found["name"]
            self.fields.setdefault(self._select, "")
            if "disabled" in found:
                self.disabled.add(self._select)
        elif tag == "option" and self._select is not None and "selected" in found:
            self.fields[self._select] = found["value"] or ""
        elif tag == "input" and found.get("name") in ("csrf_token", "name"):
            self.fields[found["name"]] = found.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def editor_form(html: str) -> _EditorForm:
    start = html.index('id="permissions"')
    parser = _EditorForm()
    parser.feed(html[start - 200: html.index("</form>", start)])
    return parser


def fresh(db: Session) -> None:
    """See what the app committed: end the read snapshot, forget loaded rows."""
    db.commit()
    db.expire_all()


# -- the rows, from the registry (pure) -------------------------------------------------
def test_every_scope_in_the_registry_has_a_control() -> None:
    offered = {scope for row in permission_editor.ROWS for choice in row.choices
               for scope in choice.scopes}
    assert offered == registry.ALL_SCOPES
    assert [row.title for row in permission_editor.ROWS][:9] == [
        "Project", "Team", "Release", "Distribution", "Issue & Event", "Organization",
        "Member", "Alerts", "CI"]
    for row in permission_editor.ROWS:
        assert row.choices[0].label == "No access" and not row.choices[0].scopes
    labels = {row.title: [c.label for c in row.choices] for row in permission_editor.ROWS}
    assert labels["Project"] == ["No access", "Read", "Read & Write", "Admin"]
    assert labels["Alerts"] == ["No access", "Read", "Read & Write"]


@pytest.mark.parametrize("scope", registry.ORDERED)
def test_showing_then_saving_keeps_exactly_what_a_scope_allows(scope: str) -> None:
    saved = permission_editor.scopes_from(permission_editor.selection({scope}))
    assert registry.expand(saved) == registry.expand({scope})


def test_a_value_that_is_no_choice_of_its_row_is_refused() -> None:
    with pytest.raises(permission_editor.InvalidChoice, match="Project"):
        permission_editor.scopes_from({"project": "owner"})


# -- the API and the page round-trip every scope ----------------------------------------
def test_the_api_and_the_page_round_trip_every_scope_in_the_registry(
    client: TestClient, db: Session, world: World
) -> None:
    owner = bearer(user_token(db, World.email("owner"), registry.ALL_SCOPES))
    csrf = login(client, World.email("owner"))
    made = client.post(f"{ACME}/integrations/", json={"name": "Round trip"}, headers=owner)
    slug = made.json()["slug"]
    for scope in registry.ORDERED:
        put = client.put(f"{ACME}/integrations/{slug}/", json={"scopes": [scope]},
                         headers=owner)
        assert put.status_code == 200, (scope, put.text)
        assert client.get(f"{ACME}/integrations/{slug}/", headers=owner).json()["scopes"] == [
            scope]
        opened = client.get(f"{PAGE}/{slug}")
        assert opened.status_code == 200, scope
        form = editor_form(opened.text)
        assert form.fields["csrf_token"] == csrf and not form.disabled
        saved = client.post(f"{PAGE}/{slug}", data=form.fields)
        assert saved.status_code == 200, (scope, saved.text[:300])
        assert 'id="saved"' in saved.text
        after = client.get(f"{ACME}/integrations/{slug}/", headers=owner).json()["scopes"]
        assert registry.expand(after) == registry.expand({scope}), scope
        assert scope in after
        # Opened again, it shows the same choices.
        assert editor_form(client.get(f"{PAGE}/{slug}").text).fields == form.fields


def test_an_admin_can_open_and_save_an_integration_holding_org_ci(
    client: TestClient, db: Session, world: World
) -> None:
    row = integrations.create_integration(db, world.orgs["acme"], "Vercel", {"org:ci"})
    db.commit()
    login(client, World.email("admin"))  # holds org:integrations, not org:write
    form = editor_form(client.get(f"{PAGE}/{row.slug}").text)
    assert form.fields["org:ci"] == "org:ci"
    unchanged = client.post(f"{PAGE}/{row.slug}", data=form.fields)
    assert unchanged.status_code == 200 and 'id="saved"' in unchanged.text
    widened = client.post(f"{PAGE}/{row.slug}", data={**form.fields, "project": "read"})
    assert widened.status_code == 200 and 'id="saved"' in widened.text
    fresh(db)
    assert integrations.get_integration(db, world.orgs["acme"], row.slug).scopes == {
        "org:ci", "project:read"}
    # Removing org:ci needs no cover; adding it back does (only managers and owners).
    narrowed = client.post(f"{PAGE}/{row.slug}",
                           data={**form.fields, "project": "read", "org:ci": ""})
    assert narrowed.status_code == 200 and 'id="saved"' in narrowed.text
    refused = client.post(f"{PAGE}/{row.slug}", data={**form.fields, "project": "read"})
    assert refused.status_code == 403 and "managers and owners" in refused.text
    fresh(db)
    assert integrations.get_integration(db, world.orgs["acme"], row.slug).scopes == {
        "project:read"}


def test_bad_choices_and_members_change_nothing(
    client: TestClient, db: Session, world: World
) -> None:
    row = integrations.create_integration(db, world.orgs["acme"], "Bot", {"event:read"})
    db.commit()
    login(client, World.email("owner"))
    form = editor_form(client.get(f"{PAGE}/{row.slug}").text)
    bad = client.post(f"{PAGE}/{row.slug}", data={**form.fields, "event": "<b>root</b>"})
    assert bad.status_code == 400 and "Issue &amp; Event" in bad.text
    assert "<b>root</b>" not in bad.text
    client.cookies.clear()
    login(client, World.email("member"))
    shown = editor_form(client.get(f"{PAGE}/{row.slug}").text)
    assert shown.disabled == set(shown.fields) - {"csrf_token", "name"}
    refused = client.post(f"{PAGE}/{row.slug}", data={**shown.fields, "event": "admin"})
    assert refused.status_code == 403
    fresh(db)
    assert integrations.get_integration(db, world.orgs["acme"], row.slug).scopes == {
        "event:read"}


def test_the_page_shows_a_new_token_once_and_revokes_it(
    client: TestClient, db: Session, world: World
) -> None:
    row = integrations.create_integration(db, world.orgs["acme"], "Bot", {"project:read"})
    db.commit()
    csrf = login(client, World.email("owner"))
    created = client.post(f"{PAGE}/{row.slug}/tokens", data={"csrf_token": csrf,
                                                             "name": "ci"})
    assert created.status_code == 201
    secret = re.search(r'data-testid="new-token">(sgi_[^<]+)<', created.text).group(1)
    assert client.get(f"{ACME}/projects/", headers=bearer(secret)).status_code == 200
    again = client.get(f"{PAGE}/{row.slug}")
    assert secret not in again.text
    token_id = re.search(r'data-token-id="(\d+)"', again.text).group(1)
    revoked = client.post(f"{PAGE}/{row.slug}/tokens/{token_id}/revoke",
                          data={"csrf_token": csrf}, follow_redirects=False)
    assert revoked.status_code == 303
    assert client.get(f"{ACME}/projects/", headers=bearer(secret)).status_code == 401
