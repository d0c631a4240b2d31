"""The `ironstar` subcommands, one module each: `add(commands)` registers a parser."""

from __future__ import annotations

import argparse
from typing import Any


class DefaultsHelp(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Examples kept one per line, and each option's default shown."""


def examples(*lines: str) -> dict[str, Any]:
    """`add_parser` keywords for an epilog of examples, one command per line."""
    return {
        "epilog": "examples:\n" + "\n".join(f"  {line}" for line in lines),
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }
