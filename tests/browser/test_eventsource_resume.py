"""Chromium's own EventSource against the feed: it resumes from the first frame's id.

No client_id, a quiet topic: the browser sees only `connected`, the gateway goes away
(SIGTERM ends the stream), an event is appended meanwhile, and the gateway comes back on
the same port. EventSource reconnects by itself with `Last-Event-ID` = the `connected`
frame's id, and must get the event exactly once (issue 12, item 5).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from playwright.sync_api import Page

from ironstar.natsserver import free_port
from tests.support.processes import Service
from tests.support.stack import Stack, send

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

FOLLOW = """(topics) => {
  window.seen = [];
  const source = new EventSource(`/api/events?topics=${topics}`);
  for (const type of ["connected", "todo_added"]) {
    source.addEventListener(type, (e) => window.seen.push([type, e.lastEventId]));
  }
  source.onerror = () => window.seen.push(["error", String(source.readyState)]);
}"""


def test_chromium_eventsource_gets_what_was_appended_after_only_connected_exactly_once(
    stack: Stack, open_page: Callable[[str], Page]
) -> None:
    list_id = f"e{uuid.uuid4().hex[:8]}"
    stack.command(f"other{list_id}", "add_todo", todo_id="a", text="A")  # a non-empty stream
    page = open_page(f"{stack.url}/")  # an origin whose CSP allows connecting to the feed
    page.evaluate(FOLLOW, f"todo_list:{list_id}")
    page.wait_for_function("() => window.seen.some(([type]) => type === 'connected')")
    connected = page.evaluate("() => window.seen.find(([t]) => t === 'connected')[1]")
    assert connected.isdigit()
    stack.gateway.stop()
    page.wait_for_function("() => window.seen.some(([type]) => type === 'error')")
    other_env = {**stack.env, "IRONSTAR_GATEWAY_PORT": str(free_port())}
    other = Service("gateway", other_env, stack.workdir).start()  # takes the command meanwhile
    other_url = f"http://127.0.0.1:{other_env['IRONSTAR_GATEWAY_PORT']}"
    added = send(other_url, "todo_list", list_id, "add_todo", {"todo_id": "t1", "text": "away"})
    other.stop()
    stack.restart_gateway_after_stop()
    page.wait_for_function(
        "(seq) => window.seen.some(([t, id]) => t === 'todo_added' && id === seq)",
        arg=str(added["sequence"]),
        timeout=20_000,
    )
    later = stack.command(list_id, "add_todo", todo_id="t2", text="after")
    page.wait_for_function(
        "(seq) => window.seen.some(([t, id]) => t === 'todo_added' && id === seq)",
        arg=str(later["sequence"]),
    )
    events = [id for kind, id in page.evaluate("() => window.seen") if kind == "todo_added"]
    assert events == [str(added["sequence"]), str(later["sequence"])]  # each once, in order
