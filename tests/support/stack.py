"""writer, projector and gateway as real processes on one test's stream, driven over HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx

from ironstar.natsserver import free_port
from tests.support.processes import Service


class Stack:
    """writer, projector and gateway as processes on this test's stream.

    The gateway's port comes from `free_port`, which another process on the machine can
    take before the gateway binds it: then the gateway is started again on a new port.
    A stack that cannot start stops what it started, so no process outlives the test.
    """

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = dict(env)
        self.workdir = workdir
        self.services: list[Service] = []
        try:
            # side by side (a stream both create at once is created once: JetStream's create
            # is idempotent for the same configuration)
            for name in ("writer", "projector"):
                self.services.append(Service(name, self.env, workdir).launch())
            self.gateway = self._gateway()
            for service in self.services:
                service.ready()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        """The gateway's base URL (`http://127.0.0.1:<port>`)."""
        return f"http://127.0.0.1:{self.env['IRONSTAR_GATEWAY_PORT']}"

    def _gateway(self, attempts: int = 3) -> Service:
        for attempt in range(attempts):
            try:
                return Service("gateway", self.env, self.workdir).start()
            except AssertionError as exc:
                if "Address already in use" not in str(exc) or attempt == attempts - 1:
                    raise
                self.env["IRONSTAR_GATEWAY_PORT"] = str(free_port())
        raise AssertionError("unreachable")

    def restart_gateway_after_stop(self) -> None:
        """Start the (stopped) gateway again on the same port."""
        self.gateway = Service("gateway", self.env, self.workdir).start()

    def command(self, list_id: str, type_: str, **payload: str) -> dict[str, object]:
        """Send a todo_list command through the gateway; its 200 body (`send`)."""
        return send(self.url, "todo_list", list_id, type_, payload)

    def stop(self) -> None:
        """Stop the gateway, then the other services (SIGTERM each, 10 s each)."""
        for service in [getattr(self, "gateway", None), *reversed(self.services)]:
            if service is not None and service.process is not None:
                service.stop()


def send(
    url: str, aggregate: str, ident: str, type_: str, payload: dict[str, str]
) -> dict[str, object]:
    """POST a command to the gateway at `url`; its JSON body, which must be a 200."""
    reply = httpx.post(
        f"{url}/api/commands/{aggregate}/{ident}", json={"type": type_, "payload": payload}
    )
    assert reply.status_code == 200, reply.text
    body: dict[str, object] = reply.json()
    return body
