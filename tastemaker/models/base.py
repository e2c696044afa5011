"""The ``Recommender`` contract and the machinery every model shares.

A model implements three hooks and gets the whole public surface from this class:

* ``_fit(dataset, options)``: learn from a dataset (vocabularies and seen items are
  already recorded by :meth:`Recommender.fit`).
* ``_score(users, history, use_user_state)``: full-catalog scores (float32, one row per
  query) for a batch of user codes and their history rows.
* ``_arrays()`` / ``_set_arrays(arrays)``: the fitted state as named numpy arrays, for the
  artifact (no pickle).

Everything public is batch-first: :meth:`recommend` and :meth:`score` take many queries,
and a single query is a batch of one; batching never changes a result.

Defined behaviour at recommend time:

* an **unknown user** is scored from the query's ``history`` alone (fold-in);
* a query with **no usable history** (unknown user, no known items) gets the most popular
  items, and its ``ItemList.sources`` says ``"popular-fallback"``;
* **unknown item ids** in ``history``/``exclude``/``include`` are ignored; in
  :meth:`score` an unknown item scores NaN;
* items the user has seen are excluded unless ``Query.exclude_seen`` is False;
* fewer than ``n`` items come back when filters leave fewer than ``n`` candidates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from tastemaker.data.dataset import Dataset
from tastemaker.data.vocab import Vocabulary
from tastemaker.errors import NotFittedError
from tastemaker.types import FitOptions, ItemList, Query

SCORE_BATCH = 512  # queries scored at once: bounds memory at SCORE_BATCH x n_items floats


class ModelConfig(BaseModel):
    """Base for model configs: typed, immutable, and typos are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Recommender(ABC):
    """Base class of every recommender. ``__init__`` only stores the config."""

    Config: ClassVar[type[ModelConfig]] = ModelConfig
    #: short name used in ItemList.sources, the CLI and reports
    name: ClassVar[str] = "recommender"

    users_: Vocabulary
    items_: Vocabulary
    user_items_: sp.csr_matrix
    item_popularity_: np.ndarray
    item_titles_: np.ndarray

    def __init__(self, config: ModelConfig | None = None, **params: Any) -> None:
        if config is not None and params:
            raise TypeError("pass either a config or keyword parameters, not both")
        self.config = config if config is not None else self.Config(**params)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items())
        return f"{type(self).__name__}({params})"

    # ------------------------------------------------------------------ fitting
    def fit(self, dataset: Dataset, options: FitOptions | None = None) -> Self:
        """Learn from ``dataset``; returns self."""
        options = options or FitOptions()
        self.users_ = dataset.users
        self.items_ = dataset.items
        self.user_items_ = dataset.to_csr("binary")
        self.item_popularity_ = dataset.item_popularity()
        self.item_titles_ = dataset.catalog["title"].to_numpy(dtype=object).astype(str)
        with threadpool_limits(options.threads):
            self._fit(dataset, options)
        return self

    @abstractmethod
    def _fit(self, dataset: Dataset, options: FitOptions) -> None: ...

    @abstractmethod
    def _score(self, users: np.ndarray, history: sp.csr_matrix, use_user_state: np.ndarray) -> np.ndarray:
        """Scores for all items, shape (len(users), n_items), float32.

        ``users`` are codes (-1 for unknown); ``history`` holds each query's known items
        (training history plus extras) as a binary CSR row; ``use_user_state[i]`` is True when
        the model may use what it learned about ``users[i]`` in training (a known user with no
        new events), and False when it must fold the history in instead.
        """

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "items_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() or load() first")

    # ------------------------------------------------------------------ queries
    def _resolve(self, queries: Sequence[Query]) -> tuple[np.ndarray, sp.csr_matrix, np.ndarray]:
        """Queries -> (user codes, history rows, use_user_state)."""
        users = self.users_.encode([q.user if q.user is not None else "" for q in queries], missing="mark")
        users = np.where([q.user is None for q in queries], -1, users).astype(np.int32)
        rows = sp.csr_matrix(sp.diags((users >= 0).astype(np.float32)) @ self.user_items_[np.maximum(users, 0)])
        rows.eliminate_zeros()  # unknown users: an empty history, not explicit zeros
        extra = [self.items_.encode(q.history, missing="drop") for q in queries]
        if any(len(e) for e in extra):
            indptr = np.concatenate([[0], np.cumsum([len(e) for e in extra])])
            extra_rows = sp.csr_matrix(
                (np.ones(indptr[-1], dtype=np.float32), np.concatenate(extra), indptr),
                shape=(len(queries), len(self.items_)),
            )
            rows = rows + extra_rows
            rows.data[:] = 1.0
        use_state = (users >= 0) & np.array([len(e) == 0 for e in extra])
        return users, sp.csr_matrix(rows, dtype=np.float32), use_state

    def _scores_with_fallback(
        self, users: np.ndarray, history: sp.csr_matrix, use_state: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Model scores, with popularity standing in where there is nothing to go on."""
        scores = np.asarray(self._score(users, history, use_state), dtype=np.float32)
        cold = (np.diff(history.indptr) == 0) & ~use_state
        if cold.any():
            scores[cold] = self.item_popularity_.astype(np.float32)
        return scores, cold

    def recommend(self, queries: Query | Sequence[Query], n: int = 10) -> list[ItemList]:
        """Top-``n`` items for each query (see the module docstring for the rules)."""
        self._check_fitted()
        if isinstance(queries, Query):
            queries = [queries]
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        out: list[ItemList] = []
        for start in range(0, len(queries), SCORE_BATCH):
            batch = queries[start : start + SCORE_BATCH]
            users, history, use_state = self._resolve(batch)
            scores, cold = self._scores_with_fallback(users, history, use_state)
            for i, q in enumerate(batch):
                allowed = None if q.include is None else self.items_.encode(q.include, missing="drop")
                blocked = [self.items_.encode(q.exclude, missing="drop")]
                if q.exclude_seen:
                    blocked.append(history.indices[history.indptr[i] : history.indptr[i + 1]])
                codes, top = _top_n(scores[i], n, np.concatenate(blocked), allowed)
                source = "popular-fallback" if cold[i] else self.name
                out.append(
                    ItemList(self.items_.decode(codes), codes, top, sources=(source,) * len(codes))
                )
        return out

    def recommend_codes(
        self, users: np.ndarray, n: int = 10, *, exclude_seen: bool = True, progress: bool = False
    ) -> np.ndarray:
        """Fast path for evaluation: top-``n`` item codes (int32, shape (len(users), n)) for
        known user codes from their training history. Rows with fewer candidates pad with -1."""
        self._check_fitted()
        users = np.asarray(users, dtype=np.int32)
        result = np.full((len(users), n), -1, dtype=np.int32)
        starts = range(0, len(users), SCORE_BATCH)
        for start in tqdm(starts, desc=f"scoring {self.name}", disable=not progress, unit="batch"):
            batch = users[start : start + SCORE_BATCH]
            history = self.user_items_[batch]
            scores, _ = self._scores_with_fallback(batch, history, np.ones(len(batch), dtype=bool))
            if exclude_seen:
                rows = np.repeat(np.arange(len(batch)), np.diff(history.indptr))
                scores[rows, history.indices] = -np.inf
            k = min(n, scores.shape[1])
            part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            part_scores = np.take_along_axis(scores, part, axis=1)
            order = np.lexsort((part, -part_scores), axis=1)  # ties: lower code first
            top = np.take_along_axis(part, order, axis=1)
            top_scores = np.take_along_axis(part_scores, order, axis=1)
            top[~np.isfinite(top_scores)] = -1
            result[start : start + len(batch), :k] = top
        return result

    def score(self, queries: Query | Sequence[Query], items: Sequence[str]) -> np.ndarray:
        """Scores of ``items`` (external ids) for each query: shape (len(queries), len(items)).
        Unknown items score NaN. Seen-item exclusion does not apply here."""
        self._check_fitted()
        if isinstance(queries, Query):
            queries = [queries]
        codes = self.items_.encode(items, missing="mark")
        out = np.full((len(queries), len(codes)), np.nan, dtype=np.float32)
        known = codes >= 0
        for start in range(0, len(queries), SCORE_BATCH):
            users, history, use_state = self._resolve(queries[start : start + SCORE_BATCH])
            scores, _ = self._scores_with_fallback(users, history, use_state)
            out[start : start + len(users)][:, known] = scores[:, codes[known]]
        return out

    # ------------------------------------------------------------------ persistence
    @abstractmethod
    def _arrays(self) -> dict[str, np.ndarray]:
        """The model-specific fitted state as named arrays."""

    @abstractmethod
    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore the state written by :meth:`_arrays`."""

    def save(self, path: str | Path) -> Path:
        """Write the fitted model as a versioned artifact directory (see :mod:`tastemaker.artifact`)."""
        from tastemaker.artifact import save_model

        self._check_fitted()
        return save_model(self, path)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Load an artifact written by :meth:`save`; refuses one of another model class."""
        from tastemaker.artifact import load_model

        model = load_model(path)
        if not isinstance(model, cls):
            raise TypeError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model


def _top_n(
    scores: np.ndarray, n: int, blocked: np.ndarray, allowed: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the ``n`` best finite scores, best first (ties: lower code first)."""
    scores = scores.copy()
    if allowed is not None:
        mask = np.full(scores.shape, -np.inf, dtype=np.float32)
        mask[allowed] = 0.0
        scores += mask
    if len(blocked):
        scores[blocked] = -np.inf
    k = min(n, len(scores))
    part = np.argpartition(-scores, k - 1)[:k]
    order = np.lexsort((part, -scores[part]))
    top = part[order]
    top = top[np.isfinite(scores[top])]
    return top.astype(np.int32), scores[top]
