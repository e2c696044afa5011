"""The data model: interactions + catalog (+ users, social edges), behind two vocabularies.

A :class:`Dataset` is immutable once built. Its interactions are stored as int32 codes;
the :class:`~tastemaker.data.vocab.Vocabulary` objects translate to and from external ids.

Interactions columns (always present, in this order, extra columns may follow):

========== ======= =============================================================
user       int32   user code
item       int32   item code
timestamp  int64   unix seconds (or, for formats without time, the position in
                   the user's sequence: 0, 1, 2, ...)
event_type object  e.g. "rating", "click", "play", "view"
value      float32 rating, play count, click flag...; 1.0 when the format has none
========== ======= =============================================================

Catalog columns: ``item`` (code, equal to the row position), ``item_id`` (external id),
``title``, ``text`` (free text), ``categories`` (list of str), ``created_at`` (unix seconds
or NaN), and any further attribute columns a loader provides.

Defined behaviour (tested in tests/data/test_dataset.py):

* **Duplicate events** (same user, item, timestamp and event type) are kept by default,
  because repeated plays or views are real signal; ``duplicates="drop"`` keeps the first.
* **Non-monotonic timestamps** in the input are fine: rows are sorted stably by
  (user, timestamp), so ties keep file order.
* **Items in the catalog without events** are part of the item vocabulary (cold items).
* **Events for items missing from the catalog** add a catalog row with an empty title.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tastemaker.data.vocab import Vocabulary, normalize_ids
from tastemaker.errors import DataError

INTERACTION_COLUMNS = ("user", "item", "timestamp", "event_type", "value")
CATALOG_COLUMNS = ("item", "item_id", "title", "text", "categories", "created_at")


def to_pandas(frame: Any) -> pd.DataFrame:
    """Accept a pandas or polars DataFrame, or an Arrow table / record batch."""
    if frame is None:
        return None  # type: ignore[return-value]
    if isinstance(frame, pd.DataFrame):
        return frame
    if hasattr(frame, "to_pandas"):  # polars.DataFrame, pyarrow.Table, pyarrow.RecordBatch
        return frame.to_pandas()
    if isinstance(frame, Mapping | list):
        return pd.DataFrame(frame)
    raise TypeError(f"expected a pandas/polars DataFrame or an Arrow table, got {type(frame).__name__}")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Interactions, catalog, users and social edges, with their vocabularies.

    Build one with :meth:`from_frames` (or a loader in :mod:`tastemaker.data.loaders`);
    the constructor expects already-encoded frames and is for internal use.
    """

    interactions: pd.DataFrame
    users: Vocabulary
    items: Vocabulary
    catalog: pd.DataFrame
    user_features: pd.DataFrame | None = None
    social: pd.DataFrame | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    name: str = "dataset"

    # ------------------------------------------------------------------ building
    @classmethod
    def from_frames(
        cls,
        interactions: Any,
        catalog: Any = None,
        users: Any = None,
        social: Any = None,
        *,
        columns: Mapping[str, str] | None = None,
        name: str = "dataset",
        event_type: str = "interaction",
        duplicates: Literal["keep", "drop"] = "keep",
        extras: dict[str, Any] | None = None,
    ) -> Dataset:
        """Build a dataset from frames that hold external ids.

        ``interactions`` needs ``user`` and ``item`` columns; ``timestamp``, ``event_type``
        and ``value`` are optional (``columns`` renames source columns to these names,
        e.g. ``{"userId": "user", "movieId": "item", "rating": "value"}``).
        ``catalog`` needs ``item_id`` (or ``item``); ``users`` needs ``user_id`` (or ``user``);
        ``social`` needs ``user`` and ``friend``.
        """
        inter = to_pandas(interactions)
        if columns:
            inter = inter.rename(columns=dict(columns))
        missing = [c for c in ("user", "item") if c not in inter.columns]
        if missing:
            raise DataError(f"interactions lack column(s) {missing}; columns are {list(inter.columns)}")
        inter = inter.copy()
        if "timestamp" not in inter.columns:
            # No time in the format: the file order within a user is the sequence order.
            inter["timestamp"] = inter.groupby(inter["user"].astype(str), sort=False).cumcount()
        if "event_type" not in inter.columns:
            inter["event_type"] = event_type
        if "value" not in inter.columns:
            inter["value"] = 1.0
        ts = _unix_seconds(inter["timestamp"])
        bad = ts.isna() | (ts < 0)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"row {row}: timestamp {inter['timestamp'].iloc[row]!r} is not a non-negative number")
        val = pd.to_numeric(inter["value"], errors="coerce")
        if val.isna().any():
            row = int(np.flatnonzero(val.isna().to_numpy())[0])
            raise DataError(f"row {row}: value {inter['value'].iloc[row]!r} is not a number")
        for col in ("user", "item"):
            if inter[col].isna().any():
                row = int(np.flatnonzero(inter[col].isna().to_numpy())[0])
                raise DataError(f"row {row}: empty {col} id")

        cat = _prepare_catalog(to_pandas(catalog))
        ufeat = to_pandas(users)
        item_vocab = Vocabulary.from_values(
            np.concatenate([cat["item_id"].to_numpy(dtype=object), inter["item"].to_numpy()]), name="item"
        )
        user_values = [inter["user"].to_numpy()]
        if ufeat is not None:
            ufeat = ufeat.rename(columns={"user": "user_id"}) if "user_id" not in ufeat.columns else ufeat
            user_values.append(ufeat["user_id"].to_numpy())
        user_vocab = Vocabulary.from_values(np.concatenate(user_values), name="user")

        encoded = pd.DataFrame(
            {
                "user": user_vocab.encode(inter["user"]),
                "item": item_vocab.encode(inter["item"]),
                "timestamp": ts.to_numpy().astype(np.int64),
                "event_type": inter["event_type"].astype(str).to_numpy(dtype=object),
                "value": val.to_numpy().astype(np.float32),
            }
        )
        for extra_col in inter.columns:
            if extra_col not in INTERACTION_COLUMNS:
                encoded[extra_col] = inter[extra_col].to_numpy()
        if duplicates == "drop":
            encoded = encoded.drop_duplicates(subset=["user", "item", "timestamp", "event_type"], keep="first")
        encoded = encoded.sort_values(["user", "timestamp"], kind="stable").reset_index(drop=True)

        full_catalog = _complete_catalog(cat, item_vocab)
        if ufeat is not None:
            ufeat = ufeat.copy()
            ufeat.insert(0, "user", user_vocab.encode(ufeat["user_id"]))
        soc = to_pandas(social)
        if soc is not None:
            soc = pd.DataFrame(
                {
                    "user": user_vocab.encode(soc["user"], missing="mark"),
                    "friend": user_vocab.encode(soc["friend"], missing="mark"),
                }
            )
            soc = soc[(soc["user"] >= 0) & (soc["friend"] >= 0)].reset_index(drop=True)
        return cls(encoded, user_vocab, item_vocab, full_catalog, ufeat, soc, dict(extras or {}), name)

    # ------------------------------------------------------------------ views
    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_interactions(self) -> int:
        return len(self.interactions)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}: {self.n_users} users, {self.n_items} items, "
            f"{self.n_interactions} interactions)"
        )

    def to_csr(self, values: Literal["binary", "value", "count"] = "binary") -> sp.csr_matrix:
        """User x item matrix (float32). Repeated (user, item) events are summed for
        ``"value"`` and ``"count"``; ``"binary"`` gives 1.0 wherever any event exists."""
        inter = self.interactions
        if values == "value":
            data = inter["value"].to_numpy(dtype=np.float32)
        else:
            data = np.ones(len(inter), dtype=np.float32)
        mat = sp.csr_matrix(
            (data, (inter["user"].to_numpy(), inter["item"].to_numpy())),
            shape=(self.n_users, self.n_items),
            dtype=np.float32,
        )
        mat.sum_duplicates()
        if values == "binary":
            mat.data[:] = 1.0
        return mat

    def sequences(self) -> list[np.ndarray]:
        """Per user (by code), the item codes in time order (ties keep input order)."""
        inter = self.interactions
        users = inter["user"].to_numpy()
        items = inter["item"].to_numpy()
        bounds = np.searchsorted(users, np.arange(self.n_users + 1))  # rows are sorted by user
        return [items[bounds[u] : bounds[u + 1]] for u in range(self.n_users)]

    def item_popularity(self) -> np.ndarray:
        """Number of distinct users per item (int64, length n_items)."""
        pairs = self.interactions[["user", "item"]].drop_duplicates()
        return np.bincount(pairs["item"].to_numpy(), minlength=self.n_items).astype(np.int64)

    def category_matrix(self) -> sp.csr_matrix:
        """Items x categories, binary (float32): the catalog's ``categories`` as multi-hot rows."""
        cats = self.catalog["categories"].to_list()
        lengths = np.fromiter((len(c) for c in cats), dtype=np.int64, count=len(cats))
        flat = [str(c) for row in cats for c in row]
        vocab, codes = np.unique(np.asarray(flat, dtype=object), return_inverse=True) if flat else (np.zeros(0), np.zeros(0, np.int64))
        mat = sp.csr_matrix(
            (np.ones(len(flat), dtype=np.float32), codes.astype(np.int64), np.concatenate([[0], np.cumsum(lengths)])),
            shape=(self.n_items, len(vocab)),
        )
        mat.sum_duplicates()
        mat.data[:] = 1.0
        return mat

    def with_interactions(self, interactions: pd.DataFrame) -> Dataset:
        """The same vocabularies and catalog with another (already encoded) interaction table,
        e.g. a training split. Vocabularies never shrink, so codes stay comparable."""
        inter = interactions.sort_values(["user", "timestamp"], kind="stable").reset_index(drop=True)
        return replace(self, interactions=inter)

    def titles(self, codes: np.ndarray) -> list[str]:
        """Titles for item codes ("" where the catalog has none)."""
        return [str(t) for t in self.catalog["title"].to_numpy()[np.asarray(codes, dtype=np.int64)]]


