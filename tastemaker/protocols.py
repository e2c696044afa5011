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

from tastemaker.types import ItemList, Query, Slate

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


# ---------------------------------------------------------------------- the pipeline's stages
# A pipeline is sources -> ranker -> rerankers -> explorer (tastemaker.pipeline). Each stage
# reads and writes ItemList (tastemaker.types); its conformance suite is in
# tastemaker.testing.pipeline. Fitting, saving and loading are the pipeline's business: each
# stage has ``fit(dataset, context, options)`` and ``arrays()``/``set_arrays()`` (see
# tastemaker.pipeline.base), so the contracts below are what serving calls.


@runtime_checkable
class Source(Protocol):
    """Finds candidates: for each query, up to ``k`` items, best first, never one the query's
    user has seen (unless ``Query.exclude_seen`` is False), nor one in ``Query.exclude``, and
    only ``Query.include`` items when that is given. ``ItemList.scores`` are the source's own
    scores; ``sources`` name the source. A source with nothing to go on returns an empty list."""

    name: str

    def retrieve(self, queries: Sequence[Query], k: int) -> list[ItemList]: ...


@runtime_checkable
class Ranker(Protocol):
    """Orders merged candidates: ``candidates[i]`` (an ItemList with ``source_scores`` and
    ``source_ranks`` columns, one per source) for ``queries[i]``; returns them ranked best
    first with the ranker's scores. It may drop nothing: filtering is a reranker's job."""

    def rank(self, queries: Sequence[Query], candidates: Sequence[ItemList]) -> list[ItemList]: ...


@runtime_checkable
class Reranker(Protocol):
    """Reorders and/or filters one ranked list down to at most ``n`` items (``n`` may be
    larger than what the next stage shows). An item whose place this stage decided says so
    in ``sources``/``reasons`` (e.g. ``"mmr"``, "added for variety")."""

    name: str

    def rerank(self, query: Query, items: ItemList, n: int) -> ItemList: ...


@runtime_checkable
class Explorer(Protocol):
    """Picks the slate shown: ``k`` items from the ranked list, each with the propensity with
    which it was chosen (1.0 for a deterministic pick), and learns from what happened next.
    The online-learning policies plug in here."""

    name: str

    def select(self, query: Query, items: ItemList, k: int) -> Slate: ...

    def update(self, feedback: Sequence[Any]) -> None: ...
