"""A setting outside its bounds is refused at start, naming its variable and the value
given (`common.settings`); a value at a bound is taken."""

from __future__ import annotations

import pytest

from common.errors import Invalid
from common.settings import (
    SECTIONS,
    AuthSettings,
    GatewaySettings,
    LimitSettings,
    NatsSettings,
    ProjectorSettings,
    WriterSettings,
    check_all,
)

Section = type[
    NatsSettings
    | WriterSettings
    | ProjectorSettings
    | GatewaySettings
    | AuthSettings
    | LimitSettings
]


@pytest.mark.parametrize(
    ("section", "variable", "value", "says"),
    [
        (
            ProjectorSettings,
            "IRONSTAR_PROJECTOR_CATCHUP_PROCESS_ABOVE",
            "-1",
            ">= 0",
        ),  # verify10 F6
        (ProjectorSettings, "IRONSTAR_PROJECTOR_CATCHUP_PROCESS_ABOVE", "many", "`int`, got"),
        (ProjectorSettings, "IRONSTAR_PROJECTOR_BATCH_SIZE", "0", ">= 1"),
        (ProjectorSettings, "IRONSTAR_PROJECTOR_BATCH_SIZE", "-5", ">= 1"),
        (ProjectorSettings, "IRONSTAR_PROJECTOR_ON_POISON", "hlat", "one of 'skip', 'halt'"),
        (ProjectorSettings, "IRONSTAR_PROJECTOR_SQL_TIMEOUT_S", "0", ">= 0.01"),
        (ProjectorSettings, "IRONSTAR_PROJECTOR_NAME", "p.1", "matching"),  # verify12b F5
        (ProjectorSettings, "IRONSTAR_PROJECTOR_SNAPSHOT_STORAGE_VERSION", "abc", "matching"),
        (ProjectorSettings, "IRONSTAR_PROJECTOR_METRICS_PORT", "-2", ">= -1"),
        (GatewaySettings, "IRONSTAR_GATEWAY_SSE_RETRY_MS", "-5", ">= 0"),
        (GatewaySettings, "IRONSTAR_GATEWAY_PORT", "70000", "<= 65535"),
        (GatewaySettings, "IRONSTAR_GATEWAY_QUERY_TIMEOUT_S", "inf", "<= 86400"),
        (GatewaySettings, "IRONSTAR_GATEWAY_SSE_KEEPALIVE_S", "nan", ">= 0.01"),
        (GatewaySettings, "IRONSTAR_GATEWAY_QUERY_TIMEOUT_S", "5e-324", ">= 0.01"),  # F8
        (GatewaySettings, "IRONSTAR_GATEWAY_SSE_SEND_BUFFER_BYTES", "2147483648", "<= 2147483647"),
        (GatewaySettings, "IRONSTAR_GATEWAY_SSE_MAX_CONNECTIONS", "1e23", "`int`"),  # F7
        (GatewaySettings, "IRONSTAR_GATEWAY_SSE_MAX_CONNECTIONS", "99999999999", "<= 2147483647"),
        (GatewaySettings, "IRONSTAR_GATEWAY_SSE_DEBOUNCE_MS", "86400001", "<= 86400000"),
        (GatewaySettings, "IRONSTAR_GATEWAY_SSE_CAPACITY", "0", ">= 1"),
        (GatewaySettings, "IRONSTAR_GATEWAY_MAX_BODY_BYTES", "1.5", "`int`"),
        (NatsSettings, "IRONSTAR_NATS_REPLICAS", "7", "<= 5"),
        (NatsSettings, "IRONSTAR_NATS_REQUEST_TIMEOUT_S", "-1", ">= 0.01"),
        (NatsSettings, "IRONSTAR_NATS_STREAM", "", "matching"),  # verify12b F5
        (NatsSettings, "IRONSTAR_NATS_PREFIX", "a b", "matching"),
        (NatsSettings, "IRONSTAR_NATS_PREFIX", "", "matching"),
        (NatsSettings, "IRONSTAR_NATS_PREFIX", "a.>", "matching"),
        (WriterSettings, "IRONSTAR_WRITER_CONCURRENCY", "0", ">= 1"),
        (AuthSettings, "IRONSTAR_AUTH_LEEWAY_S", "-3", ">= 0"),
        (LimitSettings, "IRONSTAR_LIMIT_REQUESTS_PER_S", "-1", ">= 0"),
        (LimitSettings, "IRONSTAR_LIMIT_JSON_DEPTH", "0", ">= 1"),
        (LimitSettings, "IRONSTAR_LIMIT_REQUESTS_PER_S", "inf", "<= 1000000000"),
        (AuthSettings, "IRONSTAR_AUTH_COOKIE_NAME", "a b", "matching"),
    ],
)
def test_a_setting_outside_its_domain_is_refused_naming_its_variable_and_value(
    section: Section, variable: str, value: str, says: str
) -> None:
    with pytest.raises(Invalid) as refused:
        section.from_env({variable: value})
    message = refused.value.message
    assert message.startswith(f"{variable}={value!r}: expected"), message
    assert says in message, message


@pytest.mark.parametrize(
    ("section", "variable", "value"),
    [
        (ProjectorSettings, "IRONSTAR_PROJECTOR_CATCHUP_PROCESS_ABOVE", "0"),  # the child off
        (ProjectorSettings, "IRONSTAR_PROJECTOR_BATCH_MS", "0"),
        (ProjectorSettings, "IRONSTAR_PROJECTOR_METRICS_PORT", "-1"),  # off
        (ProjectorSettings, "IRONSTAR_PROJECTOR_ON_POISON", "halt"),
        (GatewaySettings, "IRONSTAR_GATEWAY_PORT", "0"),
        (GatewaySettings, "IRONSTAR_GATEWAY_SSE_SEND_BUFFER_BYTES", "0"),  # the OS default
        (LimitSettings, "IRONSTAR_LIMIT_REQUESTS_PER_S", "0"),  # off
        (NatsSettings, "IRONSTAR_NATS_REPLICAS", "3"),
        (NatsSettings, "IRONSTAR_NATS_PREFIX", "acme.prod"),
        (GatewaySettings, "IRONSTAR_GATEWAY_SSE_SEND_BUFFER_BYTES", "2147483647"),
        (GatewaySettings, "IRONSTAR_GATEWAY_QUERY_TIMEOUT_S", "0.01"),
    ],
)
def test_a_value_at_a_bound_is_taken(section: Section, variable: str, value: str) -> None:
    field = variable.split("_", 2)[2].lower()
    default = getattr(section(), field)
    assert getattr(section.from_env({variable: value}), field) == type(default)(value)


@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: s.env_prefix)
def test_every_default_is_within_its_bounds(section: Section) -> None:
    assert section.from_env({}) == section()


def test_every_section_is_checked_before_a_command_starts_several_services() -> None:
    check_all({})  # the defaults
    with pytest.raises(Invalid, match="IRONSTAR_WRITER_CONCURRENCY='0'"):
        check_all({"IRONSTAR_GATEWAY_PORT": "8001", "IRONSTAR_WRITER_CONCURRENCY": "0"})