def _unix_seconds(column: pd.Series) -> pd.Series:
    """Numbers pass through; datetimes (naive = UTC) become unix seconds; the rest is NaN."""
    if pd.api.types.is_datetime64_any_dtype(column):
        if getattr(column.dt, "tz", None) is not None:
            column = column.dt.tz_convert("UTC").dt.tz_localize(None)
        seconds = column.astype("datetime64[s]").astype("int64").astype("float64")
        return seconds.where(column.notna())
    return pd.to_numeric(column, errors="coerce")


def _prepare_catalog(cat: pd.DataFrame | None) -> pd.DataFrame:
    if cat is None:
        return pd.DataFrame({"item_id": pd.Series([], dtype=object)})
    cat = cat.copy()
    if "item_id" not in cat.columns:
        if "item" not in cat.columns:
            raise DataError(f"catalog lacks an 'item_id' column; columns are {list(cat.columns)}")
        cat = cat.rename(columns={"item": "item_id"})
    cat["item_id"] = normalize_ids(cat["item_id"])
    # The first row for an id wins, as in the raw files (Amazon meta has exact duplicates).
    return cat.drop_duplicates(subset="item_id", keep="first").reset_index(drop=True)


def _complete_catalog(cat: pd.DataFrame, vocab: Vocabulary) -> pd.DataFrame:
    """One row per item code, in code order, with the standard columns filled."""
    full = pd.DataFrame({"item": np.arange(len(vocab), dtype=np.int32), "item_id": vocab.ids})
    if len(cat):
        full = full.merge(cat, on="item_id", how="left")
    for col, default in (("title", ""), ("text", "")):
        if col not in full.columns:
            full[col] = default
        full[col] = full[col].fillna(default).astype(str)
    if "categories" not in full.columns:
        full["categories"] = [[] for _ in range(len(full))]
    else:
        full["categories"] = [list(c) if isinstance(c, list | tuple | np.ndarray) else [] for c in full["categories"]]
    if "created_at" not in full.columns:
        full["created_at"] = np.nan
    full["created_at"] = pd.to_numeric(full["created_at"], errors="coerce").astype(float)
    ordered = list(CATALOG_COLUMNS) + [c for c in full.columns if c not in CATALOG_COLUMNS]
    return full[ordered]


