"""Request and response bodies of the HTTP API (pydantic v2). Validation errors name the field.

The API is strict where the store and the models need it (:class:`Strict`): a bool must be a
JSON ``true``/``false`` and a number a JSON number (``0`` is not ``false``, ``"5"`` and
``true`` are not numbers; an integer is a fine float); NaN and infinities are refused; no
string may hold the NUL character (PostgreSQL refuses it) and ids may not hold ``/`` (a path
segment could not name them). Every limit is in the OpenAPI schema. Every error response has
one shape, :class:`ErrorOut`.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import Path as PathParam
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

#: Ids (users, items) in bodies and paths: 1-256 characters, no '/' (it would end the path
#: segment, so the item could be stored but never fetched or deleted) and no NUL.
ID_PATTERN = r"^[^/\x00]+$"
#: Any other string: no NUL.
TEXT_PATTERN = r"^[^\x00]*$"
#: |value| of an event: models sum values in float32 (max 3.4e38); a bound this far below it
#: keeps any realistic sum of them finite.
MAX_EVENT_VALUE = 1e9
#: Timestamps and created_at: unix seconds from 1970 to the end of year 9999.
MAX_TIMESTAMP = 253_402_300_799.0
#: Nesting depth of attributes, context and params (JSON objects and arrays).
MAX_JSON_DEPTH = 32
#: Entries (ids, categories) in one list of a recommendation request.
MAX_LIST = 1000

Id = Field(min_length=1, max_length=256, pattern=ID_PATTERN)
#: Path parameters: the same rules as ids in bodies; model versions are v0001, v0002...
ItemIdPath = Annotated[str, PathParam(min_length=1, max_length=256, pattern=ID_PATTERN)]
UserIdPath = Annotated[str, PathParam(min_length=1, max_length=256, pattern=ID_PATTERN)]
NamePath = Annotated[str, PathParam(min_length=1, max_length=256, pattern=ID_PATTERN)]
VersionPath = Annotated[str, PathParam(pattern=r"^v[0-9]{1,9}$", description="a model version: v0001, v0002...")]
Category = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=TEXT_PATTERN)]
ItemRef = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=TEXT_PATTERN)]


def _check_json(value: Any, where: str, depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels at {where or 'the top'}")
    if isinstance(value, dict):
        for key, inner in value.items():
            if not isinstance(key, str):  # json.loads never makes one; a Python caller could
                raise ValueError(f"key {key!r:.40} at {where or 'the top'} is not a string")
            _check_string(key, f"key {key!r:.40} at {where or 'the top'}")
            _check_json(inner, f"{where}.{key}" if where else key, depth + 1)
    elif isinstance(value, list):
        for k, inner in enumerate(value):
            _check_json(inner, f"{where}[{k}]", depth + 1)
    elif isinstance(value, str):
        _check_string(value, f"the string at {where}")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} at {where} is not a finite number")
    elif value is not None and not isinstance(value, bool | int | float):
        raise ValueError(f"{type(value).__name__} at {where} is not a JSON value")


def _check_string(value: str, what: str) -> None:
    if "\x00" in value:
        raise ValueError(f"{what} contains a NUL character")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{what} is not valid Unicode (a lone surrogate)") from None


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    """What the store can keep as JSON and give back equal: finite numbers, strings without
    NUL, at most :data:`MAX_JSON_DEPTH` levels."""
    _check_json(value, "", 1)
    return value


#: A JSON object as attributes, context or params hold it (checked by :func:`_json_object`).
JsonObject = Annotated[dict[str, Any], AfterValidator(_json_object)]


class Strict(BaseModel):
    """Request bodies: no unknown fields, no type coercion, no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class ItemIn(Strict):
    item_id: str = Id
    title: str = Field("", max_length=2000, pattern=TEXT_PATTERN)
    text: str = Field("", max_length=100_000, pattern=TEXT_PATTERN)
    categories: list[Category] = Field(default_factory=list, max_length=100)
    attributes: JsonObject = Field(default_factory=dict)
    available: bool = True
    created_at: float | None = Field(None, ge=0, le=MAX_TIMESTAMP, description="unix seconds; default: now")


class ItemsIn(Strict):
    items: list[ItemIn] = Field(min_length=1)


class ItemOut(BaseModel):
    item_id: str
    title: str
    text: str
    categories: list[str]
    attributes: dict[str, Any]
    available: bool
    created_at: float


class AvailabilityIn(Strict):
    available: bool


class UserIn(Strict):
    user_id: str = Id
    attributes: JsonObject = Field(default_factory=dict)


class UsersIn(Strict):
    users: list[UserIn] = Field(min_length=1)


class EventIn(Strict):
    user_id: str = Id
    item_id: str = Id
    event_type: str = Field("interaction", min_length=1, max_length=64, pattern=TEXT_PATTERN)
    value: float = Field(1.0, ge=-MAX_EVENT_VALUE, le=MAX_EVENT_VALUE)
    timestamp: float | None = Field(None, ge=0, le=MAX_TIMESTAMP, description="unix seconds; default: now")
    context: JsonObject = Field(default_factory=dict)
    event_id: str | None = Field(
        None, min_length=1, max_length=256, pattern=TEXT_PATTERN,
        description="a client-chosen id (e.g. a UUID made before the first send): the service keeps one event "
        "per (user_id, event_id), so retrying an event whose acknowledgement was lost is a no-op",
    )

