"""writer, projector and gateway as real processes on one test's stream, driven over HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.processes import Service


class Stack:
    """writer, projector and gateway as processes on this test's stream."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.workdir = workdir
        self.url = f"http://127.0.0.1:{env['IRONSTAR_GATEWAY_PORT']}"
        self.services = {
            name: Service(name, env, workdir).start() for name in ("writer", "projector")
        }
        self.gateway = Service("gateway", env, workdir).start()

    def restart_gateway(self) -> None:
        self.gateway.stop()
        self.gateway = Service("gateway", self.env, self.workdir).start()

    def command(self, list_id: str, type_: str, **payload: str) -> dict[str, object]:
        return send(self.url, "todo_list", list_id, type_, payload)

    def stop(self) -> None:
        self.gateway.stop()
        for service in self.services.values():
            service.stop()


def send(
    url: str, aggregate: str, ident: str, type_: str, payload: dict[str, str]
) -> dict[str, object]:
    reply = httpx.post(
        f"{url}/api/commands/{aggregate}/{ident}", json={"type": type_, "payload": payload}
    )
    assert reply.status_code == 200, reply.text
    body: dict[str, object] = reply.json()
    return body
