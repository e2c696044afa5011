"""Vectorised top-K metrics over full rankings.

Two ways to turn scores into a rank, for two purposes:

* **Reported metrics** (the test set, the tables) are computed from the lists a user would
  be served: ``topk`` is a matrix of recommended item codes (users x K, best first, -1 =
  empty slot) from ``Recommender.recommend_codes``, which ranks over all items the user has
  not seen, breaks ties by the lower item code and never lists an item scoring NaN or -inf.
  The relevant items per row are a CSR matrix ``truth`` (users x n_items); with
  leave-one-out each truth row holds exactly one item.
* **Selection metrics** (what tuning, early stopping or a quality gate compares models on)
  use :func:`pessimistic_ranks`: each relevant item is ranked by its own score and loses
  every tie (rank = number of candidates scoring >= it; a NaN candidate counts as above it;
  a relevant item scoring NaN, or not a candidate, is never found). A model with constant or
  NaN scores then gets 0 rather than credit for whichever items have low codes; for a model
  whose relevant items' scores are untied the two definitions agree exactly.

Accuracy (per user, then averaged):

* ``hr@K`` — 1 if any relevant item is in the top K;
* ``recall@K`` — relevant items found / relevant items;
* ``ndcg@K`` — DCG with gain 1/log2(rank + 1), normalised by the ideal DCG for
  min(|relevant|, K) hits;
* ``mrr@K`` — 1 / rank of the first relevant item within K (0 if none);
* ``map@K`` — mean of precision@j at each hit j, divided by min(|relevant|, K) (reported
  metrics only).

Beyond accuracy (over all recommended lists):

* ``coverage@K`` — share of the catalog recommended to anyone;
* ``novelty@K`` — mean self-information -log2(popularity / n_users) of recommended items;
* ``diversity@K`` — intra-list diversity: mean pairwise (1 - cosine) between the items of a
  list, with items represented by any feature matrix (the protocol uses catalog categories,
  or each item's vector of users when the catalog has none);
* ``arp@K`` — average recommended popularity (training users per item);
* ``gini@K`` — Gini index of how often each catalog item is recommended (0 = even, 1 = one item).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp


def hits_matrix(topk: np.ndarray, truth: sp.csr_matrix) -> np.ndarray:
    """Boolean users x K: is the item at each rank relevant for that user?"""
    n_items = truth.shape[1]
    rows = np.repeat(np.arange(truth.shape[0], dtype=np.int64), np.diff(truth.indptr))
    truth_keys = np.sort(rows * n_items + truth.indices)
    keys = np.arange(topk.shape[0], dtype=np.int64)[:, None] * n_items + topk
    found = np.isin(keys, truth_keys) & (topk >= 0)
    return found


def accuracy_per_user(topk: np.ndarray, truth: sp.csr_matrix, k: int) -> dict[str, np.ndarray]:
    """Per-user hr, recall, ndcg, mrr and map at cutoff ``k`` (arrays of length n_users)."""
    top = topk[:, :k]
    hits = hits_matrix(top, truth).astype(np.float64)
    n_relevant = np.diff(truth.indptr).astype(np.float64)
    if np.any(n_relevant == 0):
        raise ValueError("every evaluated user needs at least one relevant item")
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hits @ discounts[: hits.shape[1]]
    ideal_hits = np.minimum(n_relevant, k).astype(np.int64)
    idcg = np.cumsum(discounts)[ideal_hits - 1]
    ranks = np.arange(1, hits.shape[1] + 1)
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)
    precision_at = np.cumsum(hits, axis=1) / ranks
    return {
        f"hr@{k}": (hits.sum(axis=1) > 0).astype(np.float64),
        f"recall@{k}": hits.sum(axis=1) / n_relevant,
        f"ndcg@{k}": dcg / idcg,
        f"mrr@{k}": np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0),
        f"map@{k}": (precision_at * hits).sum(axis=1) / np.minimum(n_relevant, k),
    }


def pessimistic_ranks(scores: np.ndarray, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
    """The rank (1 = best, float) of item ``items[p]`` in row ``rows[p]`` of ``scores``
    (queries x n_items; ``-inf`` marks an item that is not a candidate, e.g. one already
    seen), losing every tie: the number of candidates scoring >= it, the item included, with
    NaN candidates counted as above it. ``inf`` when the item itself scores NaN or -inf:
    it would never be recommended."""
    rows = np.asarray(rows, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    target = scores[rows, items]
    block = scores[rows]
    ranks = ((block >= target[:, None]) | np.isnan(block)).sum(axis=1).astype(np.float64)
    ranks[np.isnan(target) | (target == -np.inf)] = np.inf
    return ranks


def accuracy_from_ranks(ranks: np.ndarray, truth: sp.csr_matrix, k: int) -> dict[str, np.ndarray]:
    """Per-user hr, recall, ndcg and mrr at cutoff ``k`` from the rank of every relevant item
    (``ranks`` in the order of ``truth.indices``, e.g. from :func:`pessimistic_ranks`)."""
    n_relevant = np.diff(truth.indptr)
    if np.any(n_relevant == 0):
        raise ValueError("every evaluated user needs at least one relevant item")
    owner = np.repeat(np.arange(truth.shape[0]), n_relevant)
    found = ranks <= k
    gain = np.where(found, 1.0 / np.log2(np.where(found, ranks, 1.0) + 1.0), 0.0)
    dcg = np.bincount(owner, weights=gain, minlength=truth.shape[0])
    idcg = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))[np.minimum(n_relevant, k) - 1]
    hits = np.bincount(owner, weights=found.astype(np.float64), minlength=truth.shape[0])
    best = np.full(truth.shape[0], np.inf)
    np.minimum.at(best, owner, ranks)
    return {
        f"hr@{k}": (hits > 0).astype(np.float64),
        f"recall@{k}": hits / n_relevant,
        f"ndcg@{k}": dcg / idcg,
        f"mrr@{k}": np.where(best <= k, 1.0 / best, 0.0),
    }


def coverage(topk: np.ndarray, n_items: int) -> float:
    """Share of the catalog that appears in at least one list."""
    rec = np.unique(topk[topk >= 0])
    return len(rec) / n_items if n_items else 0.0


def novelty(topk: np.ndarray, item_popularity: np.ndarray, n_users: int) -> float:
    """Mean self-information of recommended items; an item nobody had counts as popularity 1."""
    rec = topk[topk >= 0]
    if len(rec) == 0:
        return 0.0
    pop = np.maximum(item_popularity[rec], 1) / max(n_users, 1)
    return float(np.mean(-np.log2(pop)))


def average_popularity(topk: np.ndarray, item_popularity: np.ndarray) -> float:
    rec = topk[topk >= 0]
    return float(np.mean(item_popularity[rec])) if len(rec) else 0.0


def gini(topk: np.ndarray, n_items: int) -> float:
    """Gini index of recommendation counts over all catalog items."""
    counts = np.sort(np.bincount(topk[topk >= 0], minlength=n_items)).astype(np.float64)
    total = counts.sum()
    if total == 0 or n_items == 0:
        return 0.0
    index = np.arange(1, n_items + 1)
    return float(np.sum((2 * index - n_items - 1) * counts) / (n_items * total))


def intra_list_diversity(topk: np.ndarray, item_features: sp.csr_matrix, batch: int = 4096) -> float:
    """Mean over lists of the mean pairwise cosine distance between their items.

    ``item_features`` is n_items x d (sparse or dense); rows are L2-normalised here, and an
    item with no features is at distance 1 from every other. Lists with fewer than two items
    are skipped.

    Only the within-list similarities are computed: each list's rows get their own copy of
    the feature space (column = list x d + feature), so the Gram matrix of the stacked rows is
    block-diagonal, one K x K block per list, and costs no cross-list work."""
    feats = sp.csr_matrix(item_features, dtype=np.float64)
    norms = np.sqrt(np.asarray(feats.multiply(feats).sum(axis=1)).ravel())
    feats = sp.csr_matrix(sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ feats)
    d = feats.shape[1]
    k = topk.shape[1]
    values = []
    for start in range(0, topk.shape[0], batch):
        block = topk[start : start + batch]
        b = block.shape[0]
        valid = (block >= 0).ravel()
        rows = feats[np.where(valid, block.ravel(), 0)]
        rows = sp.csr_matrix(sp.diags(valid.astype(np.float64)) @ rows)  # empty slots: zero rows
        list_of_row = np.repeat(np.arange(b, dtype=np.int64), k)
        cols = rows.indices.astype(np.int64) + np.repeat(list_of_row, np.diff(rows.indptr)) * d
        spread = sp.csr_matrix((rows.data, cols, rows.indptr), shape=(b * k, b * d))
        gram = spread @ spread.T
        self_sim = np.asarray(spread.multiply(spread).sum(axis=1)).ravel()
        off_diagonal = (np.asarray(gram.sum(axis=1)).ravel() - self_sim).reshape(b, k).sum(axis=1)
        n_valid = valid.reshape(b, k).sum(axis=1)
        n_pairs = n_valid * (n_valid - 1)
        ok = n_pairs > 0
        values.append((n_pairs[ok] - off_diagonal[ok]) / n_pairs[ok])
    all_values = np.concatenate(values) if values else np.zeros(0)
    return float(all_values.mean()) if len(all_values) else 0.0


def truth_from_pairs(users: np.ndarray, items: np.ndarray, n_items: int) -> tuple[np.ndarray, sp.csr_matrix]:
    """(evaluated user codes, truth CSR with one row per evaluated user) from held-out pairs."""
    eval_users, row = np.unique(users, return_inverse=True)
    truth = sp.csr_matrix(
        (np.ones(len(items), dtype=np.float32), (row, items)), shape=(len(eval_users), n_items)
    )
    truth.sum_duplicates()
    return eval_users, truth


def summarize(
    topk: np.ndarray,
    truth: sp.csr_matrix,
    ks: Sequence[int],
    *,
    item_popularity: np.ndarray,
    n_users: int,
    item_features: sp.csr_matrix | None = None,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """All metrics at each cutoff: (means, per-user accuracy arrays)."""
    means: dict[str, float] = {}
    per_user: dict[str, np.ndarray] = {}
    n_items = truth.shape[1]
    for k in ks:
        acc = accuracy_per_user(topk, truth, k)
        per_user.update(acc)
        means.update({name: float(v.mean()) for name, v in acc.items()})
        top = topk[:, :k]
        means[f"coverage@{k}"] = coverage(top, n_items)
        means[f"novelty@{k}"] = novelty(top, item_popularity, n_users)
        means[f"arp@{k}"] = average_popularity(top, item_popularity)
        means[f"gini@{k}"] = gini(top, n_items)
        if item_features is not None:
            means[f"diversity@{k}"] = intra_list_diversity(top, item_features)
    return means, per_user


def bootstrap_ci(values: np.ndarray, n_resamples: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean over users."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for i in range(n_resamples):
        means[i] = values[rng.integers(0, len(values), len(values))].mean()
    alpha = (1.0 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))
