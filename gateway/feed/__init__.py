"""The SSE feed (`GET /api/events`): one durable JetStream consumer per client, shaped by
the client's controls (policy, capacity, windows, format) and framed by `wire`."""
