"""Exact inner-product search: the reference every ANN index is measured against.

``ExactIndex`` keeps the item vectors in one float32 array and answers a batch of queries with
a matrix product and ``argpartition``, a block of queries at a time so that the score matrix
never exceeds ``batch_bytes``. Exclusions (items a user has seen) and unavailable items are
set to -inf before the top-k is taken, so they are exact.

This file also holds what every index in :mod:`tastemaker.index` shares: the input checks
(each names the problem in a ``ValueError``), ``IdMap`` (external id -> storage row) and the
on-disk manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from tastemaker.errors import ArtifactError

Ids = npt.NDArray[np.int64]
Rows = npt.NDArray[np.int64]
Vectors = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]

FORMAT = "tastemaker-index"
FORMAT_VERSION = 1
MANIFEST = "index.json"
PAD_ID = -1


# ---------------------------------------------------------------------------- input checks
def _first(values: np.ndarray, limit: int = 5) -> list[int]:
    return [int(v) for v in values[:limit]]


def check_vectors(vectors: npt.ArrayLike, dim: int | None, what: str = "vectors") -> Vectors:
    """``vectors`` as a C-contiguous float32 (n, dim) array; ValueError naming the problem
    (not 2-D, wrong dimension, NaN or infinite values)."""
    try:
        array = np.ascontiguousarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} must be numeric: {error}") from None
    if array.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (n, dim), got shape {array.shape}")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(f"{what} have dimension {array.shape[1]}, the index has dimension {dim}")
    if array.shape[1] == 0:
        raise ValueError(f"{what} have dimension 0")
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(f"{what} contain NaN or infinite values (rows {_first(bad)}, {len(bad)} in all)")
    return array


def check_ids(ids: npt.ArrayLike, n_vectors: int) -> Ids:
    """``ids`` as int64: 1-D, integers, one per vector, non-negative, no duplicates."""
    array = np.asarray(ids)
    if array.ndim != 1:
        raise ValueError(f"ids must be a 1-D array, got shape {array.shape}")
    if len(array) and (array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"ids must be integers, got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    if len(array) != n_vectors:
        raise ValueError(f"ids and vectors differ in length: {len(array)} ids, {n_vectors} vectors")
    if (array < 0).any():
        raise ValueError(f"ids must be non-negative (-1 marks padding): {_first(array[array < 0])}")
    unique, counts = np.unique(array, return_counts=True)
    if len(unique) != len(array):
        raise ValueError(f"duplicate ids in the batch: {_first(unique[counts > 1])}")
    return array


def check_k(k: int) -> int:
    """``k`` as a non-negative int."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    return int(k)


def check_exclude(exclude: list[np.ndarray] | None, n_queries: int) -> list[Ids] | None:
    """Per-query excluded ids as int64 arrays (None when nothing is excluded)."""
    if exclude is None:
        return None
    if len(exclude) != n_queries:
        raise ValueError(f"exclude has {len(exclude)} lists for {n_queries} queries (one per query)")
    out = []
    for position, ids in enumerate(exclude):
        array = np.asarray(ids if ids is not None else [], dtype=np.int64).reshape(-1)
        if array.size and not np.issubdtype(np.asarray(ids).dtype, np.integer):
            raise ValueError(f"exclude[{position}] must hold integer ids, got dtype {np.asarray(ids).dtype}")
        out.append(array)
    return out if any(len(e) for e in out) else None


def padded(n_queries: int, k: int) -> tuple[Ids, Vectors]:
    """Results with nothing found: ids -1 and scores -inf, shaped (n_queries, k)."""
    return np.full((n_queries, k), PAD_ID, dtype=np.int64), np.full((n_queries, k), -np.inf, dtype=np.float32)


# ---------------------------------------------------------------------------- id map
class IdMap:
    """External int64 ids -> storage rows, kept as two arrays sorted by id.

    Lookups are vectorised (``searchsorted``); an insert or delete costs O(n), so adding
    one new item to a large index stays cheap."""

    def __init__(self) -> None:
        self._ids: Ids = np.empty(0, dtype=np.int64)
        self._rows: Rows = np.empty(0, dtype=np.int64)

    @classmethod
    def from_rows(cls, ids_by_row: Ids, live: Mask | None = None) -> IdMap:
        """The map of ``ids_by_row[row]`` for every row (or every row where ``live``)."""
        rows = np.arange(len(ids_by_row), dtype=np.int64)
        if live is not None:
            rows = rows[live]
        order = np.argsort(ids_by_row[rows], kind="stable")
        out = cls()
        out._ids, out._rows = ids_by_row[rows][order], rows[order]
        return out

    def __len__(self) -> int:
        return len(self._ids)

    def rows(self, ids: Ids) -> Rows:
        """The row of each id, -1 where the id is not in the map."""
        if len(self._ids) == 0 or len(ids) == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        position = np.minimum(np.searchsorted(self._ids, ids), len(self._ids) - 1)
        return np.where(self._ids[position] == ids, self._rows[position], -1)

    def insert(self, ids: Ids, rows: Rows) -> None:
        """Add ids (none of them already present) at the given rows."""
        order = np.argsort(ids, kind="stable")
        position = np.searchsorted(self._ids, ids[order])
        self._ids = np.insert(self._ids, position, ids[order])
        self._rows = np.insert(self._rows, position, rows[order])

    def delete(self, ids: Ids) -> None:
        """Drop ids (all present)."""
        position = np.searchsorted(self._ids, ids)
        self._ids = np.delete(self._ids, position)
        self._rows = np.delete(self._rows, position)


