"""The business filter drops exactly the items its rules name, and keeps the rest as ranked."""

from __future__ import annotations

import pytest

from tastemaker.pipeline.context import DAY, Context
from tastemaker.rerank import FilterReranker
from tastemaker.types import FitOptions, Query

CATEGORIES = {"a": ["drama"], "b": ["comedy"], "c": ["drama", "kids"], "d": [], "e": ["horror"], "f": ["comedy", "kids"]}
AGE_DAYS = {"a": 100.0, "b": 10.0, "c": 1.0, "e": 400.0, "f": 5.0}  # d has no creation time


@pytest.fixture
def run(make_dataset, fit, ranked):  # type: ignore[no-untyped-def]
    # the newest training event is at t = 1 s, i.e. "now" when a query gives none
    created = {item: 1.0 - days * DAY for item, days in AGE_DAYS.items()}
    data = make_dataset(CATEGORIES, {"u": ["e"], "w": ["a", "b"]}, created_at=created)

    def go(query: Query = Query(), n: int = 10, **config):  # type: ignore[no-untyped-def]  # noqa: B008
        reranker = fit(FilterReranker(**config), data)
        items = ranked(reranker.context_, list(CATEGORIES))
        items = items.with_provenance(reasons=[f"why {i}" for i in CATEGORIES])
        out = reranker.rerank(query, items, n)
        for k, item in enumerate(out.item_ids):  # provenance travels with the item
            assert out.reasons[k] == f"why {item}" and out.sources[k] == "ease"
        return "".join(out.item_ids)

    return go


def test_no_rule_keeps_everything_in_order(run) -> None:  # type: ignore[no-untyped-def]
    assert run() == "abcdef"
    assert run(n=3) == "abc"


def test_category_rules(run) -> None:  # type: ignore[no-untyped-def]
    assert run(exclude_categories=["kids"]) == "abde"
    assert run(categories=["comedy"]) == "bf"
    assert run(categories=["comedy", "drama"], exclude_categories=["kids"]) == "ab"


def test_age_rules(run) -> None:  # type: ignore[no-untyped-def]
    assert run(max_age_days=50.0) == "bcdf"  # from the newest training event
    assert run(max_age_days=50.0, keep_undated=False) == "bcf"
    later = Query(context={"now": 1.0 + 20 * DAY})  # the caller's clock: every item is 20 days older
    assert run(later, max_age_days=31.0) == "bcdf"
    assert run(later, max_age_days=29.0) == "cdf"
    assert run(later, max_age_days=22.0) == "cd"
    assert run(min_created_at=1.0 - 5 * DAY) == "cdf"


def test_unavailable_items(run) -> None:  # type: ignore[no-untyped-def]
    assert run(Query(context={"unavailable": ["b", "no-such-item"]})) == "acdef"
    assert run(Query(context={"unavailable": "a"})) == "bcdef"
    assert run(Query(context={"unavailable": {"a", "c"}}), exclude_unavailable=False) == "abcdef"


def test_the_querys_own_rules_are_checked_again(run) -> None:  # type: ignore[no-untyped-def]
    assert run(Query(user="u")) == "abcdf"  # u has seen e
    assert run(Query(user="u", exclude_seen=False)) == "abcdef"
    assert run(Query(exclude=["c"], include=["a", "c", "f"])) == "af"
    assert run(Query(history=["f"])) == "abcde"


def test_a_misspelt_category_is_refused_at_fit(make_dataset) -> None:  # type: ignore[no-untyped-def]
    data = make_dataset(CATEGORIES, {"u": ["e"]})
    with pytest.raises(ValueError, match=r"unknown categories 'Drama', 'kid'; the catalog has: comedy, drama, horror, kids"):
        FilterReranker(categories=["Drama"], exclude_categories=["kid"]).fit(data, Context.from_dataset(data), FitOptions(progress=False))