# ---------------------------------------------------------------------- persistence
def save_dataset(dataset: Dataset, path: str | Path) -> Path:
    """Write a dataset as Parquet files with external ids (what ``tastemaker data convert``
    produces). :func:`load_saved_dataset` reads it back into an equal dataset."""
    import json

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    inter = dataset.interactions.copy()
    inter["user"] = dataset.users.decode(inter["user"].to_numpy())
    inter["item"] = dataset.items.decode(inter["item"].to_numpy())
    inter.to_parquet(path / "interactions.parquet", index=False)
    dataset.catalog.drop(columns=["item"]).to_parquet(path / "catalog.parquet", index=False)
    if dataset.user_features is not None:
        dataset.user_features.drop(columns=["user"]).to_parquet(path / "users.parquet", index=False)
    if dataset.social is not None:
        pd.DataFrame(
            {"user": dataset.users.decode(dataset.social["user"]), "friend": dataset.users.decode(dataset.social["friend"])}
        ).to_parquet(path / "social.parquet", index=False)
    # Vocabulary order is part of the dataset: keep it so codes survive the round trip.
    pd.DataFrame({"id": dataset.users.ids.astype(str)}).to_parquet(path / "user_ids.parquet", index=False)
    (path / "dataset.json").write_text(json.dumps({"name": dataset.name, "format": "tastemaker-dataset", "version": 1}))
    return path


def load_saved_dataset(path: str | Path) -> Dataset:
    """Read a directory written by :func:`save_dataset`."""
    import json

    path = Path(path)
    meta_file = path / "dataset.json"
    if not meta_file.is_file():
        raise DataError(f"{path} is not a saved dataset: dataset.json is missing")
    meta = json.loads(meta_file.read_text())

    def read(name: str) -> pd.DataFrame | None:
        file = path / name
        return pd.read_parquet(file) if file.is_file() else None

    inter = read("interactions.parquet")
    if inter is None:
        raise DataError(f"{path}: interactions.parquet is missing")
    users = read("users.parquet")
    user_ids = read("user_ids.parquet")
    if users is None and user_ids is not None:
        users = user_ids.rename(columns={"id": "user_id"})
    elif users is not None and user_ids is not None:
        users = user_ids.rename(columns={"id": "user_id"}).merge(users, on="user_id", how="left")
    catalog = read("catalog.parquet")
    if catalog is not None and "categories" in catalog.columns:
        catalog["categories"] = [list(c) if c is not None else [] for c in catalog["categories"]]
    data = Dataset.from_frames(inter, catalog=catalog, users=users, social=read("social.parquet"), name=meta["name"])
    if user_ids is not None and users is not None and data.user_features is not None and len(data.user_features.columns) <= 2:
        data = replace(data, user_features=None)
    return data
