"""JetStream's refusals of a feed's consumer, as the HTTP errors they are.

A consumer is built from the request (`topics` → filter subjects, `capacity` → max ack
pending, `client_id` → its name), so most refusals are the request's fault and retrying
the same request can never succeed: those are 4xx naming the parameter, never a 503 with
`Retry-After` that an EventSource would retry forever. Error codes: nats-server
`server/errors.json` (JSConsumer* identifiers).
"""

from __future__ import annotations

from nats.js.errors import APIError

from common.errors import BadRequest, Conflict, Invalid, IronstarError, Unavailable

BY_PARAMETER: dict[int, str] = {
    10138: "topics",  # JSConsumerOverlappingSubjectFilters
    10139: "topics",  # JSConsumerEmptyFilter
    10093: "topics",  # JSConsumerFilterNotSubsetErr
    10136: "topics",  # JSConsumerDuplicateFilterSubjects
    10131: "topics",  # JSConsumerCreateFilterSubjectMismatchErr
    10137: "topics",  # JSConsumerMultipleFiltersNotAllowed
    10121: "capacity",  # JSConsumerMaxPendingAckExcessErrF
    10125: "capacity",  # JSConsumerMaxRequestBatchExceededF
    10102: "client_id",  # JSConsumerNameTooLongErrF
    10103: "client_id",  # JSConsumerBadDurableNameErr
    10127: "client_id",  # JSConsumerNameContainsPathSeparatorsErr
}
NAME_TAKEN = {
    10013,  # JSConsumerNameExistErr
    10105,  # JSConsumerExistingActiveErr
    10106,  # JSConsumerReplacementWithDifferentNameErr
    10148,  # JSConsumerAlreadyExists
}


def refusal(exc: APIError) -> IronstarError:
    """The error to answer for JetStream refusing to create or replace a feed's consumer."""
    said = f"{exc.description or ''} (JetStream err {exc.err_code})"
    field = BY_PARAMETER.get(exc.err_code or 0)
    if field is not None:
        return Invalid(f"{field}: the event stream refused this feed: {said}", field=field)
    if exc.err_code in NAME_TAKEN:
        return Conflict(
            f"client_id: another connection holds this feed's consumer with other settings: "
            f"{said}; use another client_id, or the same capacity and policy",
            field="client_id",
        )
    if exc.code == 400:
        return BadRequest(
            f"the event stream refused this feed: {said}; check topics, capacity and client_id",
            fields=["topics", "capacity", "client_id"],
        )
    return Unavailable(
        f"the event stream cannot be followed right now: {said}; retry", retry_after=1
    )
