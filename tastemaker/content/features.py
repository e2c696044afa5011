"""Item content as model input: one text per item, its text vector, its semantic ID.

The catalog columns the content-aware models read (each optional, one value per row):

* ``text_vector`` — an L2-normalised float vector (all rows the same length);
* ``semantic_id`` — a tuple of ints (all rows the same length), e.g. from
  :class:`~tastemaker.content.semantic_ids.SemanticIDs`.

:func:`item_texts` gives the text a row is encoded from (its ``description`` column when it has
one, else :func:`~tastemaker.content.describe.describe`); :func:`text_vectors` encodes a catalog
(rows that already carry a ``text_vector`` keep it); :func:`with_text_vectors` and
:func:`with_semantic_ids` return a copy of a dataset with the column added, so one encoding
(cached on disk by text hash) feeds every model of a benchmark.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tastemaker.content.describe import OUTPUT_COLUMN, Describer, describe_catalog
from tastemaker.errors import DataError

if TYPE_CHECKING:
    from tastemaker.content.encoders import TextEncoder
    from tastemaker.content.semantic_ids import SemanticIDs
    from tastemaker.data.dataset import Dataset
    from tastemaker.types import FitOptions

TEXT_VECTOR = "text_vector"
SEMANTIC_ID = "semantic_id"


def item_texts(catalog: pd.DataFrame, describer: Describer | None = None) -> list[str]:
    """The text each row is encoded from: its ``description`` (unless a ``describer`` is
    given), else the describer's output (default :func:`~tastemaker.content.describe.describe`)."""
    if OUTPUT_COLUMN in catalog.columns and describer is None:
        column = catalog[OUTPUT_COLUMN]
        missing = column.isna() | (column.astype(str).str.strip() == "")
        if not missing.any():
            return column.astype(str).tolist()
        texts = column.astype(object).where(~missing, describe_catalog(catalog[missing]))
        return texts.astype(str).tolist()
    return describe_catalog(catalog, describer).tolist()


def resolve_encoder(encoder: TextEncoder | str, **options: Any) -> TextEncoder:
    """An encoder instance: ``encoder`` itself, or :func:`~tastemaker.content.encoders.get_encoder` of a name."""
    if isinstance(encoder, str):
        from tastemaker.content.encoders import get_encoder

        return get_encoder(encoder, **options)
    return encoder


def stored_vectors(catalog: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, present): the ``text_vector`` column as an (n, dim) float32 matrix (zeros where
    a row has none) and which rows had one. Rows of different lengths are a :class:`DataError`."""
    if TEXT_VECTOR not in catalog.columns:
        return np.zeros((len(catalog), 0), dtype=np.float32), np.zeros(len(catalog), dtype=bool)
    values = list(catalog[TEXT_VECTOR])
    present = np.array([v is not None and np.ndim(v) == 1 and len(v) > 0 for v in values], dtype=bool)
    lengths = {len(values[i]) for i in np.flatnonzero(present)}
    if len(lengths) > 1:
        raise DataError(f"catalog column {TEXT_VECTOR!r}: vectors of different lengths {sorted(lengths)}")
    dim = lengths.pop() if lengths else 0
    out = np.zeros((len(values), dim), dtype=np.float32)
    for row in np.flatnonzero(present):
        out[row] = np.asarray(values[row], dtype=np.float32)
    return out, present


def text_vectors(
    catalog: pd.DataFrame, encoder: TextEncoder | str = "minilm", *, describer: Describer | None = None
) -> np.ndarray:
    """(len(catalog), dim) L2-normalised float32 vectors: the row's ``text_vector`` where it
    has one, else its :func:`item_texts` encoded by ``encoder`` (cached by the encoder)."""
    stored, present = stored_vectors(catalog)
    if present.all() and len(catalog):
        return stored
    model = resolve_encoder(encoder)
    missing = np.flatnonzero(~present)
    encoded = model.encode(item_texts(catalog.iloc[missing], describer)) if len(missing) else None
    if stored.shape[1] and encoded is not None and encoded.shape[1] != stored.shape[1]:
        raise DataError(
            f"catalog column {TEXT_VECTOR!r} holds {stored.shape[1]}-d vectors but {model.encoder_id} "
            f"gives {encoded.shape[1]}-d ones: encode every row with one encoder"
        )
    dim = stored.shape[1] if stored.shape[1] else model.dimension
    out = np.zeros((len(catalog), dim), dtype=np.float32)
    if present.any():  # without the column, stored is (n, 0) and cannot fill (0, dim)
        out[present] = stored[present]
    if encoded is not None:
        out[missing] = encoded
    return out


def with_text_vectors(
    dataset: Dataset, encoder: TextEncoder | str = "minilm", *, describer: Describer | None = None
) -> Dataset:
    """A copy of ``dataset`` whose catalog has a ``text_vector`` column for every item."""
    vectors = text_vectors(dataset.catalog, encoder, describer=describer)
    catalog = dataset.catalog.copy()
    catalog[TEXT_VECTOR] = list(vectors)
    return replace(dataset, catalog=catalog)


def with_semantic_ids(dataset: Dataset, sids: SemanticIDs, *, options: FitOptions | None = None) -> Dataset:
    """A copy of ``dataset`` whose catalog has a ``semantic_id`` column: ``sids`` is fitted on
    the catalog's text vectors when it is not fitted yet (else it assigns with the frozen model).
    The catalog needs a ``text_vector`` column (see :func:`with_text_vectors`)."""
    vectors, present = stored_vectors(dataset.catalog)
    if not present.all():
        raise DataError(f"with_semantic_ids needs a {TEXT_VECTOR!r} for every item: call with_text_vectors first")
    table = sids.fit(vectors, options).table if not hasattr(sids, "module_") else sids.assign(vectors)
    catalog = dataset.catalog.copy()
    catalog[SEMANTIC_ID] = [tuple(int(c) for c in row) for row in table]
    return replace(dataset, catalog=catalog)


def stored_semantic_ids(catalog: pd.DataFrame) -> np.ndarray | None:
    """The ``semantic_id`` column as an (n, length) int64 matrix, or None without the column.
    Missing or ragged rows are a :class:`DataError` naming the first bad item."""
    if SEMANTIC_ID not in catalog.columns:
        return None
    values = list(catalog[SEMANTIC_ID])
    width = None
    for row, value in enumerate(values):
        ok = value is not None and np.ndim(value) == 1 and len(value) > 0
        if ok and width is None:
            width = len(value)
        if not ok or len(value) != width:
            item = catalog["item_id"].iloc[row] if "item_id" in catalog.columns else row
            raise DataError(f"catalog column {SEMANTIC_ID!r}: item {item!r} has {value!r}; every item needs a code tuple of one length")
    return np.asarray([np.asarray(v, dtype=np.int64) for v in values], dtype=np.int64).reshape(len(values), width or 0)
