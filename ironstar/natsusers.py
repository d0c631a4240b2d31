"""Per-service NATS users for a local server: each may touch only its own subjects.

`ironstar up` makes one user per service with a fresh random password, writes them into
the nats-server config (mode 0600) and hands each service its own credentials. What each
user may publish and subscribe to follows the services' wire contracts:

- writer: answers `<prefix>.cmd.>`, appends to `<prefix>.events.>`, reads aggregates with
  direct get, creates or updates the stream.
- projector: answers `<prefix>.query.>`, creates/reads/acks its consumer, creates or
  updates the stream, announces committed batches on `<prefix>.applied`.
- gateway: sends commands and queries, runs SSE consumers (create, fetch, ack, reset,
  delete) and the live tail's ordered consumer, keeps named feeds' floors in its own KV
  bucket (`<stream>_SSE_FLOORS`), and reads stream info; hears `<prefix>.applied` (live
  queries). It can not publish to the event stream: only the writer appends.
- operator: everything; for the CLI commands run by the person who started the stack.

Every user may reply to the requests it receives (`allow_responses`) and receive replies
on `_INBOX.>`.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceUser:
    """One service's NATS user: name, password, and the subjects it may publish to and subscribe on
    (least privilege: the writer alone publishes events)."""

    name: str
    password: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]

    def env(self) -> dict[str, str]:
        """The IRONSTAR_NATS_USER/_PASSWORD variables that make a service connect as this user."""
        return {"IRONSTAR_NATS_USER": self.name, "IRONSTAR_NATS_PASSWORD": self.password}


def service_users(
    prefix: str = "ironstar", stream: str = "IRONSTAR_EVENTS"
) -> dict[str, ServiceUser]:
    """A user with a new random password for each service and the operator (the CLI), each allowed
    only the subjects of `prefix` and the JetStream API of `stream` its role needs."""
    manage_stream = tuple(
        f"$JS.API.STREAM.{verb}.{stream}" for verb in ("INFO", "CREATE", "UPDATE")
    )
    consumers = (
        f"$JS.API.CONSUMER.*.{stream}",  # CREATE of an unnamed (ordered) consumer: the live tail
        f"$JS.API.CONSUMER.*.{stream}.>",  # CREATE, INFO, DELETE, RESET
        f"$JS.API.CONSUMER.*.*.{stream}.>",  # DURABLE.CREATE, MSG.NEXT
        f"$JS.ACK.{stream}.>",
        f"$JS.FC.{stream}.>",  # flow-control replies of the ordered consumer
    )
    inbox = ("_INBOX.>",)

    def user(name: str, publish: tuple[str, ...], subscribe: tuple[str, ...]) -> ServiceUser:
        return ServiceUser(name, secrets.token_urlsafe(24), publish, subscribe + inbox)

    return {
        "writer": user(
            "writer",
            (
                f"{prefix}.events.>",
                f"$JS.API.DIRECT.GET.{stream}",
                f"$JS.API.DIRECT.GET.{stream}.>",
                *manage_stream,
            ),
            (f"{prefix}.cmd.>",),
        ),
        "projector": user(
            "projector",
            (*manage_stream, *consumers, f"{prefix}.applied"),
            (f"{prefix}.query.>",),
        ),
        "gateway": user(
            "gateway",
            (
                f"{prefix}.cmd.>",
                f"{prefix}.query.>",
                f"$JS.API.STREAM.INFO.{stream}",
                *consumers,
                *_floors(stream),
            ),
            (f"{prefix}.applied",),
        ),
        # The person at the keyboard: `ironstar status|query|rebuild|snapshot` find it in
        # <data dir>/up.json (mode 0600). No service runs with it.
        "operator": user("operator", (">",), (">",)),
    }


def _floors(stream: str) -> tuple[str, ...]:
    """The gateway's KV bucket of named feeds' floors (`gateway/feed/floors.py`): create or find
    it, write a floor, read one (direct get)."""
    bucket = f"{stream}_SSE_FLOORS"
    kv = f"KV_{bucket}"
    return (
        f"$JS.API.STREAM.INFO.{kv}",
        f"$JS.API.STREAM.CREATE.{kv}",
        f"$KV.{bucket}.>",
        f"$JS.API.DIRECT.GET.{kv}.>",
    )


def authorization(users: dict[str, ServiceUser]) -> str:
    """The nats-server `authorization` block for these users (JSON is valid NATS config)."""
    entries = [
        {
            "user": u.name,
            "password": u.password,
            "permissions": {
                "publish": {"allow": list(u.publish)},
                "subscribe": {"allow": list(u.subscribe)},
                "allow_responses": True,
            },
        }
        for u in users.values()
    ]
    return f"authorization {{\n  users: {json.dumps(entries, indent=2)}\n}}\n"
