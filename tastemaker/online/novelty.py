"""Novelty-seeking intent: how much a user (and their current session) goes for the new.

Following the hierarchical view of Li et al. (2023, "Hierarchical RL for modelling user
novelty-seeking intent"): a **static** per-user propensity and a **session** propensity.
Both are read off the history, with no training:

* static: the share of the user's history items (after the first) that brought a category
  the user had not consumed before ("first-time categories");
* session: the same share over the last ``session`` items, each judged against everything
  before it;
* intent = the mean of the two (0.5, "no idea", for a history shorter than 2 items).

The explorer turns the intent g into an exploration scale ``low + (high - low)·g`` (UCB's
bonus, epsilon, the posterior's spread) and a bonus ``weight·g`` for candidates none of whose
categories the user has consumed yet.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

#: intent when the history is too short to say
UNKNOWN = 0.5


def _first_time_flags(history: np.ndarray, categories: sp.csr_matrix) -> np.ndarray:
    """Per history item after the first: whether it has a category none of the earlier items had."""
    seen: set[int] = set()
    flags = []
    for k, code in enumerate(np.asarray(history, dtype=np.int64)):
        own = set(categories.indices[categories.indptr[code] : categories.indptr[code + 1]].tolist()) if code < categories.shape[0] else set()
        if k > 0:
            flags.append(bool(own - seen))
        seen |= own
    return np.asarray(flags, dtype=bool)


def novelty_propensities(history: np.ndarray, categories: sp.csr_matrix, session: int = 10) -> tuple[float, float]:
    """(static, session) novelty propensities of a history (item codes, oldest first)."""
    flags = _first_time_flags(history, categories)
    if len(flags) == 0:
        return UNKNOWN, UNKNOWN
    return float(flags.mean()), float(flags[-session:].mean())


def novelty_intent(history: np.ndarray, categories: sp.csr_matrix, session: int = 10) -> float:
    """The mean of the static and session propensities (see the module docstring)."""
    static, recent = novelty_propensities(history, categories, session)
    return 0.5 * (static + recent)


def new_to_user(history: np.ndarray, codes: np.ndarray, categories: sp.csr_matrix) -> np.ndarray:
    """Per candidate code: True when it has categories and none of them is in the history's."""
    history = np.asarray(history, dtype=np.int64)
    history = history[history < categories.shape[0]]
    consumed = set(np.unique(categories[history].indices).tolist()) if len(history) else set()
    out = np.zeros(len(codes), dtype=bool)
    for i, code in enumerate(np.asarray(codes, dtype=np.int64)):
        if code < categories.shape[0]:
            own = categories.indices[categories.indptr[code] : categories.indptr[code + 1]]
            out[i] = len(own) > 0 and not (set(own.tolist()) & consumed)
    return out
