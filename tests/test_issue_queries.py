"""The hot read queries (Core) and their one-pass JSON, on SQLite and PostgreSQL.

``issue_page`` / ``issue_row`` / ``release_page`` must return what the ORM path returned
(filters, escaping, pages, organization isolation) and ``issues_json`` / ``issue_json``
/ ``releases_json`` the very bytes FastAPI makes of the pydantic response models.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import TypeAdapter
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from scopegate.services import directory, issues, releases
from scopegate.services.errors import NotFound
from scopegate.services.issues import IssueStatus
from scopegate.store.db import make_engine, make_sessionmaker
from scopegate.store.models import Issue, Release, release_projects
from scopegate.web.api.issue_json import issue_json, issues_json
from scopegate.web.api.issues import IssueOut
from scopegate.web.api.release_json import releases_json
from scopegate.web.api.releases import ReleaseOut
from support.world import World, build_world_quick

# What FastAPI does with ``response_model=list[IssueOut]``: pydantic's dump_json, by alias.
ISSUE_LIST = TypeAdapter(list[IssueOut])
RELEASE_LIST = TypeAdapter(list[ReleaseOut])
TRICKY_TITLES = [
    "100% done",
    "1000 done",
    "snake_case bug",
    "snakeXcase bug",
    "back\\slash",
    'quote " and </script>',
    "ünïcödé ✓ 😀 \u2028 line sep",
    "control \x01\x1f\x7f chars",
    "TypeError: Cannot Read",
]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with make_sessionmaker(engine)() as session:
        yield session


@pytest.fixture
def world(session: Session) -> World:
    return build_world_quick(session)


def _add(session: Session, world: World, titles: list[str], project: str = "web") -> list[int]:
    acme = directory.get_org(session, "acme")
    target = directory.get_project(session, acme.id, project)
    ids = [issues.create_issue(session, target, title).id for title in titles]
    session.commit()
    return ids


def _page(engine: Engine, org_id: int, **kw: object) -> tuple[list[int], bool]:
    args = {"status": None, "query": None, "offset": 0, "limit": 100, **kw}
    with engine.connect() as conn:
        rows, more = issues.issue_page(conn, org_id, **args)  # type: ignore[arg-type]
    return [row.id for row in rows], more


def _orm_json(session: Session, org_id: int, ids: list[int]) -> bytes:
    """Today's response bytes: ORM issues through ``IssueOut.of`` and pydantic."""
    session.expire_all()
    models = [IssueOut.of(issues.get_issue(session, org_id, i)) for i in ids]
    return ISSUE_LIST.dump_json(models, by_alias=True)


def test_a_page_is_the_organizations_issues_newest_first(engine: Engine, world: World) -> None:
    acme = world.orgs["acme"]
    ids, more = _page(engine, acme)
    assert ids == sorted(world.issue_ids, reverse=True)
    assert not more
    assert world.globex_issue_id not in ids


def test_status_filter_returns_only_that_status(
    engine: Engine, session: Session, world: World
) -> None:
    acme = world.orgs["acme"]
    first, second, third = world.issue_ids
    issues.update_issue(session, acme, first, status=IssueStatus.RESOLVED)
    issues.update_issue(session, acme, third, status=IssueStatus.IGNORED)
    session.commit()
    assert _page(engine, acme, status=IssueStatus.RESOLVED)[0] == [first]
    assert _page(engine, acme, status=IssueStatus.IGNORED)[0] == [third]
    assert _page(engine, acme, status=IssueStatus.UNRESOLVED)[0] == [second]


def test_search_treats_percent_underscore_and_backslash_literally(
    engine: Engine, session: Session, world: World
) -> None:
    acme = world.orgs["acme"]
    ids = dict(zip(TRICKY_TITLES, _add(session, world, TRICKY_TITLES), strict=True))
    assert _page(engine, acme, query="%")[0] == [ids["100% done"]]
    assert _page(engine, acme, query="0% ")[0] == [ids["100% done"]]
    assert _page(engine, acme, query="_")[0] == [ids["snake_case bug"]]
    assert _page(engine, acme, query="e_c")[0] == [ids["snake_case bug"]]
    assert _page(engine, acme, query="\\")[0] == [ids["back\\slash"]]
    assert _page(engine, acme, query="typeerror: cannot")[0] == [ids["TypeError: Cannot Read"]]
    assert _page(engine, acme, query="no such title")[0] == []


def test_search_and_status_combine(engine: Engine, session: Session, world: World) -> None:
    acme = world.orgs["acme"]
    kept, resolved = _add(session, world, ["flaky login", "flaky logout"])
    issues.update_issue(session, acme, resolved, status=IssueStatus.RESOLVED)
    session.commit()
    assert _page(engine, acme, query="flaky", status=IssueStatus.RESOLVED)[0] == [resolved]
    assert _page(engine, acme, query="flaky", status=IssueStatus.UNRESOLVED)[0] == [kept]


def test_pages_split_the_list_and_say_whether_more_follows(
    engine: Engine, session: Session, world: World
) -> None:
    acme = world.orgs["acme"]
    _add(session, world, [f"extra {n}" for n in range(4)])  # 7 issues in all
    everything, _ = _page(engine, acme)
    assert len(everything) == 7
    assert _page(engine, acme, offset=0, limit=3) == (everything[0:3], True)
    assert _page(engine, acme, offset=3, limit=3) == (everything[3:6], True)
    assert _page(engine, acme, offset=6, limit=3) == (everything[6:], False)
    # A page that ends exactly at the last issue has no "more".
    assert _page(engine, acme, offset=4, limit=3) == (everything[4:], False)
    assert _page(engine, acme, offset=7, limit=3) == ([], False)


