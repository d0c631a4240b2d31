"""`user_profiles`: one row per registered user, applied as SQL over the staged batch:
users registered in the batch are inserted, every other touched user is updated once
with its last name, e-mail and state."""

from __future__ import annotations

from msgspec import Struct

from common.app import Projection, Query

# What `apply` reads (`events=`): a batch with none of them skips the statements.
USER_EVENTS = ("user_registered", "profile_updated", "user_deactivated")

INSERT_REGISTERED = """
INSERT INTO users
SELECT aggregate_id, payload->>'name', payload->>'email', true, occurred_at,
       occurred_at, sequence
FROM batch WHERE aggregate_type = 'user_profile' AND event_type = 'user_registered'
"""

UPDATE_CHANGED = """
UPDATE users AS u SET
    name = coalesce(c.name, u.name),
    email = coalesce(c.email, u.email),
    active = u.active AND NOT c.deactivated,
    updated_at = c.updated_at,
    updated_seq = c.updated_seq
FROM (
    SELECT aggregate_id AS user_id,
           arg_max(payload->>'name', sequence) FILTER (payload->>'name' IS NOT NULL) AS name,
           arg_max(payload->>'email', sequence) FILTER (payload->>'email' IS NOT NULL) AS email,
           bool_or(event_type = 'user_deactivated') AS deactivated,
           arg_max(occurred_at, sequence) AS updated_at,
           max(sequence) AS updated_seq
    FROM batch
    WHERE aggregate_type = 'user_profile' AND event_type <> 'user_registered'
    GROUP BY ALL
) AS c
WHERE u.user_id = c.user_id
"""


class UserId(Struct, frozen=True, forbid_unknown_fields=True):
    user_id: str


class User(Struct, frozen=True):
    user_id: str
    name: str
    email: str
    active: bool
    registered_at: str
    updated_seq: int


class UserSummary(Struct, frozen=True):
    user_id: str
    name: str
    email: str
    active: bool


projection = Projection(
    name="user_profiles",
    version=3,
    grant="user_profile",
    events=frozenset(USER_EVENTS),
    tables=("users",),
    ddl=(
        """CREATE TABLE IF NOT EXISTS users (
            user_id VARCHAR NOT NULL,
            name VARCHAR,
            email VARCHAR,
            active BOOLEAN,
            registered_at TIMESTAMPTZ,
            updated_at TIMESTAMPTZ NOT NULL,
            updated_seq BIGINT NOT NULL
        )""",
    ),
    apply=(INSERT_REGISTERED, UPDATE_CHANGED),
    queries={
        "get": Query(
            sql="""SELECT user_id, name, email, active, registered_at, updated_seq
                   FROM users WHERE user_id = $user_id""",
            params=UserId,
            result=User,
            one=True,
            key="user_id",
            missing="user {user_id!r} is not registered",
            description="One user profile.",
        ),
        "list": Query(
            sql="""SELECT user_id, name, email, active FROM users
                   ORDER BY registered_at DESC LIMIT 100""",
            result=list[UserSummary],
            description="The most recently registered users.",
        ),
    },
)
