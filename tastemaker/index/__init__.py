"""Vector indexes over item vectors: exact search (the reference) and FAISS ANN.

Every index here implements :class:`tastemaker.protocols.VectorIndex` plus the serving
extras of :class:`ItemIndex`: per-query exclusions, removing or hiding items, and
save/load to a directory without pickle. ``build_index`` picks the kind by catalogue size:

    index = build_index(item_codes, model.item_factors_)      # exact below 20k items, HNSW above
    ids, scores = index.search(user_vectors, k=10, exclude=seen_items)

FAISS is the ``ann`` extra and is imported only when an ANN index is built or loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol, Self, runtime_checkable

import numpy as np
import numpy.typing as npt

from tastemaker.errors import ArtifactError
from tastemaker.index.ann import FaissHNSWIndex, FaissIVFIndex
from tastemaker.index.exact import ExactIndex, read_manifest
from tastemaker.protocols import VectorIndex

__all__ = ["EXACT_BELOW", "ExactIndex", "FaissHNSWIndex", "FaissIVFIndex", "ItemIndex", "build_index", "load_index"]

# Below this many items exact search is the default: its single-query p99 stays far inside
# the serving budget, it needs no build, and its recall is 1. Measured in benchmarks/ann.py.
EXACT_BELOW = 20_000

KINDS: dict[str, type[ExactIndex] | type[FaissHNSWIndex] | type[FaissIVFIndex]] = {
    "exact": ExactIndex,
    "hnsw": FaissHNSWIndex,
    "ivf": FaissIVFIndex,
}


@runtime_checkable
class ItemIndex(VectorIndex, Protocol):
    """A ``VectorIndex`` with what serving needs: exclusions, removal, hiding, persistence."""

    def search(
        self, queries: np.ndarray, k: int, exclude: list[np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def remove(self, ids: npt.ArrayLike) -> None: ...

    def set_available(self, ids: npt.ArrayLike, available: bool = True) -> None: ...

    def save(self, path: str | Path) -> None: ...

    @classmethod
    def load(cls, path: str | Path) -> Self: ...


def build_index(
    ids: npt.ArrayLike,
    vectors: npt.ArrayLike,
    *,
    kind: Literal["auto", "exact", "hnsw", "ivf"] = "auto",
    exact_below: int = EXACT_BELOW,
    **params: Any,
) -> ExactIndex | FaissHNSWIndex | FaissIVFIndex:
    """An index holding ``vectors`` under ``ids``.

    ``kind="auto"`` gives an ``ExactIndex`` below ``exact_below`` items and a
    ``FaissHNSWIndex`` from there on; ``params`` go to the chosen class's constructor
    (e.g. ``ef_search=256``, ``threads=2``)."""
    if kind == "auto":
        kind = "exact" if len(np.asarray(ids).reshape(-1)) < exact_below else "hnsw"
    if kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}; expected one of {['auto', *KINDS]}")
    array = np.asarray(vectors)
    index = KINDS[kind](array.shape[1] if array.ndim == 2 else None, **params)
    index.add(ids, array)
    return index


def load_index(path: str | Path) -> ExactIndex | FaissHNSWIndex | FaissIVFIndex:
    """Load any index written by ``save``, whatever its kind."""
    kind = read_manifest(path).get("kind")
    if kind not in KINDS:
        raise ArtifactError(f"{path}: unknown index kind {kind!r}")
    return KINDS[kind].load(path)
