"""What a replica answers over NATS: named queries, ad-hoc SQL, snapshots and rebuilds.

Read-model queries use a queue group per projection, so replicas share the load; each
waits for `min_seq` first (read-your-writes). A rebuild is for one replica (its file), so
each replica answers it on a subject of its own: `<prefix>.query.rebuild.<replica>`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from common import bus
from common import catalogue as catalogues
from common.errors import Invalid, NotFound, invalid_from_msgspec
from common.messages import QueryRequest
from common.settings import ProjectorSettings
from common.subjects import Subjects, valid_id
from projector import metrics, sql
from projector.readmodel import ReadModel
from projector.rebuild import Rebuilder
from projector.replica import Replica

_queries = msgspec.json.Decoder(QueryRequest)
_json = msgspec.json.Encoder(enc_hook=str)  # any other DuckDB value as text
Run = Callable[[ReadModel, QueryRequest], Any]


async def serve(
    nc: Client,
    subjects: Subjects,
    replica: Replica,
    rebuilder: Rebuilder,
    settings: ProjectorSettings,
) -> None:
    def answer_with(label: str, run: Run) -> bus.Handler:
        async def answer(msg: Msg) -> bytes:
            request = _decode(msg.data)
            started = time.perf_counter()
            sequence = await replica.progress.reach(request.min_seq, request.timeout_s)
            async with replica.reading() as model:
                result = await asyncio.to_thread(run, model, request)
            metrics.QUERY_DURATION.labels(label).observe(time.perf_counter() - started)
            return _json.encode({"sequence": max(sequence, model.checkpoint), "result": result})

        return answer

    def named(projection: str) -> Run:
        def run(model: ReadModel, request: QueryRequest) -> Any:
            params = catalogue.params(projection, request.name, request.params)  # 404, 422
            return model.query(projection, request.name, params)

        return run

    catalogue = catalogues.current()

    def adhoc(model: ReadModel, request: QueryRequest) -> Any:
        text = request.params.get("sql")
        if not isinstance(text, str) or not text.strip():
            raise Invalid("give the SQL text as a non-empty string", field="sql")
        return sql.run(model.con, text, settings.sql_timeout_s, settings.sql_max_rows)

    def snapshot(model: ReadModel, request: QueryRequest) -> Any:
        target = Path(settings.data_dir).resolve() / "snapshots"
        target = target / f"{settings.name}-{int(time.time())}-{model.checkpoint}.duckdb"
        sequence = model.snapshot(target)
        return {"path": str(target), "sequence": sequence, "replica": settings.name}

    async def rebuild(msg: Msg) -> bytes:
        request = _decode(msg.data)
        if request.name == "start":
            names = request.params.get("projections") or []
            unknown = sorted(set(names) - set(replica.model.projections))
            if unknown:
                known = ", ".join(replica.model.projections)
                raise NotFound(f"no projection {unknown[0]!r}; known: {known}", field="projection")
            rebuilder.start(replica, names)
        return _json.encode({"sequence": replica.model.checkpoint, "result": rebuilder.status})

    for projection in replica.model.projections:
        await bus.serve(
            nc,
            subjects.query(projection),
            f"projection.{projection}",
            answer_with(projection, named(projection)),
            concurrency=64,
        )
    await bus.serve(nc, subjects.query("sql"), "projection.sql", answer_with("sql", adhoc), 8)
    await bus.serve(
        nc, subjects.query("snapshot"), "projection.snapshot", answer_with("snapshot", snapshot), 1
    )
    mine = subjects.query(f"rebuild.{valid_id(settings.name, 'replica')}")
    await bus.serve(nc, mine, f"rebuild.{settings.name}", rebuild, 4)


def _decode(data: bytes) -> QueryRequest:
    try:
        return _queries.decode(data)
    except msgspec.ValidationError as exc:
        raise invalid_from_msgspec(exc, "query request") from None
    except msgspec.DecodeError as exc:
        raise Invalid(f"the query request is not JSON: {exc}") from None
