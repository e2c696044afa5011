"""ItemKNN: item-to-item nearest neighbours over the interaction matrix.

Each item keeps its ``k`` most similar items; a user's score for item j is the sum of the
similarities between j and the items in the user's history (only where j is among an
item's neighbours), as in implicit's ``ItemItemRecommender`` and LensKit's ``ItemKNN``.

Similarity is computed block by block (``_BLOCK`` items at a time against all items), so
memory stays at ``_BLOCK x n_items`` floats plus the sparse neighbour table, whatever the
catalog size.

Weighting of the user x item matrix before the similarity:

* ``"none"``: binary interactions;
* ``"bm25"``: BM25 (Robertson & Zaragoza), items as documents and users as terms: frequent
  users are down-weighted by their IDF and long item rows are length-normalised. With
  ``similarity="dot"`` this is implicit's ``BM25Recommender``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from tqdm.auto import tqdm

from tastemaker.data.dataset import Dataset
from tastemaker.models.base import ModelConfig, Recommender, ScoringBatch
from tastemaker.tuning import Choice, Float, Int
from tastemaker.types import FitOptions

_BLOCK = 1024


class ItemKNNConfig(ModelConfig):
    """``k`` neighbours per item; ``shrink`` is added to the cosine denominator (damps
    similarities supported by few users); ``bm25_k1``/``bm25_b`` apply to ``weighting="bm25"``."""

    k: int = Field(200, ge=1)
    similarity: Literal["cosine", "dot"] = "cosine"
    weighting: Literal["none", "bm25"] = "none"
    shrink: float = Field(0.0, ge=0)
    bm25_k1: float = Field(1.2, gt=0)
    bm25_b: float = Field(0.75, ge=0, le=1)


class ItemKNN(Recommender):
    """Item-based collaborative filtering with a top-k neighbour table."""

    Config = ItemKNNConfig
    search_space = {"k": Int(10, 2000, log=True), "weighting": Choice(("none", "bm25")), "shrink": Float(0.0, 100.0)}
    name = "itemknn"

    def _fit(self, dataset: Dataset, options: FitOptions) -> None:
        cfg = self.config
        x = self.user_items_.astype(np.float32)
        if cfg.weighting == "bm25":
            x = bm25_weight(x, cfg.bm25_k1, cfg.bm25_b)
        item_users = sp.csr_matrix(x.T)
        norms = np.sqrt(np.asarray(item_users.multiply(item_users).sum(axis=1)).ravel())
        n_items = item_users.shape[0]
        k = min(cfg.k, n_items - 1) if n_items > 1 else 0
        rows, cols, vals = [], [], []
        user_items = sp.csc_matrix(x)
        for start in tqdm(range(0, n_items, _BLOCK), desc="itemknn similarities", disable=not options.progress):
            stop = min(start + _BLOCK, n_items)
            sims = (item_users[start:stop] @ user_items).toarray()
            if cfg.similarity == "cosine":
                denom = norms[start:stop, None] * norms[None, :] + cfg.shrink
                np.divide(sims, denom, out=sims, where=denom > 0)
            sims[np.arange(stop - start), np.arange(start, stop)] = 0.0  # no self-similarity
            if k == 0:
                continue
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            top_vals = np.take_along_axis(sims, top, axis=1)
            keep = top_vals > 0
            rows.append(np.repeat(np.arange(start, stop), k)[keep.ravel()])
            cols.append(top[keep])
            vals.append(top_vals[keep])
        if rows:
            data = (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols)))
        else:
            data = (np.zeros(0, np.float32), (np.zeros(0, np.int64), np.zeros(0, np.int64)))
        self.similarity_ = sp.csr_matrix(data, shape=(n_items, n_items), dtype=np.float32)

    def _score(self, batch: ScoringBatch) -> np.ndarray:
        return (batch.history @ self.similarity_).toarray().astype(np.float32, copy=False)

    def item_affinity(self, history: np.ndarray, items: np.ndarray) -> np.ndarray | None:
        # S[h, i] is exactly history item h's contribution to item i's score
        return self.similarity_[np.asarray(history)][:, np.asarray(items)].toarray().T

    def _arrays(self) -> dict[str, np.ndarray]:
        s = self.similarity_
        return {"sim_indptr": s.indptr.astype(np.int64), "sim_indices": s.indices.astype(np.int32), "sim_data": s.data}

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        n = len(arrays["sim_indptr"]) - 1
        self.similarity_ = sp.csr_matrix(
            (arrays["sim_data"], arrays["sim_indices"], arrays["sim_indptr"]), shape=(n, n)
        )


def bm25_weight(user_items: sp.csr_matrix, k1: float = 1.2, b: float = 0.75) -> sp.csr_matrix:
    """BM25-weight a user x item matrix, treating items as documents and users as terms."""
    x = sp.coo_matrix(user_items, dtype=np.float32)
    n_items = x.shape[1]
    users_per_row = np.bincount(x.row, minlength=x.shape[0])
    idf = np.log(n_items) - np.log1p(users_per_row)
    item_length = np.bincount(x.col, weights=x.data, minlength=n_items)
    length_norm = (1.0 - b) + b * item_length / max(item_length.mean(), 1e-12)
    x.data = x.data * (k1 + 1.0) / (k1 * length_norm[x.col] + x.data) * idf[x.row]
    return sp.csr_matrix(x, dtype=np.float32)
