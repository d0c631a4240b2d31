"""Given events, when a `user_profile` command, then events or the rejection."""

from __future__ import annotations

from typing import Any

import pytest

from common.catalogue import aggregate
from common.errors import Invalid, RuleViolation
from examples.todo.user_profile import ProfileUpdated, UserDeactivated, UserRegistered

user_profile = aggregate("user_profile")

ADA = UserRegistered(name="Ada", email="ada@example.com")


def when(given: list[Any], command_type: str, **payload: Any) -> list[Any]:
    state = user_profile.fold(given)
    return user_profile.decide(state, user_profile.command(command_type, payload))


def test_register_user_yields_user_registered_with_trimmed_fields() -> None:
    assert when([], "register_user", name=" Ada ", email=" ada@example.com") == [ADA]


def test_registering_a_registered_id_again_is_refused() -> None:
    with pytest.raises(RuleViolation, match="already registered"):
        when([ADA], "register_user", name="Ada", email="ada@example.com")


@pytest.mark.parametrize(
    "address", ["ada", "ada@", "@example.com", "ada@example", "a da@example.com", "a@b@c.de"]
)
def test_register_user_with_a_malformed_email_is_invalid_naming_email(address: str) -> None:
    with pytest.raises(Invalid) as caught:
        when([], "register_user", name="Ada", email=address)
    assert caught.value.detail["field"] == "email"


@pytest.mark.parametrize("name", ["", "  ", "n" * 101])
def test_register_user_with_a_blank_or_long_name_is_invalid_naming_name(name: str) -> None:
    with pytest.raises(Invalid) as caught:
        when([], "register_user", name=name, email="ada@example.com")
    assert caught.value.detail["field"] == "name"


def test_update_profile_yields_only_the_fields_that_changed() -> None:
    assert when([ADA], "update_profile", name="Ada L.", email="ada@example.com") == [
        ProfileUpdated(name="Ada L.")
    ]


def test_update_profile_without_a_change_yields_no_events() -> None:
    assert when([ADA], "update_profile", name="Ada") == []
    assert when([ADA], "update_profile") == []


def test_update_profile_with_a_malformed_email_is_invalid() -> None:
    with pytest.raises(Invalid) as caught:
        when([ADA], "update_profile", email="nope")
    assert caught.value.detail["field"] == "email"


def test_update_of_an_unregistered_user_is_refused() -> None:
    with pytest.raises(RuleViolation, match="not registered"):
        when([], "update_profile", name="Ada")


def test_update_of_a_deactivated_user_is_refused() -> None:
    with pytest.raises(RuleViolation, match="deactivated"):
        when([ADA, UserDeactivated()], "update_profile", name="Ada L.")


def test_deactivate_user_yields_user_deactivated() -> None:
    assert when([ADA], "deactivate_user") == [UserDeactivated()]


def test_deactivating_a_deactivated_user_yields_no_events() -> None:
    assert when([ADA, UserDeactivated()], "deactivate_user") == []


def test_deactivate_of_an_unregistered_user_is_refused() -> None:
    with pytest.raises(RuleViolation, match="not registered"):
        when([], "deactivate_user")


def test_a_deactivated_user_cannot_register_again() -> None:
    with pytest.raises(RuleViolation, match="already registered"):
        when([ADA, UserDeactivated()], "register_user", name="Ada", email="ada@example.com")
