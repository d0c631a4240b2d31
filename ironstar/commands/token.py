"""`ironstar token`: mint a bearer token for the gateway, signed with IRONSTAR_AUTH_SECRET."""

from __future__ import annotations

import argparse
import secrets
from typing import Any

from common.errors import Invalid
from common.settings import AuthSettings
from common.tokens import MAKE_SECRET
from ironstar.commands import examples

SCOPES = (
    "commands:<aggregate_type> (or *), read:<grant> (a projection's grant, default its name), "
    "read:<aggregate_type>[:<id>] (its reads and feed), read:stream (the built-in chart), "
    "read:*, sql, admin"
)


def add(commands: Any) -> None:
    """Register this command's parser on the argparse subparsers `commands`; it sets `run`."""
    token = commands.add_parser(
        "token",
        help="mint a bearer token (or a new secret) for the gateway",
        description="Print an HS256 token signed with IRONSTAR_AUTH_SECRET (or _SECRET_FILE). "
        f"Scopes: {SCOPES}.",
        **examples(
            "ironstar token --subject alice --scope 'commands:*' --scope 'read:*' --ttl 3600",
            "ironstar token --subject wall --scope read:stream",
        ),
    )
    token.add_argument("--subject", default="ironstar-cli", help="who the token is for (`sub`)")
    token.add_argument(
        "--scope", action="append", default=[], help="a grant; repeat for several (default: none)"
    )
    token.add_argument("--ttl", type=float, default=3600.0, help="lifetime in seconds")
    token.add_argument(
        "--new-secret", action="store_true", help="print a fresh random secret instead"
    )
    token.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print a new secret (--new-secret) or a token signed with the configured one for `--ttl`
    seconds; exit status 0. Raises Invalid when no secret is configured or the lifetime is not
    positive."""
    if args.new_secret:
        print(secrets.token_urlsafe(48))
        return 0
    from gateway.security.auth import verifier

    check = verifier(AuthSettings.from_env())
    if check is None:
        raise Invalid(
            f"no IRONSTAR_AUTH_SECRET or IRONSTAR_AUTH_SECRET_FILE is set: {MAKE_SECRET}, "
            "and give the same one to the gateway"
        )
    if args.ttl <= 0:
        raise Invalid("--ttl must be positive: a token needs a lifetime")
    print(check.mint(args.subject, args.scope, args.ttl))
    return 0
