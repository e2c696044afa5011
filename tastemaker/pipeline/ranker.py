"""Rankers: order the merged candidates of all sources.

:class:`FusionRanker` is the baseline that needs no training: reciprocal-rank fusion
(Cormack, Clarke & Büttcher 2009: score = sum over sources of w / (k + rank + 1)) or weighted
fusion of min-max normalised source scores. The learned ranker (LightGBM LambdaRank) is in
:mod:`tastemaker.pipeline.lgbm`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field

from tastemaker.pipeline.base import Ranker, StageConfig
from tastemaker.types import ItemList, Query


class FusionConfig(StageConfig):
    """``method``: ``"rrf"`` (reciprocal rank, constant ``k``) or ``"weighted"`` (sum of each
    source's scores min-max normalised per list); ``weights``: per source name (default 1)."""

    method: Literal["rrf", "weighted"] = "rrf"
    k: float = Field(60.0, ge=0)
    weights: dict[str, float] = {}


class FusionRanker(Ranker):
    kind = "fusion"
    Config = FusionConfig
    config: FusionConfig

    def rank(self, queries: Sequence[Query], candidates: Sequence[ItemList]) -> list[ItemList]:
        return [self._rank_one(items) for items in candidates]

    def _rank_one(self, items: ItemList) -> ItemList:
        if not len(items):
            return items
        total = np.zeros(len(items), dtype=np.float64)
        for name, ranks in items.source_ranks.items():
            weight = self.config.weights.get(name, 1.0)
            found = ranks >= 0
            if self.config.method == "rrf":
                total[found] += weight / (self.config.k + ranks[found] + 1.0)
            else:
                scores = items.source_scores[name][found].astype(np.float64)
                span = scores.max() - scores.min() if len(scores) else 0.0
                total[found] += weight * ((scores - scores.min()) / span if span > 0 else 1.0)
        order = np.lexsort((items.item_codes, -total))  # ties: the lower code first
        return items.take(order, scores=total[order].astype(np.float32))
