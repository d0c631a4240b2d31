"""A setting outside its bounds is refused at start, naming it (`common.settings`)."""

from __future__ import annotations

import pytest

from common.settings import GatewaySettings, Invalid, ProjectorSettings


@pytest.mark.parametrize(
    ("section", "variable", "value"),
    [
        (ProjectorSettings, "IRONSTAR_PROJECTOR_CATCHUP_PROCESS_ABOVE", "-1"),  # verify10 F6
        (ProjectorSettings, "IRONSTAR_PROJECTOR_CATCHUP_PROCESS_ABOVE", "many"),
        (GatewaySettings, "IRONSTAR_GATEWAY_SSE_RETRY_MS", "-5"),
    ],
)
def test_a_setting_outside_its_domain_is_refused_naming_it(
    section: type[ProjectorSettings | GatewaySettings], variable: str, value: str
) -> None:
    field = variable.split("_", 2)[2].lower()
    with pytest.raises(Invalid, match=field):
        section.from_env({variable: value})


def test_zero_turns_the_feed_process_off_and_is_accepted() -> None:
    settings = ProjectorSettings.from_env({"IRONSTAR_PROJECTOR_CATCHUP_PROCESS_ABOVE": "0"})
    assert settings.catchup_process_above == 0
