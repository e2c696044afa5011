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


def test_sequential_rules_known_answer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two users walk a -> b -> c, one walks a -> d. With window 2, the rules from a are b: 2
    (two gap-1 pairs), c: 1 (two gap-2 pairs of weight 1/2), d: 1, normalised to sum 1. With
    window 1 and two recent items, the older one weighs ``decay``: after [b, a], c (a rule of b)
    beats d (a rule of a) at decay 0.5 and loses at 0.1. The saved pipeline gives the same."""
    import pandas as pd

    from tastemaker.data.dataset import Dataset
    from tastemaker.pipeline import TransitionsSource

    rows = [("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u2", "a", 1), ("u2", "b", 2), ("u2", "c", 3),
            ("u3", "a", 1), ("u3", "d", 2), ("u4", "e", 1)]
    data = Dataset.from_frames(pd.DataFrame(rows, columns=["user", "item", "timestamp"]))
    options = FitOptions(progress=False)
    pipe = Pipeline([TransitionsSource(window=2, recent=1)]).fit(data, options)
    (items,) = pipe.sources[0].retrieve([Query(history=["a"])], 5)
    assert items.item_ids.tolist() == ["b", "c", "d"]  # c and d tie: the lower code first
    np.testing.assert_allclose(items.scores, [0.5, 0.25, 0.25], rtol=1e-6)
    (resolved,) = pipe.context_.resolve([Query(history=["a"])])
    assert pipe.sources[0].explain(resolved, items.item_codes[:1]) == ["often chosen after a"]
    for decay, first in ((0.5, "c"), (0.1, "d")):
        recent = Pipeline([TransitionsSource(window=1, recent=2, decay=decay)]).fit(data, options)
        (after,) = recent.sources[0].retrieve([Query(history=["b", "a"])], 5)
        assert after.item_ids.tolist()[0] == first and set(after.item_ids.tolist()) == {"c", "d"}, (decay, after.item_ids)
    (nothing,) = pipe.sources[0].retrieve([Query(history=["e"])], 5)  # e was never followed by anything
    assert len(nothing) == 0
    loaded = Pipeline.load(pipe.save(tmp_path / "p"))
    (again,) = loaded.sources[0].retrieve([Query(history=["a"])], 5)
    assert again.item_ids.tolist() == items.item_ids.tolist()
    np.testing.assert_allclose(again.scores, items.scores)


def test_category_helpers_equal_the_sparse_matrix_arithmetic(fitted: Pipeline) -> None:
    """Context.category_shares / best_category_value (CSR arrays, per request) give what
    slicing and multiplying the sparse category matrix gives, items without categories included."""
    context = fitted.context_
    cats = context.categories
    rng = np.random.default_rng(0)
    for size in (1, 7, 300):
        history = rng.integers(0, len(context.items), size)
        shares = context.category_shares(history)
        np.testing.assert_allclose(shares, np.asarray(cats[history].sum(axis=0)).ravel() / size)
        codes = np.concatenate([rng.integers(0, len(context.items), 50), np.flatnonzero(np.diff(cats.indptr) == 0)[:3]])
        expected = np.asarray(cats[codes].multiply(shares[None, :]).max(axis=1).todense()).ravel()
        np.testing.assert_allclose(context.best_category_value(codes, shares), expected)
    assert not context.category_shares(np.zeros(0, np.int64)).any()
