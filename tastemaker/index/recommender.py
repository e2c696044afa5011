"""A fitted vector model served through a vector index: :class:`IndexedRecommender`.

It wraps a fitted model (it does not subclass it, as ``implicit.ann`` wraps its models): the
index holds the model's ``item_vectors()`` under the model's item codes, and a query's vector
is the model's own ``user_vectors(model.resolve(queries))``. Exclusions (seen, ``exclude``) go
to the index search; a query with an ``include`` list, or with nothing to go on, is answered
by the model itself (exactly), so the rules of :class:`~tastemaker.models.base.Recommender`
hold either way. Growing the catalog (:meth:`add_items`) adds the new items' vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tastemaker.errors import ArtifactError
from tastemaker.models.base import Recommender
from tastemaker.types import ItemList, Query


def has_vectors(model: Recommender) -> bool:
    """Whether ``model`` scores by user x item vectors (ALS, BPR, two-tower, HLLM, content)."""
    return hasattr(model, "user_vectors") and hasattr(model, "item_vectors")


class IndexedRecommender:
    """``model`` answered through an index over its item vectors (see the module docstring).

    ``kind``: ``"auto"`` (exact below ``exact_below`` items, FAISS HNSW above), ``"exact"``,
    ``"hnsw"``. ``index_dir``: where the index is stored; a stored index of the right kind,
    size and dimension is loaded instead of built."""

    def __init__(self, model: Recommender, *, kind: str = "auto", exact_below: int = 20_000, index_dir: Path | None = None) -> None:
        if not has_vectors(model):
            raise TypeError(f"{type(model).__name__} has no user and item vectors to index")
        self.model = model
        vectors = np.asarray(model.item_vectors(), dtype=np.float32)  # type: ignore[attr-defined]
        if kind == "auto":
            kind = "exact" if len(vectors) < exact_below else "hnsw"
        self.kind = kind
        self.index = _stored_or_built(vectors, kind, index_dir)

    @property
    def name(self) -> str:
        return self.model.name

    def recommend(self, queries: Sequence[Query], n: int = 10) -> list[ItemList]:
        """The model's top-``n`` per query, found through the index."""
        model = self.model
        batch = model.resolve(queries)
        vectors = model.user_vectors(batch)  # type: ignore[attr-defined]
        lengths = np.diff(batch.history.indptr)
        out: list[ItemList | None] = [None] * len(queries)
        exact = [i for i, q in enumerate(queries) if q.include is not None or (lengths[i] == 0 and not batch.use_user_state[i])]
        if exact:  # the model's own rules: include lists, and the popularity fallback
            for i, items in zip(exact, model.recommend([queries[i] for i in exact], n=n), strict=True):
                out[i] = items
        search = [i for i in range(len(queries)) if out[i] is None]
        if search:
            excluded = []
            for i in search:
                query = queries[i]
                seen = batch.history.indices[batch.history.indptr[i] : batch.history.indptr[i + 1]] if query.exclude_seen else []
                blocked = model.items_.encode(query.exclude, missing="drop") if len(query.exclude) else []
                excluded.append(np.union1d(seen, blocked).astype(np.int64))
            ids, scores = self.index.search(vectors[search], n, exclude=excluded)
            for row, i in enumerate(search):
                keep = ids[row] >= 0
                codes = ids[row][keep].astype(np.int32)
                out[i] = ItemList(model.items_.decode(codes), codes, scores[row][keep].astype(np.float32),
                                  sources=(model.name,) * len(codes))
        return [items for items in out if items is not None]

    def add_items(self, catalog: Any) -> int:
        """Add the new catalog rows to the model (``model.add_items``) and their vectors to
        the index; returns how many were added."""
        model = self.model
        before = len(model.items_)
        model.add_items(catalog)  # type: ignore[attr-defined]
        after = len(model.items_)
        if after > before:
            vectors = np.asarray(model.item_vectors(), dtype=np.float32)[before:after]  # type: ignore[attr-defined]
            self.index.add(np.arange(before, after, dtype=np.int64), vectors)
            self.index.search(vectors[:1], 1)  # settle its lazy search state before it is shared
        return after - before

    def save_index(self, path: Path) -> None:
        self.index.save(path)


def _stored_or_built(vectors: np.ndarray, kind: str, index_dir: Path | None) -> Any:
    from tastemaker.index import build_index, load_index

    if index_dir is not None and (index_dir / "index.json").is_file():
        try:
            index = load_index(index_dir)
            if index.kind == kind and len(index) == len(vectors) and index.dim == vectors.shape[1]:
                return index
        except ArtifactError:
            pass  # unreadable: rebuilt below
    return build_index(np.arange(len(vectors), dtype=np.int64), vectors, kind=kind)  # type: ignore[arg-type]
