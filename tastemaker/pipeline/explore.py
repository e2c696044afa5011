"""Explorers pick the shown slate from the ranked list and log a propensity per item.

:class:`GreedyExplorer` shows the top ``k`` as ranked, each with propensity 1 (the choice is
deterministic). The online-learning policies (bandits, in-slate Thompson sampling) implement
the same contract and plug in here.
"""

from __future__ import annotations

import numpy as np

from tastemaker.pipeline.base import Explorer
from tastemaker.types import ItemList, Query, Slate


class GreedyExplorer(Explorer):
    kind = "greedy"

    def select(self, query: Query, items: ItemList, k: int) -> Slate:
        shown = items.take(np.arange(min(k, len(items))))
        return Slate(shown, np.ones(len(shown), dtype=np.float64), policy=self.name, policy_version="0")
