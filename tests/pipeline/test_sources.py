"""Popularity's fast paths (walking precomputed orders) give what scoring the whole catalog
gives, on the bundled ml-latest-small (genres as categories)."""

from __future__ import annotations

import numpy as np
import pytest

from tastemaker.data.loaders import load_dataset
from tastemaker.pipeline import FreshSource, Pipeline, PopularitySource
from tastemaker.pipeline.base import top_codes
from tastemaker.types import FitOptions, Query


@pytest.fixture(scope="module")
def fitted() -> Pipeline:
    sources = [PopularitySource(), PopularitySource(mode="category"), PopularitySource(mode="trending", half_life_days=30)]
    return Pipeline(sources).fit(load_dataset("movielens-latest-small"), FitOptions(progress=False))


@pytest.mark.parametrize("position", [0, 1, 2])
def test_fast_popularity_equals_scoring_every_item(fitted: Pipeline, position: int) -> None:
    source = fitted.sources[position]
    queries = [Query(user=str(u)) for u in (1, 7, 42, 414, 599)] + [Query(history=["1", "2571"], exclude=["356"])]
    for resolved in fitted.context_.resolve(queries):
        (fast,) = source.retrieve_resolved([resolved], 50)
        full = source._category_scores(resolved) if source.config.mode == "category" else np.where(source.scores_ > 0, source.scores_, -np.inf)
        codes, scores = top_codes(full, 50, resolved)
        np.testing.assert_allclose(fast.scores, scores, rtol=1e-5)
        above = scores > scores[-1] * (1 + 1e-5)  # ties at the cut may pick either item
        assert above.sum() > 10 and fast.item_codes[above].tolist() == codes[above].tolist()
        assert not set(fast.item_codes.tolist()) & set(resolved.blocked.tolist())


def test_fresh_items_are_the_newest_unseen() -> None:
    import pandas as pd

    from tastemaker.data.dataset import Dataset

    events = pd.DataFrame({"user": ["u", "u", "v"], "item": ["a", "b", "a"], "timestamp": [1, 2, 3]})
    catalog = pd.DataFrame({"item_id": ["a", "b", "c", "d", "e"], "title": list("ABCDE"),
                            "created_at": [10 * 86_400.0, 20 * 86_400.0, 30 * 86_400.0, float("nan"), 5 * 86_400.0]})
    pipe = Pipeline([FreshSource(max_age_days=20)]).fit(Dataset.from_frames(events, catalog=catalog), FitOptions(progress=False))
    (items,) = pipe.sources[0].retrieve([Query(user="u")], 5)
    assert items.item_ids.tolist() == ["c"]  # b is seen, a is 20 days old but seen, d has no date, e is too old
    np.testing.assert_allclose(items.scores, [0.0])
    (anyone,) = pipe.sources[0].retrieve([Query()], 5)
    assert anyone.item_ids.tolist() == ["c", "b", "a"]
