"""HEAD on the probes and the page: answered as GET, without the body.

Load balancers and uptime checks probe with HEAD; Litestar routes only the methods a
handler declares, so this sits in front of the router. Only the paths below: never a feed,
where a HEAD would open a consumer and a stream that does not end (those stay 405).
"""

from __future__ import annotations

from typing import cast

from litestar.types import ASGIApp, Message, Receive, Scope, Send

HEAD_AS_GET = frozenset({"/", "/healthz", "/readyz", "/metrics"})


class HeadAsGet:
    """ASGI wrapper: HEAD on `HEAD_AS_GET` runs the GET handler, status and headers
    (Content-Length too) as GET would send them, no body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") != "HEAD" or scope["path"] not in HEAD_AS_GET:
            await self.app(scope, receive, send)
            return
        as_get = cast("Scope", {**scope, "method": "GET"})  # the server's own stays HEAD

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app(as_get, receive, sending)
