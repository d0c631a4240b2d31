"""The gateway: Litestar over NATS, serving HTTP commands and reads, SSE feeds and the dashboard.

The folders follow the architecture (docs/architecture.md, "The gateway's layout"):

- `main.py`: the composition root (uvicorn under our own signals, the ASGI wrappers);
  `app.py`: the app factory (routes; lifespan: NATS, the feeds' shared parts, the live hub);
  `backend.py`: the port to the other services (commands and queries over NATS);
  `storage.py`: the event store's disk watch; `metrics.py`: Prometheus metrics.
- `api/`: the HTTP API. `commands.py` (POST commands, ad-hoc SQL), `reads.py` (one GET per
  catalogue query), `readschema.py` + `openapi.py` (the OpenAPI document), `errors.py`
  (the one table from Ironstar errors to HTTP), `head.py` (HEAD answered as GET).
- `feed/`: the SSE feed, `GET /api/events`. Request side: `sse.py` (the route),
  `controls.py` (per-client options parsed from the query), `topics.py` (`?topics=` and the
  consumer name), `consumers.py` (who owns a consumer, budgets), `refusals.py` (JetStream
  refusals → HTTP), `snapshot.py` (full state first). Delivery: `client.py` (one client's
  durable consumer), `inbox.py` (the process's one subscription for pulled messages),
  `tail.py` (the shared live tail), `reading.py` (decode + check), `holdings.py` (the
  `unbounded` memory budget). Shaping: `policy.py` (overflow policies), `window.py`
  (debounce/batch operators), `pipeline.py` (windows then bytes per format), `wire.py` (SSE
  framing, the only writer of SSE syntax). `stream.py`: the loop behind one response (pull,
  shape, write, ack), `delivery.py` its order and lazy acks. `process.py`: what all feeds of
  the process share, started and stopped by the app's lifespan.
- `dashboard/`: `GET /` and `/ui`. `page.py` (the page and its fragments), `render.py`
  (generic HTML), `chart.py` (the analytics SVG), `datastar.py` (the `datastar` feed
  format), `static/` (CSS, JS, the Datastar bundle).
- `live/`: live queries. `hub.py` (one evaluation per distinct query), `rounds.py`
  (catalogue keys due together in one projector request), `lanes.py` (the SQL lane's
  budget), `answer.py` (answers and each feed's place in them), `follow.py`
  (`GET /api/live`), `views.py` (dashboard parts kept current by a live query).
- `security/`: the front door. `frontdoor.py` (the middleware and security headers),
  `auth.py` (tokens, scopes per method and path), `grants.py` (the one rule for read-model
  answers), `limits.py` (rate, body, JSON shape), `headers.py` (header bounds),
  `deadlines.py` (request-header deadline, slowloris).

Where a change goes:
- A read-model query: declare a `Query` in the app's projection (e.g.
  `examples/todo/projections/`); `api/reads.py` routes it and `api/readschema.py` documents it
  from the catalogue, so the gateway needs no code.
- An SSE control option (a query parameter of `/api/events`): its default and cap in
  `common/settings.py` (`GatewaySettings.sse_*`), the field and its parsing in
  `feed/controls.py` (`Controls`, `parse`), the route's parameter in `feed/sse.py`, what it
  does in `feed/pipeline.py` (rendering), `feed/policy.py` (falling behind) or
  `feed/stream.py` (the loop), and its row in docs/architecture.md's controls table.
"""
