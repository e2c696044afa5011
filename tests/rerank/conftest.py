"""Hand-built catalogs and candidate lists for the rerankers' known-answer tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import pytest

from tastemaker.data.dataset import Dataset
from tastemaker.pipeline.base import Reranker
from tastemaker.pipeline.context import Context
from tastemaker.types import FitOptions, ItemList

OPTIONS = FitOptions(seed=1, threads=1, progress=False)


def _dataset(
    categories: dict[str, Sequence[str]],
    histories: dict[str, Sequence[str]],
    created_at: dict[str, float] | None = None,
) -> Dataset:
    """Items with the given categories (in this order), users with the given histories (in
    time order), optional creation times."""
    rows = [(user, item, t) for user, items in histories.items() for t, item in enumerate(items)]
    catalog = pd.DataFrame({"item_id": list(categories), "title": [f"Title {i}" for i in categories],
                            "categories": [list(c) for c in categories.values()]})
    if created_at is not None:
        catalog["created_at"] = [created_at.get(i, np.nan) for i in categories]
    return Dataset.from_frames(pd.DataFrame(rows, columns=["user", "item", "timestamp"]), catalog=catalog, name="hand-built")


def _fit(reranker: Reranker, dataset: Dataset) -> Reranker:
    """The reranker fitted on ``dataset`` with that dataset's own context."""
    return reranker.fit(dataset, Context.from_dataset(dataset), OPTIONS)


def _ranked(context: Context, ids: Sequence[str], scores: Sequence[float] | None = None, source: str = "ease") -> ItemList:
    """A ranked list of ``ids`` (scores default to 1, 0.9, 0.8, ...), every item from ``source``."""
    codes = context.items.encode(list(ids))
    values = np.asarray(scores if scores is not None else 1.0 - 0.1 * np.arange(len(ids)), dtype=np.float32)
    return ItemList(np.asarray(list(ids), dtype=object), codes.astype(np.int32), values, (source,) * len(ids))


@pytest.fixture
def make_dataset() -> Callable[..., Dataset]:
    """``make_dataset(categories, histories, created_at=None)``: see :func:`_dataset`."""
    return _dataset


@pytest.fixture
def fit() -> Callable[[Reranker, Dataset], Reranker]:
    """``fit(reranker, dataset)``: the reranker fitted with the dataset's own context."""
    return _fit


@pytest.fixture
def ranked() -> Callable[..., ItemList]:
    """``ranked(context, ids, scores=None, source="ease")``: see :func:`_ranked`."""
    return _ranked
