"""Every answer built from read models obeys the grants: API, CSV, SQL, the dashboard page
and its fragments, feed snapshots and the OpenAPI document — over real processes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from tests.support.feeds import feed
from tests.support.secured import SecuredStack, bearer, token, unique

pytestmark = pytest.mark.e2e


@dataclass
class Secrets:
    """Someone's data: a list with a todo, another list, a user with an e-mail."""

    list_id: str
    other_list: str
    todo_text: str
    user_id: str
    email: str
    sequence: int

    def leaked(self, text: str) -> list[str]:
        private = (self.list_id, self.other_list, self.todo_text, self.user_id, self.email)
        return [value for value in private if value in text]


@pytest.fixture(scope="module")
async def secrets(stack: SecuredStack) -> Secrets:
    admin = bearer("admin", subject=unique("owner"))
    found = Secrets(unique("list"), unique("other"), unique("secret todo "), unique("u"), "", 0)
    found.email = f"{unique('mail')}@example.org"
    async with httpx.AsyncClient(base_url=stack.base, timeout=10, headers=admin) as http:
        for list_id in (found.list_id, found.other_list):
            body = {"type": "add_todo", "payload": {"todo_id": "t1", "text": found.todo_text}}
            reply = await http.post(f"/api/commands/todo_list/{list_id}", json=body)
            assert reply.status_code == 200, reply.text
        body = {"type": "register_user", "payload": {"name": "Ada", "email": found.email}}
        reply = await http.post(f"/api/commands/user_profile/{found.user_id}", json=body)
        assert reply.status_code == 200, reply.text
        found.sequence = reply.json()["sequence"]
        ready = await http.get("/api/users", params={"min_seq": found.sequence})
        assert found.email in ready.text
    return found


@pytest.fixture
async def http(stack: SecuredStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base, timeout=10) as client:
        yield client


async def test_the_page_without_a_token_shows_nothing_private_but_a_sign_in(
    http: httpx.AsyncClient, secrets: Secrets
) -> None:
    for headers in (
        {},
        {"Cookie": f"ironstar_session={token('read:*', ttl_s=-3600)}"},  # expired
        {"Cookie": "ironstar_session=not-a-token"},
        {"Authorization": f"Bearer {token('commands:todo_list')}"},  # grants no reading
    ):
        page = await http.get("/", params={"list": secrets.list_id}, headers=headers)
        assert page.status_code == 200
        assert "Sign in" in page.text and "/api/events" not in page.text, headers
        assert secrets.leaked(page.text) == [], headers


async def test_the_page_shows_only_what_its_token_grants(
    http: httpx.AsyncClient, secrets: Secrets
) -> None:
    one_list = bearer(f"read:todo_list:{secrets.list_id}")
    page = await http.get("/", params={"list": secrets.list_id}, headers=one_list)
    assert page.status_code == 200
    assert secrets.todo_text in page.text  # its own list
    assert secrets.other_list not in page.text  # not which other lists exist
    assert secrets.email not in page.text and secrets.user_id not in page.text
    assert f"topics=todo_list:{secrets.list_id}&amp;" in page.text  # the feed it may follow
    assert "read:user_profile" in page.text and "read:stream" in page.text  # said, not shown
    assert 'data-views=""' in page.text  # no live view it may not follow (chart, chips)
    other = await http.get("/", params={"list": secrets.other_list}, headers=one_list)
    assert "Sign in" in other.text and secrets.leaked(other.text) == []
    everything = await http.get("/", params={"list": secrets.list_id}, headers=bearer("read:*"))
    assert secrets.email in everything.text and secrets.other_list in everything.text
    assert 'data-views="analytics/chart analytics/totals todos/lists"' in everything.text


async def test_fragments_need_the_read_grant_of_what_they_show_not_admin(
    http: httpx.AsyncClient, secrets: Secrets
) -> None:
    path = f"/ui/panels/todos/items?list={secrets.list_id}"
    for scopes in (("read:*",), ("read:todo_list",), (f"read:todo_list:{secrets.list_id}",)):
        reply = await http.get(path, headers=bearer(*scopes))
        assert reply.status_code == 200 and secrets.todo_text in reply.text, scopes
    assert (await http.get(path)).status_code == 401
    denied = await http.get(path, headers=bearer(f"read:todo_list:{secrets.other_list}"))
    assert (
        denied.status_code == 403 and denied.json()["scope"] == f"read:todo_list:{secrets.list_id}"
    )
    chart = await http.get("/ui/analytics", headers=bearer("read:stream"))
    assert chart.status_code == 200 and "Events per minute" in chart.text
    for headers in ({}, bearer("read:todo_list"), bearer("read:analytics")):  # the example's
        hidden = await http.get("/ui/analytics", headers=headers)
        assert "Events per minute" not in hidden.text and "read:stream" in hidden.text


async def test_api_csv_and_sql_answers_need_the_grant_of_what_they_show(
    http: httpx.AsyncClient, secrets: Secrets
) -> None:
    mine = bearer(f"read:todo_list:{secrets.list_id}")
    assert (await http.get(f"/api/todo-lists/{secrets.list_id}", headers=mine)).status_code == 200
    for method, path, body in (
        ("GET", f"/api/todo-lists/{secrets.other_list}", None),
        ("GET", "/api/todo-lists", None),
        ("GET", f"/api/users/{secrets.user_id}", None),
        ("GET", "/api/users", None),
        ("GET", "/api/analytics/totals", None),
        ("POST", "/api/sql", {"sql": "SELECT * FROM todos"}),
        ("POST", "/api/sql?format=csv", {"sql": "SELECT * FROM users"}),
    ):
        refused = await http.request(method, path, json=body, headers=mine)
        assert refused.status_code == 403, (path, refused.text)
        echoed = [value for value in secrets.leaked(refused.text) if value not in path]
        assert echoed == [secrets.list_id] or not echoed, path  # its grant, not their data
        anonymous = await http.request(method, path, json=body)
        assert anonymous.status_code == 401, (path, anonymous.text)
    sql = await http.post(
        "/api/sql?format=csv", json={"sql": "SELECT email FROM users"}, headers=bearer("sql")
    )
    assert sql.status_code == 200 and secrets.email in sql.text  # `sql` reads every model


async def test_feed_snapshots_hold_only_the_granted_topics(
    http: httpx.AsyncClient, secrets: Secrets
) -> None:
    mine = bearer(f"read:todo_list:{secrets.list_id}")
    params = {"topics": f"todo_list:{secrets.list_id}", "last_event_id": "not-a-sequence"}
    async with feed(http, mine, **params) as reader:
        messages = await reader.until("snapshot")
    snapshot = messages[-1].data
    assert set(snapshot) == {f"todo_list:{secrets.list_id}"}
    assert secrets.leaked(str(snapshot).replace(secrets.list_id, "")) == [secrets.todo_text]
    params["format"] = "datastar"
    async with feed(http, mine, **params) as reader:
        text = str([m.data for m in await reader.until("datastar-patch-signals")])
    assert secrets.other_list not in text and secrets.email not in text
    wider = {"topics": "todo_list", "last_event_id": "x"}
    async with http.stream("GET", "/api/events", params=wider, headers=mine) as refused:
        assert refused.status_code == 403


async def test_the_openapi_document_holds_no_read_model_data(
    http: httpx.AsyncClient, secrets: Secrets
) -> None:
    document = await http.get("/schema/openapi.json")
    assert document.status_code == 200
    assert secrets.leaked(document.text) == []
