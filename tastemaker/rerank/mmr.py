"""Maximal marginal relevance (Carbonell & Goldstein, SIGIR 1998): variety within a list.

The list is built greedily; at each step the next item is

    argmax_i  (1 - weight) * rel(i) - weight * max_{j picked} sim(i, j)

with ``rel`` the ranker's score min-max normalised over the list and ``sim`` the cosine of
item vectors: a named model source's ``item_vectors()`` (``vectors = "als"``) or, by default,
the items' catalog categories. (The paper's lambda is ``1 - weight``: here ``weight`` is the
share given to variety, 0 keeping the ranking.) The first item is always the most relevant.
An item picked over a more relevant one is marked ``sources[i] = name`` with the reason
"added for variety".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tastemaker.pipeline.base import Source, StageConfig
from tastemaker.rerank.base import GreedyReranker, ItemVectors, Objective, TradeOffConfig
from tastemaker.types import ItemList, Query

REASON = "added for variety"


class MMRConfig(TradeOffConfig):
    """``weight``: the share of variety (0 = the ranking as it is); ``vectors``: the name of
    a model source of the pipeline whose model has ``item_vectors()`` (its vectors give the
    similarity), or None for the catalog categories."""

    vectors: str | None = None


class _MaxSimilarity(Objective):
    """-max similarity to the picked items; before the first pick, 0 (pure relevance)."""

    def __init__(self, similarity: np.ndarray) -> None:
        self.similarity = similarity
        self.closest = np.zeros(len(similarity))
        self.first = True

    def gains(self) -> np.ndarray:
        return -self.closest

    def add(self, position: int) -> None:
        row = self.similarity[position]
        self.closest = row.copy() if self.first else np.maximum(self.closest, row)
        self.first = False

    def reason(self, position: int) -> str:
        return REASON


class MMRReranker(GreedyReranker):
    """See the module docstring."""

    kind = "mmr"
    Config = MMRConfig
    config: MMRConfig

    def __init__(self, config: StageConfig | None = None, *, name: str | None = None, **params: Any) -> None:
        super().__init__(config, name=name, **params)
        self._vectors = ItemVectors(self, self.config.vectors)

    def use_sources(self, sources: Sequence[Source]) -> None:
        """Take the item vectors from the source named by ``vectors`` (the pipeline calls
        this after fitting and after loading; an error names a missing or vector-less source)."""
        self._vectors.use_sources(sources)

    def objective(self, query: Query, items: ItemList) -> Objective | None:
        if len(items) < 2:
            return None
        return _MaxSimilarity(self._vectors.similarity(items.item_codes))
