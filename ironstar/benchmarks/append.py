"""`ironstar bench append` (not yet written: see its issue)."""

from __future__ import annotations

import argparse
from typing import Any


def add(parser: argparse.ArgumentParser) -> None:
    """Register this benchmark's options."""


async def run(args: argparse.Namespace) -> dict[str, Any]:
    return {"status": "not implemented yet"}
