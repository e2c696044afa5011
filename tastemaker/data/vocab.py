"""Vocabulary: external string ids <-> dense int32 codes.

Everything inside the library works on codes; only the edges (loaders, the CLI, the server)
see external ids. A vocabulary is append-only: codes never change once given, so an item
that arrives later gets the next free code and every saved array stays valid.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from tastemaker.errors import UnknownIdError

Missing = Literal["error", "drop", "mark"]
_SMALL = 256  # up to this many ids, encode through a dict


class Vocabulary:
    """An ordered, duplicate-free list of external ids; the position of an id is its code.

    >>> v = Vocabulary(["a", "b"])
    >>> v.encode(["b", "a"]).tolist()
    [1, 0]
    >>> v.decode([0]).tolist()
    ['a']
    """

    __slots__ = ("_index", "_lookup", "name")

    def __init__(self, ids: Iterable[object] = (), name: str = "id") -> None:
        values = pd.Index(normalize_ids(ids), dtype=object)
        if values.has_duplicates:
            dup = values[values.duplicated()][:5].tolist()
            raise ValueError(f"{name} vocabulary: duplicate ids {dup}")
        self._index = values
        self._lookup: dict[str, int] | None = None  # built on first small lookup (serving path)
        self.name = name

    @classmethod
    def from_values(cls, values: Iterable[object], name: str = "id") -> Vocabulary:
        """Build from values that may repeat, keeping the order of first appearance."""
        return cls(pd.unique(_as_str_array(values)), name=name)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, external_id: object) -> bool:
        key = external_id if isinstance(external_id, str) else normalize_ids([external_id])[0]
        return key in self._dict()

    def _dict(self) -> dict[str, int]:
        if self._lookup is None:
            self._lookup = {key: code for code, key in enumerate(self._index)}
        return self._lookup

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._index.equals(other._index)

    def __repr__(self) -> str:
        return f"Vocabulary({self.name}, {len(self)} ids)"

    @property
    def ids(self) -> np.ndarray:
        """All external ids in code order (an object array of str)."""
        return self._index.to_numpy()

    def encode(self, ids: Iterable[object], missing: Missing = "error") -> np.ndarray:
        """Map external ids to int32 codes.

        ``missing`` says what an unknown id does: ``"error"`` raises :class:`UnknownIdError`
        naming it, ``"mark"`` gives it code -1, ``"drop"`` leaves it out of the result.
        """
        arr = _as_str_array(ids)
        if len(arr) <= _SMALL:
            # a request's handful of ids: a dict is ~100x faster than building a pandas index
            lookup = self._dict()
            codes = np.fromiter((lookup.get(k, -1) for k in arr), dtype=np.int32, count=len(arr))
        else:
            codes = self._index.get_indexer(arr).astype(np.int32, copy=False)
        unknown = codes < 0
        if unknown.any():
            if missing == "error":
                bad = pd.unique(arr[unknown])[:5].tolist()
                raise UnknownIdError(f"unknown {self.name} id(s): {bad} ({int(unknown.sum())} in all)")
            if missing == "drop":
                codes = codes[~unknown]
        return codes

    def code(self, external_id: object) -> int:
        """The code of one id; raises :class:`UnknownIdError` if it is not known."""
        return int(self.encode([external_id])[0])

    def decode(self, codes: Sequence[int] | np.ndarray) -> np.ndarray:
        """Map codes back to external ids; an out-of-range code raises IndexError."""
        codes = np.asarray(codes, dtype=np.int64)
        if codes.size and (codes.min() < 0 or codes.max() >= len(self)):
            raise IndexError(f"{self.name} code out of range [0, {len(self)})")
        return self.ids[codes]

    def extend(self, ids: Iterable[object]) -> Vocabulary:
        """A new vocabulary with the unseen ``ids`` appended; existing codes are unchanged."""
        arr = pd.unique(_as_str_array(ids))
        new = arr[self._index.get_indexer(arr) < 0]
        if len(new) == 0:
            return self
        return Vocabulary(np.concatenate([self.ids, new]), name=self.name)


def normalize_ids(values: Iterable[object]) -> np.ndarray:
    """Ids are strings at the edge: ``1``, ``1.0`` and ``"1"`` are the same id ``"1"``.

    Returns an object array of str. Whole-number floats (what pandas makes of an int id column
    with gaps) lose their ``.0``, whether the array is float or mixed."""
    if isinstance(values, pd.Index | pd.Series):
        values = values.to_numpy()
    # A list goes through an object array: np.asarray(["a", 3.0]) would make "3.0" a string.
    arr = values if isinstance(values, np.ndarray) else np.array(list(values), dtype=object)
    if arr.dtype.kind == "O":
        kind = pd.api.types.infer_dtype(arr, skipna=False)
        if kind == "string":
            return arr  # the common case: already all str
        if kind in ("integer", "floating"):
            arr = arr.astype(np.float64 if kind == "floating" else np.int64)
        else:
            return np.array([_id_str(v) for v in arr], dtype=object)
    if arr.dtype.kind in "fc":
        if np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
    return arr.astype(str).astype(object)


def _id_str(value: object) -> str:
    if isinstance(value, float | np.floating) and np.isfinite(value) and value == int(value):
        return str(int(value))
    return str(value)


_as_str_array = normalize_ids
