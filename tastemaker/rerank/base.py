"""What the trade-off rerankers share: the ``weight`` knob and one greedy loop.

MMR, calibration and xQuAD all build the list one item at a time: at each step every item
still in the pool gets a marginal score, ``(1 - weight) * relevance + weight * (a term that
depends on what was picked so far)``, and the best one is appended. :class:`GreedyReranker`
runs that loop once; each reranker supplies its :class:`Objective` (the second term, how it
changes after a pick, and the reason to give for a promoted item).

Conventions every greedy reranker follows:

* **relevance** is the input list's score, min-max normalised over the list (:func:`relevance`),
  so ``weight`` means the same whatever scale the ranker's scores have;
* ``weight == 0`` returns the first ``n`` items exactly as given (no score is consulted);
* an item is **promoted** when it is picked while an item the ranker put above it is still
  in the pool: its ``sources[i]`` becomes the reranker's name and ``reasons[i]`` the
  objective's reason; every other item keeps its source and reason ("" when it had none,
  which the pipeline fills from the source's own explanation);
* the returned **scores** are the input's scores sorted best first and laid along the new
  order: the list stays best-first and on the ranker's scale, so a later reranker (or the
  explorer) reads the reranked order as *the* ranking. Each source's own scores and ranks are
  kept, aligned, in ``source_scores``/``source_ranks``;
* ties between equal marginal scores go to the item the ranker put first.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from tastemaker.pipeline.base import Reranker, Source, StageConfig
from tastemaker.types import ItemList, Query


class TradeOffConfig(StageConfig):
    """``weight`` in [0, 1]: how much the reranker's goal counts against relevance (0 leaves
    the ranking as it is, 1 ignores relevance except to break ties). ``pool``: only the
    ranker's first ``pool`` items compete (None: the whole input list); the cost of a greedy
    step grows with the pool (MMR's similarity matrix with its square), so a served pipeline
    caps it."""

    weight: float = Field(0.3, ge=0.0, le=1.0)
    pool: int | None = Field(None, ge=1)


def relevance(scores: np.ndarray) -> np.ndarray:
    """The scores min-max normalised to [0, 1] over the list (float64). A constant list is
    all ones; a NaN or -inf score counts as the list's minimum, +inf as its maximum."""
    values = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.ones(len(values))
    low, high = values[finite].min(), values[finite].max()
    values = np.where(np.isnan(values), low, np.clip(values, low, high))
    span = high - low
    return (values - low) / span if span > 0 else np.ones(len(values))


class Objective(ABC):
    """The reranker-specific part of a greedy rerank over one pool (the input list)."""

    @abstractmethod
    def gains(self) -> np.ndarray:
        """The non-relevance term of every pool item's marginal score, given the picks so far
        (float64, one per pool item; values for picked items are ignored)."""

    @abstractmethod
    def add(self, position: int) -> None:
        """Pool item ``position`` was picked: update the state :meth:`gains` reads."""

    @abstractmethod
    def reason(self, position: int) -> str:
        """Why pool item ``position`` was promoted (called just before :meth:`add`)."""


class GreedyReranker(Reranker):
    """A reranker that builds its list greedily (see the module docstring); a subclass
    implements :meth:`objective`."""

    Config = TradeOffConfig
    config: TradeOffConfig

    @abstractmethod
    def objective(self, query: Query, items: ItemList) -> Objective | None:
        """The objective for ``items`` (the whole input list is the pool), or None when there
        is nothing to trade off for this query (the ranking is then kept as it is)."""

    def rerank(self, query: Query, items: ItemList, n: int) -> ItemList:
        self._check_fitted()
        count = min(int(n), len(items))
        if count <= 0:
            return items.take(np.zeros(0, dtype=np.int64))
        weight = self.config.weight
        pool = self.config.pool
        if pool is not None and count <= pool < len(items):
            items = items.take(np.arange(pool))  # only the ranker's first `pool` items compete
        objective = self.objective(query, items) if weight > 0 else None
        if objective is None:
            return items.take(np.arange(count))
        rel = relevance(items.scores)
        available = np.ones(len(items), dtype=bool)
        order = np.empty(count, dtype=np.int64)
        sources = list(items.sources) if items.sources else [""] * len(items)
        reasons = list(items.reasons) if items.reasons else [""] * len(items)
        for step in range(count):
            marginal = (1.0 - weight) * rel + weight * objective.gains()
            marginal[~available] = -np.inf
            pick = int(np.argmax(marginal))  # the first maximum: ties go to the ranker's order
            if pick != int(np.argmax(available)):  # an item ranked above it is still waiting
                sources[pick], reasons[pick] = self.name, objective.reason(pick)
            objective.add(pick)
            available[pick] = False
            order[step] = pick
        best_first = -np.sort(-items.scores)  # (a NaN score, if any, sorts last)
        out = items.take(order, scores=best_first[:count])
        return out.with_provenance(sources=[sources[k] for k in order], reasons=[reasons[k] for k in order])


# ---------------------------------------------------------------------- item vectors
#: Above this many catalog categories, category similarities are computed sparse.
DENSE_CATEGORIES = 64


class ItemVectors:
    """Item vectors for similarity: a named model source's ``item_vectors()`` (rows looked
    up by item id, since the model's codes need not be the context's) or, without a source,
    the context's category rows. Rows are L2-normalised; an item with no vector (unknown to
    the model, or without categories) is a zero row, so it is similar to nothing."""

    def __init__(self, reranker: Reranker, source_name: str | None) -> None:
        self.reranker = reranker
        self.source_name = source_name
        self.source: Source | None = None
        self._cache: tuple[tuple[int, int], np.ndarray, np.ndarray] | None = None

    def use_sources(self, sources: Sequence[Source]) -> None:
        """Find the named source among the pipeline's (when a source is named)."""
        if self.source_name is None:
            return
        by_name = {s.name: s for s in sources}
        if self.source_name not in by_name:
            raise ValueError(f"{self.reranker.name}: vectors = {self.source_name!r} names no source of this pipeline "
                             f"(its sources: {', '.join(by_name) or 'none'})")
        source = by_name[self.source_name]
        model: Any = getattr(source, "model_", None)
        if model is None or not callable(getattr(model, "item_vectors", None)):
            raise ValueError(f"{self.reranker.name}: vectors = {self.source_name!r}: that source's model has no "
                             "item_vectors() (use a vector model such as als, bpr, two-tower or content, or leave "
                             "vectors unset for the catalog categories)")
        self.source = source
        self._cache = None

    def similarity(self, codes: np.ndarray) -> np.ndarray:
        """Cosine similarity (float64, len(codes) x len(codes)) between context ``codes``."""
        codes = np.asarray(codes, dtype=np.int64)
        categories = self.reranker.context_.categories
        if self.source_name is None and categories.shape[1] > DENSE_CATEGORIES:
            # many categories, a few per item (Beauty: 3.7 of 637): a sparse Gram matrix is
            # 5x faster than a dense one there (and 3x slower with MovieLens's 19 genres)
            rows = sp.csr_matrix(categories[codes], dtype=np.float64)
            per_row = np.diff(rows.indptr)
            norms = np.sqrt(np.bincount(np.repeat(np.arange(len(codes)), per_row), weights=rows.data**2, minlength=len(codes)))
            rows.data /= np.repeat(norms, per_row)
            return np.asarray((rows @ rows.T).toarray())
        vectors = self.rows(codes)
        return vectors @ vectors.T

    def rows(self, codes: np.ndarray) -> np.ndarray:
        """L2-normalised vectors (float64) of context ``codes``, one row each."""
        context = self.reranker.context_
        if self.source_name is None:
            block = context.categories[np.asarray(codes, dtype=np.int64)].toarray().astype(np.float64)
        else:
            if self.source is None:
                raise RuntimeError(f"{self.reranker.name}: vectors = {self.source_name!r} needs the pipeline's sources: "
                                   "call use_sources(pipeline.sources) after fit or load")
            lookup, vectors = self._model_vectors()
            rows = lookup[np.asarray(codes, dtype=np.int64)]
            block = np.where((rows >= 0)[:, None], vectors[np.maximum(rows, 0)], 0.0)
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        return np.divide(block, norms, out=np.zeros_like(block), where=norms > 0)

    def _model_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(context code -> model row, -1 if unknown; the model's vectors), cached until the
        context or the model gains items."""
        source: Any = self.source
        model: Any = source.model_
        key = (len(self.reranker.context_.items), len(model.items_))
        if self._cache is None or self._cache[0] != key:
            lookup = source.model_rows(np.arange(key[0]))  # the source's own (cached) code map
            vectors = np.asarray(model.item_vectors(), dtype=np.float64)
            lookup[lookup >= len(vectors)] = -1
            self._cache = (key, lookup, vectors)
        return self._cache[1], self._cache[2]
