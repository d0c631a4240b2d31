"""Who is in front of the gateway, as its settings say (`IRONSTAR_GATEWAY_TRUSTED_PROXIES`,
`IRONSTAR_GATEWAY_PUBLIC_ORIGIN`): parsed and checked once at start (`GatewaySettings`),
used by the front door (`gateway/security/frontdoor.py`)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from common.errors import Invalid


def proxy_networks(value: str) -> list[str]:
    """The trusted proxies of `IRONSTAR_GATEWAY_TRUSTED_PROXIES` as normalised networks.

    Only IP addresses and CIDRs: a host name or `*` is refused (Invalid), because trusting
    every peer lets any client choose the address it is rate-limited under.
    """
    networks = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise Invalid(
                f"IRONSTAR_GATEWAY_TRUSTED_PROXIES: {item[:64]!r} is not an IP address or CIDR; "
                "list the proxy's addresses, e.g. 127.0.0.1,10.0.0.0/8"
            ) from None
        networks.append(str(network))
        if isinstance(network, ipaddress.IPv4Network):  # as a dual-stack socket sees it
            mapped = ipaddress.IPv6Address(f"::ffff:{network.network_address}")
            networks.append(f"{mapped}/{96 + network.prefixlen}")
    return networks


def origin_of(value: str) -> str:
    """`IRONSTAR_GATEWAY_PUBLIC_ORIGIN` as a browser writes `Origin` ('' when unset).

    Invalid unless it is `http(s)://host[:port]` with nothing after it.
    """
    if not value:
        return ""
    parts = urlsplit(value.strip())
    try:
        port_given = parts.port
    except ValueError:
        port_given = -1
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or port_given == -1
        or parts.path.strip("/")
        or parts.query
        or parts.fragment
        or parts.username
        or parts.password
    ):
        raise Invalid(
            f"IRONSTAR_GATEWAY_PUBLIC_ORIGIN: {value[:100]!r} is not an origin; "
            "give scheme, host and port only, e.g. https://dashboard.example.org"
        )
    default = {"http": 80, "https": 443}[parts.scheme]
    port = "" if port_given in (None, default) else f":{port_given}"
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"{parts.scheme}://{host}{port}"
