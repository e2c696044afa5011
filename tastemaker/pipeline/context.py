"""What every stage of a pipeline may read about the catalog and the users: :class:`Context`.

Built once from the training dataset by :meth:`Pipeline.fit <tastemaker.pipeline.Pipeline.fit>`
and saved with the pipeline. Every stage speaks in the context's item codes, so candidates
from different sources line up. Items added later (:meth:`Context.add_items`) get the next
codes; nothing already coded ever changes.

A query is resolved against the context once per request (:meth:`Context.resolve`): the
user's training history plus the query's new items, in time order, and the codes a list must
leave out (seen, excluded) or keep to (``include``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tastemaker.data.dataset import Dataset
from tastemaker.data.vocab import Vocabulary
from tastemaker.types import Query

#: Trending popularity: an event's weight halves every this many seconds before the newest
#: training event (default; the popularity source can set its own).
DAY = 86_400.0


@dataclass(frozen=True)
class Resolved:
    """One query against the context. ``history``: item codes in time order (training history
    then the query's new items, unknown ids dropped); ``blocked``: codes never to return (seen
    unless ``exclude_seen`` is False, plus ``exclude``); ``allowed``: None, or the only codes
    that may be returned (``include``)."""

    query: Query
    user: int
    history: np.ndarray
    blocked: np.ndarray
    allowed: np.ndarray | None
    last_event: float  # time of the user's last training event (NaN when none is known)


class Context:
    """Catalog and user facts shared by the stages (see the module docstring).

    Items: ``items`` (vocabulary), ``titles``, ``categories`` (items x categories, binary CSR,
    with ``category_names``), ``created_at`` (unix seconds, NaN unknown), ``popularity``
    (distinct training users per item) and ``last_seen`` (time of the item's last training
    event, NaN for none). Users: ``users``, ``seen`` (users x items, binary CSR),
    ``sequences`` (``sequence_indptr``/``sequence_items``/``sequence_times``: each user's
    training events in time order) and ``now`` (the newest training event's time)."""

    items: Vocabulary
    users: Vocabulary
    titles: np.ndarray
    categories: sp.csr_matrix
    category_names: np.ndarray
    created_at: np.ndarray
    popularity: np.ndarray
    last_seen: np.ndarray
    seen: sp.csr_matrix
    sequence_indptr: np.ndarray
    sequence_items: np.ndarray
    sequence_times: np.ndarray
    now: float

    # ------------------------------------------------------------------ building
    @classmethod
    def from_dataset(cls, dataset: Dataset) -> Context:
        ctx = cls()
        ctx.items, ctx.users = dataset.items, dataset.users
        catalog = dataset.catalog
        ctx.titles = catalog["title"].fillna("").astype(str).to_numpy(dtype=object)
        ctx.categories = dataset.category_matrix()
        flat = sorted({str(c) for row in catalog["categories"].to_list() for c in row})
        ctx.category_names = np.asarray(flat, dtype=object)
        created = catalog["created_at"] if "created_at" in catalog.columns else pd.Series(np.nan, index=catalog.index)
        ctx.created_at = pd.to_numeric(created, errors="coerce").to_numpy(dtype=np.float64)
        ctx.popularity = dataset.item_popularity()
        inter = dataset.interactions
        items, times = inter["item"].to_numpy(), inter["timestamp"].to_numpy(dtype=np.float64)
        last = np.full(len(ctx.items), np.nan)
        if len(items):
            order = np.argsort(times, kind="stable")
            last[items[order]] = times[order]  # later writes win: each item's newest time
        ctx.last_seen = last
        ctx.seen = dataset.to_csr("binary")
        users = inter["user"].to_numpy()
        bounds = np.searchsorted(users, np.arange(len(ctx.users) + 1))  # sorted by user, then time
        ctx.sequence_indptr = bounds.astype(np.int64)
        ctx.sequence_items = items.astype(np.int32)
        ctx.sequence_times = times
        ctx.now = float(times.max()) if len(times) else 0.0
        return ctx

    def add_items(self, catalog: pd.DataFrame) -> np.ndarray:
        """Append the rows of ``catalog`` (``item_id``, optional ``title``, ``categories``,
        ``created_at``) whose id is new; returns their codes. New items have no events."""
        frame = catalog.drop_duplicates("item_id")
        new = frame[self.items.encode(frame["item_id"].astype(str), missing="mark") < 0]
        if not len(new):
            return np.zeros(0, dtype=np.int32)
        start = len(self.items)
        self.items = self.items.extend(new["item_id"].astype(str))
        count = len(new)
        titles = new["title"].fillna("").astype(str).to_numpy(dtype=object) if "title" in new.columns else np.full(count, "", dtype=object)
        self.titles = np.concatenate([self.titles, titles])
        known = {str(name): k for k, name in enumerate(self.category_names)}
        rows, cols = [], []
        for row, cats in enumerate(new["categories"].tolist() if "categories" in new.columns else [()] * count):
            for cat in cats if isinstance(cats, list | tuple | np.ndarray) else ():
                if str(cat) in known:  # a category never seen in training has no column
                    rows.append(row)
                    cols.append(known[str(cat)])
        added = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(count, len(known)))
        self.categories = sp.vstack([self.categories, added], format="csr")
        created = pd.to_numeric(new["created_at"], errors="coerce").to_numpy(dtype=np.float64) if "created_at" in new.columns else np.full(count, np.nan)
        self.created_at = np.concatenate([self.created_at, created])
        self.popularity = np.concatenate([self.popularity, np.zeros(count, dtype=np.int64)])
        self.last_seen = np.concatenate([self.last_seen, np.full(count, np.nan)])
        self.seen = sp.csr_matrix((self.seen.data, self.seen.indices, self.seen.indptr), shape=(self.seen.shape[0], len(self.items)))
        return np.arange(start, start + count, dtype=np.int32)

    # ------------------------------------------------------------------ queries
    def training_history(self, user: int) -> np.ndarray:
        """The user's training item codes in time order (empty for -1)."""
        if user < 0:
            return np.zeros(0, dtype=np.int32)
        return self.sequence_items[self.sequence_indptr[user] : self.sequence_indptr[user + 1]]

    def resolve(self, queries: Sequence[Query]) -> list[Resolved]:
        users = self.users.encode([q.user if q.user is not None else "" for q in queries], missing="mark")
        out = []
        for query, user in zip(queries, users, strict=True):
            user = int(user) if query.user is not None else -1
            new = self.items.encode(query.history, missing="drop") if len(query.history) else np.zeros(0, np.int32)
            trained = self.training_history(user)
            history = np.concatenate([trained, new]).astype(np.int32)
            blocked = [self.items.encode(query.exclude, missing="drop")] if len(query.exclude) else []
            if query.exclude_seen:
                blocked.append(history)
            blocked_codes = np.unique(np.concatenate(blocked)).astype(np.int32) if blocked else np.zeros(0, np.int32)
            allowed = None if query.include is None else np.unique(self.items.encode(query.include, missing="drop")).astype(np.int32)
            last = float(self.sequence_times[self.sequence_indptr[user + 1] - 1]) if user >= 0 and len(trained) else float("nan")
            out.append(Resolved(query, user, history, blocked_codes, allowed, last))
        return out

    # ------------------------------------------------------------------ persistence
    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "item_ids": self.items.ids.astype(str),
            "user_ids": self.users.ids.astype(str),
            "titles": self.titles.astype(str),
            "category_names": self.category_names.astype(str),
            "category_indptr": self.categories.indptr.astype(np.int64),
            "category_indices": self.categories.indices.astype(np.int32),
            "created_at": self.created_at,
            "popularity": self.popularity.astype(np.int64),
            "last_seen": self.last_seen,
            "seen_indptr": self.seen.indptr.astype(np.int64),
            "seen_indices": self.seen.indices.astype(np.int32),
            "sequence_indptr": self.sequence_indptr,
            "sequence_items": self.sequence_items,
            "sequence_times": self.sequence_times,
            "now": np.asarray([self.now]),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any]) -> Context:
        ctx = cls()
        ctx.items = Vocabulary(arrays["item_ids"].tolist(), name="item")
        ctx.users = Vocabulary(arrays["user_ids"].tolist(), name="user")
        ctx.titles = arrays["titles"].astype(object)
        ctx.category_names = arrays["category_names"].astype(object)
        n_items, n_users = len(ctx.items), len(ctx.users)
        ctx.categories = sp.csr_matrix(
            (np.ones(len(arrays["category_indices"]), np.float32), arrays["category_indices"], arrays["category_indptr"]),
            shape=(n_items, len(ctx.category_names)),
        )
        ctx.created_at, ctx.popularity, ctx.last_seen = arrays["created_at"], arrays["popularity"], arrays["last_seen"]
        ctx.seen = sp.csr_matrix(
            (np.ones(len(arrays["seen_indices"]), np.float32), arrays["seen_indices"], arrays["seen_indptr"]),
            shape=(n_users, n_items),
        )
        ctx.sequence_indptr, ctx.sequence_items = arrays["sequence_indptr"], arrays["sequence_items"]
        ctx.sequence_times = arrays["sequence_times"]
        ctx.now = float(arrays["now"][0])
        return ctx

    def category_shares(self, history: np.ndarray) -> np.ndarray:
        """Per category, the share of ``history`` (item codes, repeats counted) in it: the sum of
        the history's category rows over its length (zeros for an empty history). Works on the
        CSR arrays directly: sparse row slicing cost ~0.3 ms per request at 100k items."""
        n = self.categories.shape[1]
        if not len(history) or n == 0:
            return np.zeros(n, dtype=np.float64)
        rows = _csr_entries(self.categories, np.asarray(history, dtype=np.int64))
        cats = self.categories
        return np.bincount(cats.indices[rows], weights=cats.data[rows], minlength=n) / len(history)

    def best_category_value(self, codes: np.ndarray, per_category: np.ndarray) -> np.ndarray:
        """Per item code: max over its categories of (its category weight x ``per_category``),
        0 for an item without categories (what ``categories[codes].multiply(v).max(axis=1)``
        gives, without building sparse matrices)."""
        cats = self.categories
        codes = np.asarray(codes, dtype=np.int64)
        out = np.zeros(len(codes), dtype=np.float64)
        if not len(codes):
            return out
        lengths = cats.indptr[codes + 1] - cats.indptr[codes]
        rows = _csr_entries(cats, codes)
        if not len(rows):
            return out
        values = cats.data[rows] * per_category[cats.indices[rows]]
        has = lengths > 0
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])[has]
        out[has] = np.maximum.reduceat(values, starts)
        # a sparse row's max counts its implicit zeros (a row with every category stored has none)
        partial = has & (lengths < cats.shape[1])
        out[partial] = np.maximum(out[partial], 0.0)
        return out

    def item_categories(self, code: int) -> list[str]:
        row = self.categories
        return [str(self.category_names[c]) for c in row.indices[row.indptr[code] : row.indptr[code + 1]]]


def _csr_entries(matrix: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    """Positions in ``matrix.indices``/``data`` of every entry of ``rows``, row after row."""
    starts, ends = matrix.indptr[rows], matrix.indptr[rows + 1]
    lengths = ends - starts
    total = int(lengths.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return offsets + np.arange(total, dtype=np.int64)
