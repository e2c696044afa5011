"""Popularity-bias correction by personalised xQuAD (Abdollahpouri, Burke & Mobasher,
FLAIRS 2019, "Managing Popularity Bias in Recommender Systems with Personalized Re-ranking").

The catalog is split once, at fit time, by training popularity (distinct users): the
**head** is the most popular ``head_share`` of the catalog's items (0.2: the paper's "top 20%
of items by popularity"; items nobody had are never head), the **tail** is the rest, items
added later included. A user's tail preference ``P(tail|u)`` is the tail's share of their
history (``P(head|u) = 1 - P(tail|u)``); a user without history gets the mean over training
users. The list is built greedily:

    argmax_i  (1 - weight) * rel(i) + weight * sum_{c in {head, tail}} P(c|u) [i in c] coverage(c)

``variant = "binary"`` (the paper's Binary xQuAD): ``coverage(c) = prod_{j picked, j in c}
(1 - [j in c])``, i.e. 1 until the list holds an item of c, then 0, so at most one item of each
group is promoted. ``variant = "smooth"`` (Smooth xQuAD): ``coverage(c) = 1 - |picked in c| /
|picked|`` (1 before the first pick), which keeps pulling the list towards the user's mix.
A tail item picked over a more relevant item says "a less known pick"; a head item, "a
popular pick".
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field

from tastemaker.data.dataset import Dataset
from tastemaker.rerank.base import GreedyReranker, Objective, TradeOffConfig
from tastemaker.types import FitOptions, ItemList, Query

TAIL_REASON = "a less known pick"
HEAD_REASON = "a popular pick"


def head_items(popularity: np.ndarray, head_share: float) -> np.ndarray:
    """Boolean mask of the head: the ``ceil(head_share * n_items)`` most popular items (ties
    to the lower code), never an item with popularity 0."""
    popularity = np.asarray(popularity)
    count = min(math.ceil(head_share * len(popularity)), int((popularity > 0).sum()))
    order = np.lexsort((np.arange(len(popularity)), -popularity))
    head = np.zeros(len(popularity), dtype=bool)
    head[order[:count]] = True
    return head


class PopularityRerankConfig(TradeOffConfig):
    """``weight``: the share of the head/tail term (0 = the ranking as it is);
    ``head_share``: the head's share of the catalog's items; ``variant``: ``"binary"`` or
    ``"smooth"`` xQuAD (see the module docstring)."""

    weight: float = Field(0.5, ge=0.0, le=1.0)
    head_share: float = Field(0.2, gt=0.0, lt=1.0)
    variant: Literal["binary", "smooth"] = "binary"


class _XQuAD(Objective):
    def __init__(self, tail: np.ndarray, tail_preference: float, smooth: bool) -> None:
        self.tail = tail
        self.preference = np.where(tail, tail_preference, 1.0 - tail_preference)  # P(c_i|u)
        self.smooth = smooth
        self.picked = np.zeros(2)  # picked head, picked tail
        self.group = tail.astype(np.int64)

    def gains(self) -> np.ndarray:
        total = self.picked.sum()
        if self.smooth:
            coverage = 1.0 - self.picked / total if total else np.ones(2)
        else:
            coverage = (self.picked == 0).astype(np.float64)
        return self.preference * coverage[self.group]  # type: ignore[no-any-return]

    def add(self, position: int) -> None:
        self.picked[self.group[position]] += 1

    def reason(self, position: int) -> str:
        return TAIL_REASON if self.tail[position] else HEAD_REASON


class PopularityReranker(GreedyReranker):
    """See the module docstring. Fitted state: ``head_`` (one bool per context item at fit
    time) and ``mean_tail_preference_``."""

    kind = "popularity"
    Config = PopularityRerankConfig
    config: PopularityRerankConfig
    head_: np.ndarray
    mean_tail_preference_: float

    def _fit(self, dataset: Dataset, options: FitOptions) -> None:
        self.head_ = head_items(dataset.item_popularity(), self.config.head_share)
        seen = dataset.to_csr("binary")
        per_user = np.diff(seen.indptr)
        tail_counts = seen @ (~self.head_).astype(np.float64)
        users = per_user > 0
        self.mean_tail_preference_ = float((tail_counts[users] / per_user[users]).mean()) if users.any() else 0.5

    def is_tail(self, codes: np.ndarray) -> np.ndarray:
        """Whether each context code is in the tail (items added after fit are)."""
        codes = np.asarray(codes, dtype=np.int64)
        known = codes < len(self.head_)
        return ~np.where(known, self.head_[np.where(known, codes, 0)], False)

    def tail_preference(self, query: Query) -> float:
        """``P(tail|u)``: the tail's share of the distinct items in the query's history (the
        training users' mean when it has none)."""
        self._check_fitted()
        history = self.context_.resolve([query])[0].history
        if not len(history):
            return self.mean_tail_preference_
        return float(self.is_tail(np.unique(history)).mean())  # distinct items: a repeat is one item

    def objective(self, query: Query, items: ItemList) -> Objective | None:
        return _XQuAD(self.is_tail(items.item_codes), self.tail_preference(query), self.config.variant == "smooth")

    def arrays(self) -> dict[str, np.ndarray]:
        return {"head": self.head_, "mean_tail_preference": np.asarray([self.mean_tail_preference_])}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.head_ = arrays["head"].astype(bool)
        self.mean_tail_preference_ = float(arrays["mean_tail_preference"][0])
