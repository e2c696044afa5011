"""Loading a :class:`~tastemaker.data.dataset.Dataset` into a store: the catalog (extra catalog
columns become item attributes), the user features and the events, in batches.

This is what ``tastemaker import`` and ``tastemaker serve --seed-...`` run; it is the inverse
of :meth:`SQLStore.to_dataset <tastemaker.store.base.SQLStore.to_dataset>`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from tastemaker.protocols import Event, Item

if TYPE_CHECKING:
    import pandas as pd

    from tastemaker.data.dataset import Dataset
    from tastemaker.store.base import SQLStore

#: Catalog columns with a place of their own in an Item; the others become attributes.
_ITEM_FIELDS = {"item_id", "item", "title", "text", "categories", "created_at", "available"}  # item: the code


def _plain(value: Any) -> Any:
    """A JSON-safe Python value for a cell (None for missing or non-finite)."""
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _attributes(frame: pd.DataFrame, skip: set[str]) -> list[dict[str, Any]]:
    extra = [c for c in frame.columns if c not in skip]
    rows: list[dict[str, Any]] = [{} for _ in range(len(frame))]
    for column in extra:
        for row, value in zip(rows, frame[column].tolist(), strict=True):
            plain = _plain(value)
            if plain is not None and plain != [] and plain != "":
                row[str(column)] = plain
    return rows


def dataset_items(data: Dataset) -> list[Item]:
    """The dataset's catalog as store items."""
    cat = data.catalog
    created = cat["created_at"].fillna(0.0).to_numpy() if "created_at" in cat.columns else [0.0] * len(cat)
    available = cat["available"].tolist() if "available" in cat.columns else [True] * len(cat)
    attributes = _attributes(cat, _ITEM_FIELDS)
    return [
        Item(str(i), str(t), str(x), tuple(map(str, c)), a, bool(ok), float(ts))
        for i, t, x, c, a, ok, ts in zip(
            cat["item_id"], cat["title"], cat["text"], cat["categories"], attributes, available, created, strict=True
        )
    ]


def import_dataset(store: SQLStore, data: Dataset, batch: int = 50_000, progress: bool = True) -> tuple[int, int]:
    """Write ``data``'s items, users and events into ``store`` (each events batch is one
    transaction); returns ``(items, events)`` written. Events keep their type, value and
    timestamp, in the dataset's order (per user, by time)."""
    if batch < 1:
        raise ValueError(f"batch: expected a positive int, got {batch}")
    n_items = store.upsert_items(dataset_items(data))
    if data.user_features is not None:
        features = data.user_features
        store.upsert_users(list(zip(features["user_id"].astype(str), _attributes(features, {"user_id", "user"}), strict=True)))
    inter = data.interactions
    users = data.users.decode(inter["user"].to_numpy())
    items = data.items.decode(inter["item"].to_numpy())
    types, values, times = inter["event_type"].tolist(), inter["value"].tolist(), inter["timestamp"].tolist()
    written = 0
    bar = tqdm(total=len(inter), desc=f"importing {data.name}", unit="event", disable=not progress)
    for start in range(0, len(inter), batch):
        stop = min(start + batch, len(inter))
        events = [
            Event(str(users[k]), str(items[k]), str(types[k]), float(values[k]), float(times[k]))
            for k in range(start, stop)
        ]
        written += store.append_events(events)
        bar.update(stop - start)
    bar.close()
    return n_items, written
