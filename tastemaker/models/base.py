"""The ``Recommender`` contract and the machinery every model shares.

A model implements three hooks and gets the whole public surface from this class:

* ``_fit(dataset, options)``: learn from a dataset (vocabularies and seen items are
  already recorded by :meth:`Recommender.fit`).
* ``_score(batch)``: full-catalog scores (float32, one row per query) for a
  :class:`ScoringBatch` (user codes, history rows, and for sequential models the
  time-ordered item sequences).
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from tastemaker.data.dataset import Dataset, to_pandas
from tastemaker.data.vocab import Vocabulary, normalize_ids
from tastemaker.errors import DataError, NotFittedError
from tastemaker.types import FitOptions, ItemList, Query

SCORE_BATCH = 512  # most queries scored at once
SCORE_BUDGET = 32 * 2**20  # most scores held at once (128 MB of float32): a 1M-item catalog scores 32 queries a batch


def score_batch_size(n_items: int) -> int:
    """Queries per scoring batch, so that batch x n_items stays within SCORE_BUDGET."""
    return int(max(1, min(SCORE_BATCH, SCORE_BUDGET // max(n_items, 1))))


@dataclass(frozen=True)
class ScoringBatch:
    """What a model scores: one entry per query.

    ``users`` are codes (-1 for unknown); ``history`` holds each query's known items (training
    history plus new events) as binary CSR rows; ``use_user_state[i]`` is True when the model
    may use what it learned about ``users[i]`` in training (a known user with no new events)
    and False when it must fold the history in; ``sequences`` (sequential models only) are the
    same items in time order, the new events last.
    """

    users: np.ndarray
    history: sp.csr_matrix
    use_user_state: np.ndarray
    sequences: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.users)


class ModelConfig(BaseModel):
    """Base for model configs: typed, immutable, and typos are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Recommender(ABC):
    """Base class of every recommender. ``__init__`` only stores the config."""

    Config: ClassVar[type[ModelConfig]] = ModelConfig
    #: short name used in ItemList.sources, the CLI and reports
    name: ClassVar[str] = "recommender"
    #: True for models that read the order of a history (ScoringBatch.sequences is then filled)
    sequential: ClassVar[bool] = False
    #: Where a hyperparameter search looks (tastemaker.tuning: Float, Int, Choice per config
    #: field); empty for a model with nothing to tune.
    search_space: ClassVar[Mapping[str, Any]] = {}

    users_: Vocabulary
    items_: Vocabulary
    user_items_: sp.csr_matrix
    item_popularity_: np.ndarray
    item_titles_: np.ndarray
    sequence_indptr_: np.ndarray  # sequential models: user u's items in time order are
    sequence_items_: np.ndarray  # sequence_items_[sequence_indptr_[u]:sequence_indptr_[u + 1]]

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
        if self.sequential:
            seqs = dataset.sequences()
            self.sequence_indptr_ = np.concatenate([[0], np.cumsum([len(q) for q in seqs])]).astype(np.int64)
            self.sequence_items_ = np.concatenate(seqs).astype(np.int32) if seqs else np.zeros(0, np.int32)
        with threadpool_limits(options.threads):
            self._fit(dataset, options)
        return self

    @abstractmethod
    def _fit(self, dataset: Dataset, options: FitOptions) -> None: ...

    @abstractmethod
    def _score(self, batch: ScoringBatch) -> np.ndarray:
        """Scores for all items, shape (len(batch), n_items), float32."""

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "items_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() or load() first")

    # ------------------------------------------------------------------ queries
    def _stored_sequence(self, user: int) -> np.ndarray:
        if user < 0:
            return np.zeros(0, dtype=np.int32)
        return self.sequence_items_[self.sequence_indptr_[user] : self.sequence_indptr_[user + 1]]

    def resolve(self, queries: Sequence[Query]) -> ScoringBatch:
        """Queries -> the :class:`ScoringBatch` the model scores: user codes, each query's
        known items (training history plus new ones) and whether the learned user state may
        be used. Public so that wrappers (a vector index, a pipeline source) can score the
        way the model does; a vector model's query vectors are ``user_vectors(resolve(q))``."""
        users = self.users_.encode([q.user if q.user is not None else "" for q in queries], missing="mark")
        users = np.where([q.user is None for q in queries], -1, users).astype(np.int32)
        extra = [self.items_.encode(q.history, missing="drop") for q in queries]
        # Each history row = the user's training items (none for unknown users) + new items,
        # built straight from index arrays: a request is a batch of one, and scipy's general
        # constructors cost more than the scoring itself there.
        seen = self.user_items_
        parts = []
        for user, new in zip(users, extra, strict=True):
            known = seen.indices[seen.indptr[user] : seen.indptr[user + 1]] if user >= 0 else np.zeros(0, np.int32)
            parts.append(np.union1d(known, new) if len(new) else known)
        indptr = np.zeros(len(parts) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([len(p) for p in parts])
        indices = np.concatenate(parts).astype(np.int32) if parts else np.zeros(0, np.int32)
        rows = sp.csr_matrix(
            (np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(len(queries), len(self.items_))
        )
        use_state = (users >= 0) & np.array([len(e) == 0 for e in extra])
        sequences = None
        if self.sequential:
            sequences = [np.concatenate([self._stored_sequence(u), e]).astype(np.int32) for u, e in zip(users, extra, strict=True)]
        return ScoringBatch(users, rows, use_state, sequences)

    def _known_users_batch(self, users: np.ndarray) -> ScoringBatch:
        """A batch of known users with their training histories only."""
        sequences = [self._stored_sequence(u) for u in users] if self.sequential else None
        return ScoringBatch(users, self.user_items_[users], np.ones(len(users), dtype=bool), sequences)

    def _scores_with_fallback(self, batch: ScoringBatch) -> tuple[np.ndarray, np.ndarray]:
        """Model scores, with popularity standing in where there is nothing to go on."""
        scores = np.asarray(self._score(batch), dtype=np.float32)
        cold = (np.diff(batch.history.indptr) == 0) & ~batch.use_user_state
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
        size = score_batch_size(len(self.items_))
        for start in range(0, len(queries), size):
            batch = queries[start : start + size]
            resolved = self.resolve(batch)
            history = resolved.history
            scores, cold = self._scores_with_fallback(resolved)
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
        size = score_batch_size(len(self.items_))
        starts = range(0, len(users), size)
        for start in tqdm(starts, desc=f"scoring {self.name}", disable=not progress, unit="batch"):
            batch = users[start : start + size]
            history = self.user_items_[batch]
            scores, _ = self._scores_with_fallback(self._known_users_batch(batch))
            if exclude_seen:
                rows = np.repeat(np.arange(len(batch)), np.diff(history.indptr))
                scores[rows, history.indices] = -np.inf
            k = min(n, scores.shape[1])
            part = top_k_unordered(scores, k)
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
        size = score_batch_size(len(self.items_))
        for start in range(0, len(queries), size):
            resolved = self.resolve(queries[start : start + size])
            scores, _ = self._scores_with_fallback(resolved)
            out[start : start + len(resolved)][:, known] = scores[:, codes[known]]
        return out

    # ------------------------------------------------------------------ new items (for add_items)
    def _new_catalog_rows(self, catalog: Any) -> Any:
        """The rows of ``catalog`` (pandas/polars/Arrow, ``item_id`` or ``item`` column) whose id
        the model does not know yet, first occurrence of each id, in order (a pandas frame)."""
        frame = to_pandas(catalog)
        frame = frame if "item_id" in frame.columns else frame.rename(columns={"item": "item_id"})
        if "item_id" not in frame.columns:
            raise DataError(f"add_items needs an 'item_id' column; columns are {list(frame.columns)}")
        frame = frame.assign(item_id=normalize_ids(frame["item_id"])).drop_duplicates("item_id")
        return frame[self.items_.encode(frame["item_id"], missing="mark") < 0].reset_index(drop=True)

    def _append_items(self, frame: Any) -> None:
        """Grow the item bookkeeping by ``frame``'s rows (from :meth:`_new_catalog_rows`):
        vocabulary, titles, popularity 0 and empty seen-item columns (sequences are unchanged:
        nobody has seen the new items)."""
        n_old, n_new = len(self.items_), len(frame)
        self.items_ = self.items_.extend(frame["item_id"])
        titles = frame["title"].fillna("").astype(str).to_numpy(dtype=object) if "title" in frame.columns else np.full(n_new, "")
        self.item_titles_ = np.concatenate([self.item_titles_, titles.astype(str)])
        self.item_popularity_ = np.concatenate([self.item_popularity_, np.zeros(n_new, dtype=np.int64)])
        seen = self.user_items_
        self.user_items_ = sp.csr_matrix((seen.data, seen.indices, seen.indptr), shape=(seen.shape[0], n_old + n_new))

    # ------------------------------------------------------------------ explanations
    def item_affinity(self, history: np.ndarray, items: np.ndarray) -> np.ndarray | None:
        """How strongly each history item (codes) supports each recommended item (codes):
        shape (len(items), len(history)), larger = more. Explanations use the best one
        ("because you watched X"). The default is the cosine between the items' vectors when
        the model has ``item_vectors()``; None when the model cannot say (e.g. popularity)."""
        vectors_of = getattr(self, "item_vectors", None)
        if vectors_of is None or len(history) == 0 or len(items) == 0:
            return None
        vectors = np.asarray(vectors_of(), dtype=np.float32)
        a, b = vectors[np.asarray(items)], vectors[np.asarray(history)]
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        return a @ b.T

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


class VectorRecommender(Recommender):
    """A recommender whose scores are dot products of a query vector (:meth:`user_vectors`,
    from the query's history) and item vectors (:meth:`item_vectors`): two-tower, HLLM and
    content retrieval. The service serves such models through a vector index. A query whose
    vector is all zeros (nothing to go on) gets popularity instead."""

    @abstractmethod
    def user_vectors(self, batch: ScoringBatch) -> np.ndarray:
        """(len(batch), dim) query vectors; zeros where there is nothing to go on."""

    @abstractmethod
    def item_vectors(self) -> np.ndarray:
        """(n_items, dim) item vectors."""

    def _score(self, batch: ScoringBatch) -> np.ndarray:
        vectors = self.user_vectors(batch)
        scores = vectors @ self.item_vectors().T
        scores[~vectors.any(axis=1)] = self.item_popularity_  # e.g. a known user without events
        return scores


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
    part = top_k_unordered(scores[None, :], k)[0]
    order = np.lexsort((part, -scores[part]))
    top = part[order]
    top = top[np.isfinite(scores[top])]
    return top.astype(np.int32), scores[top]


def top_k_unordered(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` best scores of each row, in no particular order, where a tie
    at the cut goes to the lower index (``argpartition`` alone cuts a tied group anywhere, so
    e.g. popularity's zero scores would pick arbitrary items)."""
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    cut = np.take_along_axis(scores, part, axis=1).min(axis=1)
    tied_in = (np.take_along_axis(scores, part, axis=1) == cut[:, None]).sum(axis=1)
    tied_all = (scores == cut[:, None]).sum(axis=1)
    for row in np.flatnonzero((tied_all > tied_in) & np.isfinite(cut)):
        above = np.flatnonzero(scores[row] > cut[row])
        tied = np.flatnonzero(scores[row] == cut[row])[: k - len(above)]
        part[row] = np.concatenate([above, tied])
    return part


def isin_small(values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``np.isin(values, ids)``, faster for a request's sizes: a few hundred results against a
    few dozen exclusions compare directly (np.isin sorts both: ~60 us against ~10)."""
    if len(values) * len(ids) <= 50_000:
        return (np.asarray(values)[:, None] == np.asarray(ids)[None, :]).any(axis=1)
    return np.isin(values, ids)
