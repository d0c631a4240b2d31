"""`GET /`: the live dashboard page."""

from __future__ import annotations

from importlib.resources import files

from litestar import MediaType, get

_PAGE = files("gateway").joinpath("static/dashboard.html")


@get("/", media_type=MediaType.HTML, include_in_schema=False)
async def page() -> str:
    """The dashboard: a todo list, live events, analytics."""
    return _PAGE.read_text(encoding="utf-8")
