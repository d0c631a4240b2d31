"""Command requests as the gateway sends them to a writer."""

from __future__ import annotations

from common.messages import CommandRequest


def command(list_id: str, type: str, command_id: str, **payload: object) -> CommandRequest:
    """A command on the todo list `list_id`; its correlation id is derived from its id."""
    return CommandRequest(
        aggregate_id=list_id,
        type=type,
        payload=dict(payload),
        command_id=command_id,
        correlation_id=f"corr-{command_id}",
    )
