"""HTTP commands and ad-hoc SQL: translate, forward over NATS, reply (named reads:
`gateway/api/reads.py`)."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, MediaType, Request, Response, post
from litestar.params import Parameter

from common.envelope import uuid7
from common.errors import BadRequest, Invalid, invalid_from_msgspec
from common.messages import CommandBody
from common.subjects import valid_id
from common.telemetry import bind_correlation
from gateway.backend import Backend

_bodies = msgspec.json.Decoder(CommandBody)
_sql_bodies = msgspec.json.Decoder(dict[str, Any])
_COMMAND_ID = "command_id"

MinSeq = Annotated[
    int,
    Parameter(
        ge=0,
        le=2**63 - 1,
        default=0,
        description="answer only once the read model has applied this stream sequence",
    ),
]


def _json(body: bytes) -> Response[bytes]:
    return Response(body, media_type=MediaType.JSON)


def _if_match(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        raise Invalid(
            f'If-Match must be the aggregate\'s stream sequence, e.g. "42"; got {value[:40]!r}',
            field="If-Match",
        )
    return int(text)


class CommandController(Controller):
    """`POST /api/commands/{aggregate_type}/{aggregate_id}`: one command, forwarded to a writer over
    NATS."""

    path = "/api/commands"
    tags = ["commands"]

    @post("/{aggregate_type:str}/{aggregate_id:str}", status_code=200)
    async def send(
        self,
        request: Request[Any, Any, Any],
        backend: Backend,
        aggregate_type: str,
        aggregate_id: str,
        if_match: Annotated[str | None, Parameter(header="If-Match")] = None,
        correlation: Annotated[str | None, Parameter(header="X-Correlation-Id")] = None,
    ) -> Response[bytes]:
        """Send a command to an aggregate; returns its events and the new sequence.

        Errors: 400 (BadRequest) a body that is not JSON; 422 a body or payload of the wrong
        shape (`field` names it); 409 a stale `If-Match`, a broken rule or a reused
        `command_id`; 507 storage full; 503 + Retry-After the writer unreachable."""
        bind_correlation(correlation)
        raw = await request.body()
        try:
            body = _bodies.decode(raw)
        except msgspec.ValidationError as exc:
            raise invalid_from_msgspec(exc, "command body") from None
        except msgspec.DecodeError as exc:
            raise BadRequest(
                f"the body is not valid JSON ({exc}); send "
                '{"type": "<command>", "payload": {...}, "command_id": "<optional>"}'
            ) from None
        command_id = uuid7() if body.command_id is None else valid_id(body.command_id, _COMMAND_ID)
        backend.storage.check_writable()
        result = await backend.command(
            aggregate_type,
            aggregate_id,
            body.type,
            body.payload or {},
            command_id,
            _if_match(if_match),
        )
        return _json(result)


class SqlController(Controller):
    """`POST /api/sql`: one read-only SELECT over the read models, run by a projector replica."""

    path = "/api"
    tags = ["read models"]

    @post("/sql", status_code=200)
    async def sql(
        self,
        request: Request[Any, Any, Any],
        backend: Backend,
        min_seq: MinSeq,
        format: Annotated[
            Literal["json", "csv"], Parameter(default="json", description="json or csv")
        ],
    ) -> Response[bytes]:
        """Run one read-only SELECT over the read models: body `{"sql": "SELECT ..."}`.

        JSON answers `{"sequence", "result": {"columns", "rows", "truncated", "truncated_by",
        "max_rows", "max_bytes"}}` (`truncated_by`: "rows", "bytes" or null); `format=csv`
        answers the rows as CSV with a header line, and `Ironstar-Truncated: rows|bytes` when
        cut. Errors: 400 (BadRequest) a body that is not `{"sql": ...}` or a write; 422 a
        refused statement, function or table (named); 429 + Retry-After past the SQL places;
        504 `min_seq` not reached in time."""
        try:
            body = _sql_bodies.decode(await request.body())
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise BadRequest(
                f'the body must be a JSON object {{"sql": "SELECT ..."}}: {exc}'
            ) from None
        answer = await backend.query("sql", "sql", {"sql": body.get("sql")}, min_seq)
        if format == "csv":
            result = msgspec.json.decode(answer)["result"]
            cut = result.get("truncated_by")
            headers = {"Ironstar-Truncated": str(cut)} if cut else {}
            return Response(_csv(result), media_type="text/csv", headers=headers)
        return _json(answer)


def _csv(result: dict[str, Any]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(result["columns"])
    writer.writerows(result["rows"])
    return out.getvalue().encode()
