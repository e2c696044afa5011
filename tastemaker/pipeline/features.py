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
    context: Context, query: Resolved, items: ItemList, sources: Sequence[str], vectors: np.ndarray | None = None,
    norms: np.ndarray | None = None,
) -> np.ndarray:
    """(len(items), len(feature_names(sources))) float32 features (see the module docstring).
    ``vectors``: item vectors (row = context code) for the content similarity, or None;
    ``norms``: their L2 norms (computed here when not given: a server passes them cached)."""
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
    # the whole history, then the sequence signal that set-based sources (EASE, ItemKNN)
    # ignore: what the user did last
    columns += _content_similarity(vectors, [history, query.history[-RECENT:], query.history[-1:]], codes, norms)
    return np.column_stack(columns).astype(np.float32) if n else np.zeros((0, len(columns)), np.float32)


def _category_overlap(context: Context, history: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Per candidate: the largest share of the history in one of the candidate's categories."""
    if not len(history) or context.categories.shape[1] == 0:
        return np.full(len(codes), np.nan, np.float32)
    return context.best_category_value(codes, context.category_shares(history)).astype(np.float32)


def _content_similarity(
    vectors: np.ndarray | None, histories: Sequence[np.ndarray], codes: np.ndarray, norms: np.ndarray | None = None
) -> list[np.ndarray]:
    """Per history in ``histories``: the cosine between each candidate's vector and the mean of
    the history's vectors (NaN without vectors or history). The candidates' rows are gathered
    once for all the histories."""
    missing = np.full(len(codes), np.nan, np.float32)
    if vectors is None:
        return [missing] * len(histories)
    profiles, wanted = [], []
    for k, history in enumerate(histories):
        known = history[history < len(vectors)]
        if len(known):
            profile = vectors[known].mean(axis=0)
            profiles.append(profile / max(float(np.linalg.norm(profile)), 1e-12))
            wanted.append(k)
    out = [missing] * len(histories)
    if not profiles:
        return out
    inside = codes < len(vectors)
    rows = codes[inside]
    candidates = vectors[rows]
    lengths = np.linalg.norm(candidates, axis=1) if norms is None else norms[rows]
    lengths = np.maximum(lengths, 1e-12)
    for profile, k in zip(profiles, wanted, strict=True):
        values = np.full(len(codes), np.nan, np.float32)
        # one product per profile, not one matrix product: the same floats as at training
        # time, bit for bit (LightGBM's split thresholds sit between observed values)
        values[inside] = (candidates @ profile) / lengths
        out[k] = values
    return out