def known_rows(id_map: IdMap, ids: npt.ArrayLike, action: str) -> Rows:
    """Rows of ``ids`` for ``remove`` / ``set_available``; ValueError naming unknown ids."""
    array = np.unique(np.asarray(ids, dtype=np.int64).reshape(-1))
    rows = id_map.rows(array)
    if (rows < 0).any():
        raise ValueError(f"cannot {action} ids that are not in the index: {_first(array[rows < 0])}")
    return rows


def check_new_ids(id_map: IdMap, ids: Ids) -> None:
    """ValueError when any of ``ids`` is already in the index."""
    present = id_map.rows(ids) >= 0
    if present.any():
        raise ValueError(f"ids already in the index: {_first(ids[present])}")


# ---------------------------------------------------------------------------- manifest
def write_manifest(path: Path, kind: str, dim: int | None, params: dict[str, Any], count: int) -> None:
    """``index.json``: format, version, kind, dimension, constructor params, item count."""
    manifest = {"format": FORMAT, "version": FORMAT_VERSION, "kind": kind, "dim": dim, "params": params, "count": count}
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2))


def read_manifest(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """The manifest of a saved index; ArtifactError when it is missing, foreign, of another
    version or (when ``kind`` is given) of another kind of index."""
    file = Path(path) / MANIFEST
    try:
        manifest: dict[str, Any] = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{file}: not a saved index ({error})") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
        found = f"format {manifest.get('format')!r} v{manifest.get('version')}"
        raise ArtifactError(f"{file}: {found}, expected {FORMAT!r} v{FORMAT_VERSION}")
    if kind is not None and manifest.get("kind") != kind:
        raise ArtifactError(f"{file}: a {manifest.get('kind')!r} index, expected {kind!r}")
    return manifest


def load_array(path: Path, name: str, length: int) -> np.ndarray:
    """``<name>.npy`` (no pickle), checked to hold ``length`` rows."""
    try:
        array: np.ndarray = np.load(path / f"{name}.npy", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ArtifactError(f"{path / name}.npy: {error}") from None
    if len(array) != length:
        raise ArtifactError(f"{path / name}.npy: {len(array)} rows, the manifest says {length}")
    return array


# ---------------------------------------------------------------------------- exact top-k
def exact_top_k(
    vectors: Vectors,
    queries: Vectors,
    k: int,
    *,
    allowed: Mask | None = None,
    exclude_rows: list[Rows] | None = None,
    batch_bytes: int = 64 * 2**20,
) -> tuple[Rows, Vectors]:
    """Top-k rows of ``vectors`` by inner product with each query, best first.

    ``allowed`` masks rows out for every query, ``exclude_rows[i]`` for query i. Returns
    (rows, scores) shaped (len(queries), k), row -1 / score -inf where fewer rows qualify.
    Ties are broken by row, so a query gets the same answer alone or in a batch."""
    n_rows, n_queries = len(vectors), len(queries)
    rows_out, scores_out = padded(n_queries, k)
    top = min(k, n_rows)
    if top == 0 or n_queries == 0:
        return rows_out, scores_out
    # per block: the float32 scores plus argpartition's int64 indices
    block = max(1, batch_bytes // (12 * n_rows))
    for start in range(0, n_queries, block):
        stop = min(start + block, n_queries)
        scores = queries[start:stop] @ vectors.T
        if allowed is not None:
            scores[:, ~allowed] = -np.inf
        if exclude_rows is not None:
            lengths = [len(r) for r in exclude_rows[start:stop]]
            if sum(lengths):
                query_of = np.repeat(np.arange(stop - start), lengths)
                scores[query_of, np.concatenate(exclude_rows[start:stop])] = -np.inf
        if top < n_rows:
            candidates = np.argpartition(scores, n_rows - top, axis=1)[:, n_rows - top :]
        else:
            candidates = np.broadcast_to(np.arange(n_rows), scores.shape)
        candidate_scores = np.take_along_axis(scores, candidates, axis=1)
        order = np.lexsort((candidates, -candidate_scores), axis=1)
        best_rows = np.take_along_axis(candidates, order, axis=1)
        best_scores = np.take_along_axis(candidate_scores, order, axis=1)
        best_rows = np.where(np.isneginf(best_scores), PAD_ID, best_rows)
        rows_out[start:stop, :top] = best_rows
        scores_out[start:stop, :top] = best_scores
    return rows_out, scores_out


# ---------------------------------------------------------------------------- the index
class ExactIndex:
    """Brute-force inner-product search over float32 vectors: the reference.

    ``dim`` may be left to the first ``add``. ``batch_bytes`` bounds the working memory of a
    search (the score matrix of one block of queries). ``remove(ids)`` deletes items;
    ``set_available(ids, False)`` hides them from results but keeps them (e.g. out of stock).
    """

    kind: ClassVar[str] = "exact"

    def __init__(self, dim: int | None = None, *, batch_bytes: int = 64 * 2**20) -> None:
        if dim is not None and dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = dim
        self.batch_bytes = batch_bytes
        self._count = 0
        self._ids: Ids = np.empty(0, dtype=np.int64)
        self._vectors: Vectors = np.empty((0, dim or 0), dtype=np.float32)
        self._available: Mask = np.empty(0, dtype=np.bool_)
        self._id_map = IdMap()

    # ------------------------------------------------------------------ state
    def __len__(self) -> int:
        return self._count

    @property
    def ids(self) -> Ids:
        """The stored ids in storage order (a read-only view)."""
        view = self._ids[: self._count]
        view.flags.writeable = False
        return view

    @property
    def vectors(self) -> Vectors:
        """The stored vectors in storage order (a read-only view)."""
        view = self._vectors[: self._count]
        view.flags.writeable = False
        return view

    def params(self) -> dict[str, Any]:
        """Constructor parameters (saved with the index)."""
        return {"batch_bytes": self.batch_bytes}

    # ------------------------------------------------------------------ updates
    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Append items; each is searchable as soon as this returns."""
        vectors = check_vectors(vectors, self.dim)
        ids = check_ids(ids, len(vectors))
        check_new_ids(self._id_map, ids)
        if self.dim is None:
            self.dim = vectors.shape[1]
        self._reserve(self._count + len(ids))
        rows = np.arange(self._count, self._count + len(ids), dtype=np.int64)
        self._ids[rows] = ids
        self._vectors[rows] = vectors
        self._available[rows] = True
        self._count += len(ids)
        self._id_map.insert(ids, rows)

    def remove(self, ids: npt.ArrayLike) -> None:
        """Delete items (ValueError naming any id that is not in the index)."""
        rows = known_rows(self._id_map, ids, "remove")
        keep = np.ones(self._count, dtype=np.bool_)
        keep[rows] = False
        self._ids = self._ids[: self._count][keep]
        self._vectors = self._vectors[: self._count][keep]
        self._available = self._available[: self._count][keep]
        self._count = len(self._ids)
        self._id_map = IdMap.from_rows(self._ids)

    def set_available(self, ids: npt.ArrayLike, available: bool = True) -> None:
        """Show (True) or hide (False) items in results without removing them."""
        self._available[known_rows(self._id_map, ids, "set_available on")] = available

    def _reserve(self, size: int) -> None:
        """Grow the buffers geometrically so that one-at-a-time adds stay amortised O(1)."""
        if size <= len(self._ids):
            return
        capacity = max(size, 2 * len(self._ids), 16)
        self._ids = np.resize(self._ids, capacity)
        self._available = np.resize(self._available, capacity)
        vectors = np.empty((capacity, self.dim or 0), dtype=np.float32)
        if self._count:
            vectors[: self._count] = self._vectors[: self._count]
        self._vectors = vectors

    # ------------------------------------------------------------------ search
    def search(
        self, queries: npt.ArrayLike, k: int, exclude: list[np.ndarray] | None = None
    ) -> tuple[Ids, Vectors]:
        """The k items with the largest inner product with each query, best first.

        ``exclude[i]`` lists ids never returned for query i (ids not in the index are
        ignored). Returns (ids, scores) shaped (len(queries), k), padded with -1 / -inf."""
        queries = check_vectors(queries, self.dim, "queries")
        k = check_k(k)
        excluded = check_exclude(exclude, len(queries))
        exclude_rows = None
        if excluded is not None:
            exclude_rows = [rows[rows >= 0] for rows in (self._id_map.rows(e) for e in excluded)]
        available = self._available[: self._count]
        rows, scores = exact_top_k(
            self._vectors[: self._count],
            queries,
            k,
            allowed=None if available.all() else available,
            exclude_rows=exclude_rows,
            batch_bytes=self.batch_bytes,
        )
        ids = np.where(rows >= 0, self._ids[np.maximum(rows, 0)], PAD_ID) if self._count else rows
        return ids, scores

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write the index to a directory: ``index.json`` plus ``.npy`` arrays (no pickle)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        np.save(path / "ids.npy", self._ids[: self._count], allow_pickle=False)
        np.save(path / "vectors.npy", self._vectors[: self._count], allow_pickle=False)
        np.save(path / "available.npy", self._available[: self._count], allow_pickle=False)
        write_manifest(path, self.kind, self.dim, self.params(), self._count)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read an index written by ``save``; ArtifactError when it is missing or corrupt."""
        path = Path(path)
        manifest = read_manifest(path, cls.kind)
        count = int(manifest["count"])
        index = cls(manifest["dim"], **manifest["params"])
        if count:
            index.add(load_array(path, "ids", count), load_array(path, "vectors", count))
            index._available[:count] = load_array(path, "available", count).astype(np.bool_)
        return index
