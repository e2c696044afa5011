"""Calibrated recommendations (Steck, RecSys 2018): a list whose category mix matches the user's.

With ``p(g|i)`` = 1/|categories of i| for each category g of item i (0 for the others):

* the user's distribution ``p(g|u)`` is the mean of ``p(g|i)`` over their history
  (:func:`history_distribution`; optionally recency-weighted: the k-th most recent event
  weighs ``2 ** (-k / half_life)``; history items without categories are left out, they say
  nothing about the mix);
* a list's distribution ``q(g|u)`` is the mean of ``p(g|i)`` over its items
  (:func:`list_distribution`, the paper's uniform item weights);
* miscalibration is ``KL(p || q~) = sum_g p(g) log(p(g) / q~(g))`` with
  ``q~ = (1 - alpha) q + alpha p`` and ``alpha = 0.01`` as in the paper, so it stays finite
  (:func:`miscalibration`).

The reranker builds the list greedily, maximising ``(1 - weight) * sum of rel(i) -
weight * KL(p || q~(list))`` (``rel``: the ranker's score min-max normalised over the list).
Steck's objective is submodular, so the greedy list is within (1 - 1/e) of the best. An item
picked over a more relevant one is marked ``sources[i] = name`` with the reason "to match your
mix of <category>": the item's category that the list lacked most against the user's mix.
"""

from __future__ import annotations

from typing import Literal, overload

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from tastemaker.rerank.base import GreedyReranker, Objective, TradeOffConfig
from tastemaker.types import ItemList, Query

#: The paper's smoothing of q towards p (keeps KL finite when the list misses a category).
ALPHA = 0.01


def category_shares(categories: sp.csr_matrix, codes: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
    """``p(g|i)`` for each of ``codes`` (dense, len(codes) x n_categories, float64): 1/|cats|
    on each of the item's categories, a zero row for an item without any. ``columns``: only
    these categories' columns (the shares still count all of an item's categories)."""
    rows = categories[np.asarray(codes, dtype=np.int64)]
    counts = np.asarray(rows.sum(axis=1), dtype=np.float64)
    if columns is not None:
        rows = rows[:, columns]
    dense = rows.toarray().astype(np.float64)
    return np.divide(dense, counts, out=np.zeros_like(dense), where=counts > 0)


def history_distribution(categories: sp.csr_matrix, history: np.ndarray, half_life: float | None = None) -> np.ndarray:
    """The user's category distribution ``p(g|u)`` from history item codes in time order
    (the last is the most recent); all zeros when no history item has a category."""
    rows = categories[np.asarray(history, dtype=np.int64)]  # sparse: a history can hold thousands of items
    counts = np.asarray(rows.sum(axis=1), dtype=np.float64).ravel()
    weights = np.ones(len(history))
    if half_life is not None:
        weights = np.exp2(-np.arange(len(history))[::-1] / half_life)
    weights = weights * (counts > 0)
    total = weights.sum()
    if total <= 0:
        return np.zeros(categories.shape[1])
    per_item = np.divide(weights, counts, out=np.zeros_like(weights), where=counts > 0)  # w_i * p(g|i) = w_i / |cats|
    return np.asarray(rows.T @ per_item, dtype=np.float64).ravel() / total


def list_distribution(categories: sp.csr_matrix, codes: np.ndarray) -> np.ndarray:
    """A list's category distribution ``q(g|u)``: the mean of its items' ``p(g|i)`` (an item
    without categories counts in the mean, so such items make a list less calibrated)."""
    codes = np.asarray(codes)
    codes = codes[codes >= 0]
    if not len(codes):
        return np.zeros(categories.shape[1])
    return category_shares(categories, codes).mean(axis=0)  # type: ignore[no-any-return]


@overload
def miscalibration(p: np.ndarray, q: np.ndarray, alpha: float = ALPHA, *, rows: Literal[False] = False) -> float: ...
@overload
def miscalibration(p: np.ndarray, q: np.ndarray, alpha: float = ALPHA, *, rows: Literal[True]) -> np.ndarray: ...
def miscalibration(p: np.ndarray, q: np.ndarray, alpha: float = ALPHA, *, rows: bool = False) -> float | np.ndarray:
    """Steck's miscalibration ``KL(p || (1 - alpha) q + alpha p)`` in nats (0 when the list
    matches the user's mix; ``log(1 / alpha)`` when it misses all of it). ``rows=True``: ``p``
    and ``q`` are matrices (one user per row) and the result has one value per row. A user
    whose ``p`` is all zero (no categorised history) gets 0."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {p.shape} and {q.shape}")
    smoothed = (1.0 - alpha) * q + alpha * p
    terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0) / np.where(p > 0, smoothed, 1.0)), 0.0)
    values = terms.sum(axis=-1)
    return values if rows else float(values)


class CalibrationConfig(TradeOffConfig):
    """``weight``: the share of calibration against relevance (Steck's lambda; 0 = the
    ranking as it is); ``half_life``: recency weighting of the history in events (None: every
    event counts the same); ``alpha``: the smoothing of q towards p (0.01 in the paper)."""

    weight: float = Field(0.5, ge=0.0, le=1.0)
    half_life: float | None = Field(None, gt=0)
    alpha: float = Field(ALPHA, gt=0.0, lt=1.0)


class _Calibration(Objective):
    """-KL(p || q~) of the list with each candidate added, over the categories the user has."""

    def __init__(self, target: np.ndarray, shares: np.ndarray, alpha: float, names: np.ndarray) -> None:
        """``target``: p over the user's categories only (all > 0); ``shares``: the pool's
        p(g|i) over those same categories (only they enter KL(p || q~)); ``names``: theirs."""
        self.target = target
        self.shares = shares
        self.alpha = alpha
        self.names = names
        self.counts = np.zeros(len(target))
        self.picked = 0
        self.entropy_term = float(target @ np.log(target))

    def gains(self) -> np.ndarray:
        with_each = (self.counts[None, :] + self.shares) / (self.picked + 1)
        smoothed = (1.0 - self.alpha) * with_each + self.alpha * self.target[None, :]
        # -KL = -sum p log p + sum p log q~ (the first term is the same for every candidate)
        return np.log(smoothed) @ self.target - self.entropy_term  # type: ignore[no-any-return]

    def add(self, position: int) -> None:
        self.counts += self.shares[position]
        self.picked += 1

    def reason(self, position: int) -> str:
        have = self.shares[position] > 0
        if not have.any():
            return "to match your mix of tastes"
        current = self.counts / self.picked if self.picked else np.zeros_like(self.counts)
        lacking = np.where(have, self.target - current, -np.inf)
        return f"to match your mix of {self.names[int(np.argmax(lacking))]}"


class CalibrationReranker(GreedyReranker):
    """See the module docstring."""

    kind = "calibration"
    Config = CalibrationConfig
    config: CalibrationConfig

    def target_distribution(self, query: Query) -> np.ndarray:
        """``p(g|u)`` for the query's user (training history plus the query's new items),
        one value per context category (``context_.category_names``)."""
        self._check_fitted()
        history = self.context_.resolve([query])[0].history
        return history_distribution(self.context_.categories, history, self.config.half_life)

    def objective(self, query: Query, items: ItemList) -> Objective | None:
        target = self.target_distribution(query)
        if not target.any():  # nothing known of the user's mix: nothing to calibrate to
            return None
        support = np.flatnonzero(target > 0)
        shares = category_shares(self.context_.categories, items.item_codes, support)
        return _Calibration(target[support], shares, self.config.alpha, self.context_.category_names[support])
