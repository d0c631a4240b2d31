"""Live queries: the hub that evaluates each distinct query once, `GET /api/live`, and the
dashboard's live views."""
