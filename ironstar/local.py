"""Where a running `ironstar up` is: `<data dir>/up.json`, written while it runs.

It holds the NATS URL, the gateway URL and the operator's NATS credentials (the file is
mode 0600), so CLI commands run beside `ironstar up` need no configuration.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from common.settings import NatsSettings

DEFAULT_DATA_DIR = Path(".ironstar")


def write(data_dir: Path, nats_url: str, http_url: str, user: str, password: str) -> Path:
    address = data_dir / "up.json"
    fd = os.open(address, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(
            {
                "nats_url": nats_url,
                "http_url": http_url,
                "nats_user": user,
                "nats_password": password,
                "pid": os.getpid(),
            },
            out,
        )
    return address


def read(data_dir: Path = DEFAULT_DATA_DIR) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = json.loads((data_dir / "up.json").read_text())
    except (OSError, ValueError):
        return None
    return found


def nats_settings(data_dir: Path = DEFAULT_DATA_DIR) -> NatsSettings:
    """The running local stack's NATS, as operator; otherwise `IRONSTAR_NATS_*`."""
    found = read(data_dir)
    if found is None:
        return NatsSettings.from_env()
    return NatsSettings.from_env(
        url=found["nats_url"],
        user=found.get("nats_user"),
        password=found.get("nats_password"),
    )