class EventsIn(Strict):
    events: list[EventIn] = Field(min_length=1)


class Accepted(BaseModel):
    accepted: int


class EventsAccepted(Accepted):
    """``accepted``: how many of the request's events are now stored (retries included);
    ``duplicates``: how many of those were stored already (a retried ``event_id``)."""

    duplicates: int = 0


class UserEventOut(BaseModel):
    id: int
    item_id: str
    event_type: str
    value: float
    timestamp: float
    context: dict[str, Any]
    event_id: str | None = None


class UserEventsOut(BaseModel):
    """A page of a user's events, oldest first; pass ``next_before`` as ``before`` for older ones."""

    user_id: str
    events: list[UserEventOut]
    next_before: int | None


class UserDeleted(BaseModel):
    user_id: str
    events: int
    users: int
    assignments: int


class SessionIn(Strict):
    """An anonymous session: recent item ids, oldest first."""

    items: list[ItemRef] = Field(default_factory=list, max_length=MAX_LIST)
    n: int = Field(10, ge=1)  # the schema's maximum is the max_n setting (serve/openapi.py)
    categories: list[Category] = Field(default_factory=list, max_length=MAX_LIST)
    exclude: list[ItemRef] = Field(default_factory=list, max_length=MAX_LIST)
    context: JsonObject = Field(default_factory=dict)


class RecommendationOut(BaseModel):
    item_id: str
    title: str
    score: float
    source: str
    reason: str
    team: str | None = None
    #: P(the explorer shows this item at this position): 1 unless a bandit explored here
    propensity: float = 1.0


class RecommendationsOut(BaseModel):
    user_id: str | None
    model_version: str | None
    variant: str | None = None
    request_id: str
    #: the explorer's policy and its version ("greedy" when nothing explores)
    policy: str = "greedy"
    policy_version: str = "0"
    items: list[RecommendationOut]


class TrainIn(Strict):
    """What to train: a shipped pipeline by name, or a one-source pipeline over ``model``
    with ``params``; neither: the configured ``training`` settings."""

    pipeline: str | None = Field(None, max_length=64, pattern=TEXT_PATTERN)
    model: str | None = Field(None, max_length=64, pattern=TEXT_PATTERN)
    params: JsonObject | None = None
    activate: bool = True
    wait: bool = False


class FieldError(BaseModel):
    field: str
    message: str


class ErrorOut(BaseModel):
    """Every error response, whatever its status.

    ``error`` says what went wrong (for bad input it starts with the field); ``field`` is the
    dotted location of the bad input (``body.events.0.value``, ``query.n``, ``path.item_id``)
    when one is at fault; ``request_id`` is the id of this request (also the ``X-Request-ID``
    header), under which a 500 is logged with its traceback; ``details`` lists every
    validation problem of a 422."""

    error: str
    field: str | None = None
    request_id: str | None = None
    details: list[FieldError] | None = None


#: What each error status means here, for the OpenAPI schema.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "the request could not be read: a body that is not UTF-8 JSON (an ErrorOut), or malformed HTTP "
         "(answered in plain text by the HTTP server before the app sees it)",
    401: "no API key, or an unknown one",
    403: "the API key lacks the scope this route needs",
    404: "no such resource",
    409: "conflicts with the service's state (e.g. a training run is in progress)",
    413: "the body is larger than max_request_bytes, or holds more than max_items_per_request entries",
    422: "invalid input: `field` names it",
    429: "a rate limit (per key, or of failed authentication per address); see Retry-After",
    500: "an internal error, logged under `request_id`",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: the error statuses only it returns (404, 409...). The ones
    every route shares (401, 403, 413, 422, 429, 500) are added by serve/openapi.py."""
    return {code: {"model": ErrorOut, "description": ERROR_DESCRIPTIONS[code]} for code in codes}


class ChatIn(Strict):
    """One user message of a conversation: ``session_id`` keeps the dialogue state between
    requests; ``user_id`` (optional) brings the user's history and memory."""

    session_id: str = Field(min_length=1, max_length=128, pattern=ID_PATTERN)
    message: str = Field(min_length=1, max_length=4000, pattern=TEXT_PATTERN)
    user_id: str | None = Field(None, min_length=1, max_length=256, pattern=ID_PATTERN)


class ChatItemOut(BaseModel):
    item_id: str
    title: str
    year: int | None = None
    genres: list[str] = []
    score: float
    reason: str
    source: str


class ChatOut(BaseModel):
    """The answer (it names only catalog items, each checked before it is returned), the
    items with reasons, and the dialogue state (mentions, likes, requested genres and years)."""

    session_id: str
    answer: str
    items: list[ChatItemOut]
    state: dict[str, Any]
    refused: bool
    category: str
    model_version: str | None
