"""A feed's streaming response on one task (issue 15, memory per idle client).

Litestar's `Stream` runs each response body in an anyio task group: one task writes the body,
another waits on `receive` for `http.disconnect` and cancels the first. For an SSE feed that
lives for hours that is a second task, a task group, cancel scopes and their events held per
connection (~5 KiB of a ~32 KiB idle feed, tracemalloc). `FeedStream` writes the body on the
request's own task and learns of the client's leaving from the server's protocol instead
(`direct.watch`: the task is cancelled when the connection is lost, as the task group cancelled
its writer); on a server `direct` does not know it is Litestar's `Stream`, unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar.response import Stream
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse
from litestar.types import Empty, Receive, Scope, Send
from litestar.utils.scope.state import ScopeState

from gateway.feed import direct


class _OneTask(ASGIStreamingResponse):
    __slots__ = ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The response; the request's headers and query as Litestar parsed them for the handler
        are dropped first (~1 KiB a feed; parsed again from the scope if anything asks)."""
        state = ScopeState.from_scope(scope)
        state.headers = state.parsed_query = Empty
        await super().__call__(scope, receive, send)

    async def send_body(self, send: Send, receive: Receive) -> None:
        """The body's chunks, until it ends or the connection is lost (then it is cancelled
        where it waits, and the response ends normally: what Litestar's task group does)."""
        watch = direct.watch()
        if watch is None:
            await super().send_body(send, receive)
            return
        if watch.lost:  # gone before the body started (it is released when collected)
            return
        try:
            await self._stream(send)
        except asyncio.CancelledError:
            if not watch.swallow():
                raise
        finally:
            watch.close()


class FeedStream(Stream):
    """Litestar's `Stream`, written on the request's task (see the module docstring)."""

    __slots__ = ()

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> ASGIResponse:
        """Litestar's streaming response, its body sent by `_OneTask.send_body`."""
        response = super().to_asgi_response(*args, **kwargs)
        if type(response) is ASGIStreamingResponse:
            response.__class__ = _OneTask
        return response
