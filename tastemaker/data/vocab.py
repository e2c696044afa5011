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


class Vocabulary:
    """An ordered, duplicate-free list of external ids; the position of an id is its code.

    >>> v = Vocabulary(["a", "b"])
    >>> v.encode(["b", "a"]).tolist()
    [1, 0]
    >>> v.decode([0]).tolist()
    ['a']
    """

    __slots__ = ("_index", "name")

    def __init__(self, ids: Iterable[object] = (), name: str = "id") -> None:
        values = pd.Index(_as_str_array(ids), dtype=object)
        if values.has_duplicates:
            dup = values[values.duplicated()][:5].tolist()
            raise ValueError(f"{name} vocabulary: duplicate ids {dup}")
        self._index = values
        self.name = name

    @classmethod
    def from_values(cls, values: Iterable[object], name: str = "id") -> Vocabulary:
        """Build from values that may repeat, keeping the order of first appearance."""
        return cls(pd.unique(_as_str_array(values)), name=name)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, external_id: object) -> bool:
        return str(external_id) in self._index

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


def _as_str_array(values: Iterable[object]) -> np.ndarray:
    """Ids are strings at the edge: ``1`` and ``"1"`` are the same user."""
    if isinstance(values, pd.Index | pd.Series):
        values = values.to_numpy()
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values)
    if arr.dtype.kind in "fc":
        # Float ids appear when pandas reads an int column with gaps; 3.0 means "3".
        if np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
    if arr.dtype.kind == "O":
        return pd.Series(arr, dtype=object).astype(str).to_numpy(dtype=object)
    return arr.astype(str).astype(object)
