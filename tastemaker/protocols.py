"""The contracts between the parts, as ``typing.Protocol`` classes.

Each contract has a conformance suite in :mod:`tastemaker.testing` that every implementation
passes. ``Recommender`` is an abstract base class (:mod:`tastemaker.models.base`) because it
also carries the shared machinery; the others are plain protocols.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # the main contract lives with its machinery; importing it here would pull pandas/scipy
    from tastemaker.models.base import Recommender  # noqa: F401


@runtime_checkable
class VectorIndex(Protocol):
    """Nearest neighbours by inner product over item vectors.

    ``add(ids, vectors)`` appends (ids are int64 item codes); ``search(queries, k)`` returns
    ``(ids, scores)``, both shaped (len(queries), k), best first, id -1 / score -inf where
    fewer than k vectors exist. ``exact.py`` is the reference every ANN index is tested
    against for recall."""

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def __len__(self) -> int: ...


#: Event types that record what the system *showed* (with its propensity in the context),
#: not what the user did. They are never training positives, never count as a user's
#: history or an item's popularity; experiments and off-policy evaluation read them.
EXPOSURE_TYPES: tuple[str, ...] = ("impression",)


@dataclass(frozen=True)
class Event:
    """One interaction as the store keeps it. ``timestamp`` is unix seconds (float).

    ``event_id`` is an optional id chosen by the client (e.g. a UUID made before the first
    send): the store keeps one event per ``(user_id, event_id)``, so a retry of an event
    whose acknowledgement was lost is a no-op instead of a duplicate."""

    user_id: str
    item_id: str
    event_type: str = "interaction"
    value: float = 1.0
    timestamp: float = 0.0
    context: dict[str, Any] = field(default_factory=dict)
    event_id: str | None = None


@dataclass(frozen=True)
class Item:
    """One catalog entry as the store keeps it."""

    item_id: str
    title: str = ""
    text: str = ""
    categories: tuple[str, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)
    available: bool = True
    created_at: float = 0.0


@runtime_checkable
class Store(Protocol):
    """Durable state behind the service: catalog, users, events, experiment assignments.

    ``append_events`` returns only once the events are durable (committed and synced per the
    backend's durability setting): an acknowledged event survives a crash. ``history`` returns
    a user's most recent events, oldest first."""

    def append_events(self, events: Sequence[Event]) -> int: ...

    def history(self, user_id: str, limit: int = 200) -> list[Event]: ...

    def upsert_items(self, items: Iterable[Item]) -> int: ...

    def get_item(self, item_id: str) -> Item | None: ...

    def delete_item(self, item_id: str) -> bool: ...

    def set_available(self, item_id: str, available: bool) -> bool: ...

    def upsert_users(self, users: Iterable[tuple[str, dict[str, Any]]]) -> int: ...

    def count_events(self) -> int: ...

    def close(self) -> None: ...
