"""Features of a (query, candidate) pair, for learned rankers.

One row per candidate of a merged list (:func:`~tastemaker.pipeline.pipeline.merge_candidates`),
all vectorised over the list. Missing values are NaN (LightGBM treats NaN as missing, so "this
source did not retrieve the item" is learnable, not imputed):

* per source: its ``score`` and its ``rank`` (0-based) for the item, NaN where it did not
  retrieve it; and how many sources found the item;
* item: log popularity (distinct training users), age in days since ``created_at``, days
  since its last training event;
* user: training events, distinct items in the history (training + new), days since the
  last training event;
* match: the share of the user's history in the item's categories (category overlap), and
  the cosine between the item's vector and the mean of the history's vectors (content
  similarity), from the item vectors of a named source's model when there is one; the same
  cosine against the mean of the last 5 history items and against the last one (recency: the
  order of the history, which set-based sources such as EASE ignore).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tastemaker.pipeline.context import DAY, Context, Resolved
from tastemaker.types import ItemList

ITEM_USER_FEATURES = (
    "n_sources", "item_log_popularity", "item_age_days", "item_days_since_last_event",
    "user_events", "user_history_length", "user_days_since_last_event", "category_overlap", "content_similarity",
    "recent_similarity", "last_item_similarity",
)


#: the history's most recent items, for ``recent_similarity``
RECENT = 5


def feature_names(sources: Sequence[str]) -> list[str]:
    return [f"{name}__{kind}" for name in sources for kind in ("score", "rank")] + list(ITEM_USER_FEATURES)


def candidate_features(
    context: Context, query: Resolved, items: ItemList, sources: Sequence[str], vectors: np.ndarray | None = None
) -> np.ndarray:
    """(len(items), len(feature_names(sources))) float32 features (see the module docstring).
    ``vectors``: item vectors (row = context code) for the content similarity, or None."""
    n = len(items)
    codes = items.item_codes.astype(np.int64)
    columns: list[np.ndarray] = []
    found = np.zeros(n, dtype=np.float32)
    for name in sources:
        ranks = items.source_ranks.get(name)
        scores = items.source_scores.get(name)
        if ranks is None or scores is None:
            columns += [np.full(n, np.nan, np.float32)] * 2
            continue
        missing = ranks < 0
        columns.append(np.where(missing, np.nan, scores).astype(np.float32))
        columns.append(np.where(missing, np.nan, ranks).astype(np.float32))
        found += ~missing
    columns.append(found)
    columns.append(np.log1p(context.popularity[codes]).astype(np.float32))
    columns.append(((context.now - context.created_at[codes]) / DAY).astype(np.float32))
    columns.append(((context.now - context.last_seen[codes]) / DAY).astype(np.float32))
    trained = context.sequence_indptr[query.user + 1] - context.sequence_indptr[query.user] if query.user >= 0 else 0
    columns.append(np.full(n, trained, np.float32))
    history = np.unique(query.history)
    columns.append(np.full(n, len(history), np.float32))
    columns.append(np.full(n, (context.now - query.last_event) / DAY, np.float32))  # NaN when unknown
    columns.append(_category_overlap(context, query.history, codes))
    columns.append(_content_similarity(vectors, history, codes))
    # sequence signal that set-based sources (EASE, ItemKNN) ignore: what the user did last
    columns.append(_content_similarity(vectors, query.history[-RECENT:], codes))
    columns.append(_content_similarity(vectors, query.history[-1:], codes))
    return np.column_stack(columns).astype(np.float32) if n else np.zeros((0, len(columns)), np.float32)


def _category_overlap(context: Context, history: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Per candidate: the largest share of the history in one of the candidate's categories."""
    if not len(history) or context.categories.shape[1] == 0:
        return np.full(len(codes), np.nan, np.float32)
    return context.best_category_value(codes, context.category_shares(history)).astype(np.float32)


def _content_similarity(vectors: np.ndarray | None, history: np.ndarray, codes: np.ndarray) -> np.ndarray:
    if vectors is None or not len(history):
        return np.full(len(codes), np.nan, np.float32)
    known = history[history < len(vectors)]
    if not len(known):
        return np.full(len(codes), np.nan, np.float32)
    profile = vectors[known].mean(axis=0)
    profile = profile / max(float(np.linalg.norm(profile)), 1e-12)
    inside = codes < len(vectors)
    out = np.full(len(codes), np.nan, np.float32)
    candidates = vectors[codes[inside]]
    norms = np.maximum(np.linalg.norm(candidates, axis=1), 1e-12)
    out[inside] = (candidates @ profile) / norms
    return out