def test_another_organizations_issue_is_never_listed_or_shown(
    engine: Engine, world: World
) -> None:
    acme, globex = world.orgs["acme"], world.orgs["globex"]
    assert world.globex_issue_id not in _page(engine, acme, query="globex")[0]
    assert _page(engine, globex)[0] == [world.globex_issue_id]
    with engine.connect() as conn:
        with pytest.raises(NotFound):
            issues.issue_row(conn, acme, world.globex_issue_id)
        with pytest.raises(NotFound):
            issues.issue_row(conn, globex, world.issue_ids[0])
        with pytest.raises(NotFound):
            issues.issue_row(conn, acme, 2**31 - 1)
        assert issues.issue_row(conn, globex, world.globex_issue_id).id == world.globex_issue_id


def test_rows_carry_project_slug_and_assignee_email(
    engine: Engine, session: Session, world: World
) -> None:
    acme = world.orgs["acme"]
    (api_issue,) = _add(session, world, ["on the api"], project="api")
    issues.update_issue(session, acme, api_issue, assignee_email=World.email("admin"))
    session.commit()
    with engine.connect() as conn:
        row = issues.issue_row(conn, acme, api_issue)
        unassigned = issues.issue_row(conn, acme, world.issue_ids[0])
    assert (row.project, row.assigned_to) == ("api", World.email("admin"))
    assert (unassigned.project, unassigned.assigned_to) == ("web", None)
    assert row.date_created.tzinfo is not None


def test_list_json_is_byte_for_byte_what_the_pydantic_model_returns(
    engine: Engine, session: Session, world: World
) -> None:
    acme = world.orgs["acme"]
    ids = _add(session, world, TRICKY_TITLES)
    issues.update_issue(session, acme, ids[0], assignee_email=World.email("member"))
    issues.update_issue(session, acme, ids[1], status=IssueStatus.IGNORED)
    # A whole-second timestamp: no fraction may appear on either side.
    whole = session.get(Issue, ids[2])
    assert whole is not None
    whole.created_at = datetime(2024, 2, 29, 12, 0, tzinfo=UTC)
    whole.updated_at = datetime(2024, 3, 1, tzinfo=UTC) + timedelta(microseconds=5)
    session.commit()
    with engine.connect() as conn:
        rows, _ = issues.issue_page(conn, acme, status=None, query=None, offset=0, limit=100)
    assert [r.id for r in rows] == sorted([*ids, *world.issue_ids], reverse=True)
    assert issues_json(rows) == _orm_json(session, acme, [r.id for r in rows])
    assert b'"dateCreated":"2024-02-29T12:00:00Z"' in issues_json(rows)
    assert issues_json([]) == ISSUE_LIST.dump_json([], by_alias=True)


def test_detail_json_is_byte_for_byte_what_the_pydantic_model_returns(
    engine: Engine, session: Session, world: World
) -> None:
    acme = world.orgs["acme"]
    (issue_id,) = _add(session, world, ["ünïcödé \x1b detail \u2028"])
    updated = issues.update_issue(
        session, acme, issue_id, status=IssueStatus.RESOLVED, assignee_email=World.email("owner")
    )
    after_write = issues.row_of(updated)
    session.commit()
    with engine.connect() as conn:
        row = issues.issue_row(conn, acme, issue_id)
    assert after_write == row
    expected = IssueOut.of(issues.get_issue(session, acme, issue_id)).model_dump_json(by_alias=True)
    assert issue_json(row) == expected.encode()


def test_issue_page_accepts_a_session_as_well_as_a_connection(
    engine: Engine, session: Session, world: World
) -> None:
    acme = world.orgs["acme"]
    rows, more = issues.issue_page(session, acme, status=None, query=None, offset=0, limit=2)
    assert ([r.id for r in rows], more) == (sorted(world.issue_ids, reverse=True)[:2], True)
    assert issues.issue_row(session, acme, world.issue_ids[0]).id == world.issue_ids[0]


def test_release_page_matches_the_orm_list_and_its_json(
    engine: Engine, session: Session, world: World
) -> None:
    acme, globex = world.orgs["acme"], world.orgs["globex"]
    releases.create_release(session, acme, "1.0", ["web"])
    releases.create_release(
        session, acme, "2.0", ["web", "api"], ref="abc",
        date_released=datetime(2024, 5, 1, 8, 30, 0, 123, tzinfo=UTC),
    )
    releases.create_release(session, globex, "9.9", ["backend"])
    session.commit()
    # A release left without projects still lists (with an empty list).
    session.execute(
        release_projects.delete().where(
            release_projects.c.release_id == releases.get_release(session, acme, "1.0").id
        )
    )
    session.commit()
    session.expire_all()
    with engine.connect() as conn:
        page = releases.release_page(conn, acme, offset=0, limit=25)
        first = releases.release_page(conn, acme, offset=0, limit=1)
        second = releases.release_page(conn, acme, offset=1, limit=1)
    assert [r.version for r in page] == ["2.0", "1.0"]
    assert page[0].projects == ("api", "web")
    assert page[1].projects == ()
    assert (first, second) == (page[:1], page[1:])
    loaded = session.scalars(select(Release).where(Release.org_id == acme)
                             .order_by(Release.id.desc()))
    expected = [ReleaseOut.of(r) for r in loaded]
    assert releases_json(page) == RELEASE_LIST.dump_json(expected, by_alias=True)
