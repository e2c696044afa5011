"""The machinery every pipeline stage shares: typed config, fitting, persistence.

A stage is a source, a ranker, a reranker or an explorer (the contracts are in
:mod:`tastemaker.protocols`). Each has a ``kind`` (its name in a pipeline TOML file), a
pydantic ``Config`` (typed; a misspelt key is an error) and an instance ``name`` (unique in a
pipeline; it labels candidates, explanations and metrics). Like a model, ``__init__`` stores
the config only, ``fit(dataset, context, options)`` returns self, and fitted state ends with
``_``. A stage's fitted state is saved as named arrays (:meth:`Stage.arrays`) and, for stages
that wrap a whole model, a directory of its own (:meth:`Stage.save_files`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from tastemaker.data.dataset import Dataset
from tastemaker.errors import NotFittedError
from tastemaker.models.base import ModelConfig, top_k_unordered
from tastemaker.pipeline.context import Context, Resolved
from tastemaker.types import FitOptions, ItemList, Query, Slate


class StageConfig(ModelConfig):
    """Base of stage configs (typed, frozen, unknown keys are errors)."""


class Stage(ABC):
    kind: ClassVar[str] = "stage"
    Config: ClassVar[type[StageConfig]] = StageConfig
    context_: Context

    def __init__(self, config: StageConfig | None = None, *, name: str | None = None, **params: Any) -> None:
        if config is not None and params:
            raise TypeError("pass either a config or keyword parameters, not both")
        self.config = config if config is not None else self.Config(**params)
        self.name = name or self.kind

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items())
        return f"{type(self).__name__}(name={self.name!r}{', ' if params else ''}{params})"

    def fit(self, dataset: Dataset, context: Context, options: FitOptions) -> Self:
        """Learn what the stage needs from ``dataset``; ``context`` is the pipeline's."""
        self.context_ = context
        self._fit(dataset, options)
        return self

    def _fit(self, dataset: Dataset, options: FitOptions) -> None:  # noqa: B027 - most stages learn nothing
        """Stage-specific fitting (the context is already in ``context_``)."""

    def bind(self, context: Context) -> None:
        """Attach a loaded stage to the pipeline's (loaded) context."""
        self.context_ = context

    def _check_fitted(self) -> None:
        if not hasattr(self, "context_"):
            raise NotFittedError(f"{self!r} is not fitted: fit the pipeline or load it")

    # ------------------------------------------------------------------ persistence
    def arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as named arrays (none by default)."""
        return {}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:  # noqa: B027
        """Restore :meth:`arrays`."""

    def save_files(self, path: Path) -> None:  # noqa: B027
        """Write state that is not arrays (a wrapped model's artifact) under ``path``."""

    def load_files(self, path: Path) -> None:  # noqa: B027
        """Read what :meth:`save_files` wrote."""

    # ------------------------------------------------------------------ new items
    def add_items(self, catalog: Any, codes: np.ndarray) -> None:  # noqa: B027
        """New catalog rows arrived (already in the context under ``codes``); a stage that can
        use them at once does so here."""


class Source(Stage):
    """A candidate source (see :class:`tastemaker.protocols.Source`)."""

    kind = "source"

    def retrieve(self, queries: Sequence[Query], k: int) -> list[ItemList]:
        self._check_fitted()
        return self.retrieve_resolved(self.context_.resolve(queries), k)

    @abstractmethod
    def retrieve_resolved(self, queries: Sequence[Resolved], k: int) -> list[ItemList]:
        """:meth:`retrieve` for queries already resolved against the context (the pipeline
        resolves each query once for all its sources)."""

    def explain(self, query: Resolved, codes: np.ndarray) -> list[str]:
        """Why this source proposed each of ``codes`` for ``query`` (one line each)."""
        return [f"recommended by {self.name}"] * len(codes)

    def _listed(self, codes: np.ndarray, scores: np.ndarray) -> ItemList:
        """An ItemList of this source's codes (context codes) and scores."""
        codes = np.asarray(codes, dtype=np.int32)
        return ItemList(self.context_.items.decode(codes), codes, np.asarray(scores, dtype=np.float32),
                        sources=(self.name,) * len(codes))


class Ranker(Stage):
    """Orders merged candidates (see :class:`tastemaker.protocols.Ranker`)."""

    kind = "ranker"
    #: True for rankers that learn from labelled candidates (``features_for`` + ``fit_features``).
    learned: ClassVar[bool] = False

    @abstractmethod
    def rank(self, queries: Sequence[Query], candidates: Sequence[ItemList]) -> list[ItemList]: ...

    def rank_resolved(self, queries: Sequence[Resolved], candidates: Sequence[ItemList]) -> list[ItemList]:
        """:meth:`rank` for queries the pipeline already resolved (a learned ranker reads the
        resolved history; resolving again cost ~0.1 ms per request)."""
        return self.rank([q.query for q in queries], candidates)

    def use_sources(self, sources: Sequence[Source]) -> None:  # noqa: B027 - fusion needs no sources
        """The pipeline's (fitted) sources, for rankers whose features read them."""

    def features_for(
        self, context: Context, sources: Sequence[Source], queries: Sequence[Resolved], candidates: Sequence[ItemList]
    ) -> np.ndarray:
        """Learned rankers: the stacked feature rows of ``candidates[i]`` for ``queries[i]``,
        retrieved by ``sources`` fitted in ``context`` (one training cut; see :meth:`Pipeline.fit`)."""
        raise NotImplementedError(f"{type(self).__name__} does not learn")

    def fit_features(
        self, x: np.ndarray, labels: Sequence[np.ndarray], options: FitOptions, groups: np.ndarray | None = None
    ) -> None:
        """Learned rankers: fit on stacked rows ``x`` whose consecutive blocks are the candidate
        lists labelled by ``labels`` (1.0 for a held-out item, 0 else); ``groups``: per list,
        (user code, training cut)."""
        raise NotImplementedError(f"{type(self).__name__} does not learn")


class Reranker(Stage):
    """Reorders/filters one list (see :class:`tastemaker.protocols.Reranker`)."""

    kind = "reranker"

    @abstractmethod
    def rerank(self, query: Query, items: ItemList, n: int) -> ItemList: ...

    def use_sources(self, sources: Sequence[Source]) -> None:  # noqa: B027 - most rerankers need none
        """The pipeline's (fitted) sources, for rerankers that read a source's item vectors."""


class Explorer(Stage):
    """Picks the shown slate (see :class:`tastemaker.protocols.Explorer`)."""

    kind = "explorer"

    @abstractmethod
    def select(self, query: Query, items: ItemList, k: int) -> Slate: ...

    def update(self, feedback: Sequence[Any]) -> None:  # noqa: B027 - a fixed explorer learns nothing
        """Learn from what happened to shown slates (clicks, conversions)."""

    def use_sources(self, sources: Sequence[Source]) -> None:  # noqa: B027 - most explorers need none
        """The pipeline's (fitted) sources, for explorers that read a source's vectors."""


def top_codes(scores: np.ndarray, k: int, query: Resolved) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best finite scores of one row for ``query`` (its blocked codes left out, only
    allowed codes kept), best first, ties to the lower code: (codes, scores)."""
    scores = np.array(scores, dtype=np.float32, copy=True)
    if query.allowed is not None:
        keep = np.full(scores.shape, -np.inf, dtype=np.float32)
        keep[query.allowed[query.allowed < len(scores)]] = 0.0
        scores += keep
    if len(query.blocked):
        scores[query.blocked[query.blocked < len(scores)]] = -np.inf
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, np.int32), np.zeros(0, np.float32)
    part = top_k_unordered(scores[None, :], k)[0]
    order = np.lexsort((part, -scores[part]))
    top = part[order]
    top = top[np.isfinite(scores[top])]
    return top.astype(np.int32), scores[top]
