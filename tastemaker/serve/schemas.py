"""Request and response bodies of the HTTP API (pydantic v2). Validation errors name the field."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

Id = Field(min_length=1, max_length=256)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ItemIn(Strict):
    item_id: str = Id
    title: str = Field("", max_length=2000)
    text: str = Field("", max_length=100_000)
    categories: list[str] = Field(default_factory=list, max_length=100)
    attributes: dict[str, Any] = Field(default_factory=dict)
    available: bool = True
    created_at: float | None = None


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
    attributes: dict[str, Any] = Field(default_factory=dict)


class UsersIn(Strict):
    users: list[UserIn] = Field(min_length=1)


class EventIn(Strict):
    user_id: str = Id
    item_id: str = Id
    event_type: str = Field("interaction", min_length=1, max_length=64)
    value: float = 1.0
    timestamp: float | None = None
    context: dict[str, Any] = Field(default_factory=dict)

    @field_validator("value")
    @classmethod
    def finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v


class EventsIn(Strict):
    events: list[EventIn] = Field(min_length=1)


class Accepted(BaseModel):
    accepted: int


class SessionIn(Strict):
    """An anonymous session: recent item ids, oldest first."""

    items: list[str] = Field(default_factory=list, max_length=1000)
    n: int = Field(10, ge=1)
    categories: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    context: dict[str, Any] = Field(default_factory=dict)


class RecommendationOut(BaseModel):
    item_id: str
    title: str
    score: float
    source: str
    reason: str
    team: str | None = None


class RecommendationsOut(BaseModel):
    user_id: str | None
    model_version: str | None
    variant: str | None = None
    request_id: str
    items: list[RecommendationOut]


class TrainIn(Strict):
    model: str | None = None
    params: dict[str, Any] | None = None
    activate: bool = True
    wait: bool = False


class ErrorOut(BaseModel):
    error: str
    field: str | None = None
