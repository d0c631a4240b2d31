"""The `user_profile` aggregate: register, update, deactivate."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct
from msgspec.structs import replace

from examples.todo.rules import bounded_text, email, possible, require


class RegisterUser(
    Struct, frozen=True, tag="register_user", tag_field="type", forbid_unknown_fields=True
):
    name: str
    email: str


class UpdateProfile(
    Struct, frozen=True, tag="update_profile", tag_field="type", forbid_unknown_fields=True
):
    name: str | None = None
    email: str | None = None


class DeactivateUser(
    Struct, frozen=True, tag="deactivate_user", tag_field="type", forbid_unknown_fields=True
):
    pass


Command = RegisterUser | UpdateProfile | DeactivateUser


# Event fields carry the domain `decide` guarantees (see `examples/todo/rules.py`).
Name = Annotated[str, Meta(min_length=1, max_length=100)]
Email = Annotated[str, Meta(min_length=3, max_length=254)]


class UserRegistered(Struct, frozen=True, tag="user_registered", tag_field="event_type"):
    name: Name
    email: Email


class ProfileUpdated(
    Struct, frozen=True, tag="profile_updated", tag_field="event_type", omit_defaults=True
):
    name: Name | None = None
    email: Email | None = None


class UserDeactivated(Struct, frozen=True, tag="user_deactivated", tag_field="event_type"):
    pass


Event = UserRegistered | ProfileUpdated | UserDeactivated
SCHEMAS: dict[str, int] = {}
CRITICAL = frozenset({"user_deactivated"})


class UserProfile(Struct, frozen=True):
    registered: bool = False
    active: bool = False
    name: str = ""
    email: str = ""


INITIAL = UserProfile()


def decide(state: UserProfile, command: Command) -> list[Event]:
    match command:
        case RegisterUser(name=name, email=address):
            require(not state.registered, "this user id is already registered; pick another id")
            return [UserRegistered(name=bounded_text(name, "name", 100), email=email(address))]
        case UpdateProfile(name=name, email=address):
            require(state.registered, "this user is not registered; register it first")
            require(state.active, "this user was deactivated; deactivated users cannot change")
            if name is None and address is None:
                return []
            new_name = None if name is None else bounded_text(name, "name", 100)
            new_email = None if address is None else email(address)
            changed = ProfileUpdated(
                name=new_name if new_name != state.name else None,
                email=new_email if new_email != state.email else None,
            )
            return [] if changed == ProfileUpdated() else [changed]
        case DeactivateUser():
            require(state.registered, "this user is not registered; register it first")
            return [UserDeactivated()] if state.active else []


def evolve(state: UserProfile, event: Event) -> UserProfile:
    """The state after `event`; ImpossibleEvent for an event `decide` could not have made
    here (a second registration, a change of a user not registered or deactivated)."""
    match event:
        case UserRegistered(name=name, email=address):
            possible(not state.registered, "the user was registered before")
            return UserProfile(registered=True, active=True, name=name, email=address)
        case ProfileUpdated(name=name, email=address):
            possible(state.active, "the user is not registered or was deactivated")
            return replace(
                state,
                name=state.name if name is None else name,
                email=state.email if address is None else address,
            )
        case UserDeactivated():
            possible(state.active, "the user is not registered or was deactivated")
            return replace(state, active=False)
