"""xQuAD over head and tail (Abdollahpouri et al. 2019): the head split, the user's tail
preference, and where a tail item comes up, binary and smooth."""

from __future__ import annotations

import numpy as np
import pytest

from tastemaker.rerank import PopularityReranker, head_items
from tastemaker.types import Query

ITEMS = [f"h{i}" for i in range(4)] + [f"t{i}" for i in range(16)]
HISTORIES = ({f"p{k}": ["h0", "h1", "h2", "h3"] for k in range(5)} | {f"s{k}": [f"t{k}"] for k in range(16)}
             | {"u": ["h3", "t15"], "v": ["t14", "t15"]})
CANDIDATES = ["h0", "h1", "h2", "t0", "t1"]
SCORES = [1.0, 0.9, 0.8, 0.5, 0.2]  # relevance [1, .875, .75, .375, 0]


def test_the_head_is_the_most_popular_share_of_the_catalog() -> None:
    assert head_items(np.array([5, 5, 1, 0, 3]), 0.4).tolist() == [True, True, False, False, False]
    assert head_items(np.array([2, 3, 3, 1]), 0.25).tolist() == [False, True, False, False]  # ties: the lower code
    assert head_items(np.array([5, 0, 0, 0, 0]), 0.6).tolist() == [True, False, False, False, False]  # never unseen items


@pytest.fixture
def setup(make_dataset, fit, ranked):  # type: ignore[no-untyped-def]
    data = make_dataset({i: [] for i in ITEMS}, HISTORIES)

    def run(weight: float, **config):  # type: ignore[no-untyped-def]
        reranker = fit(PopularityReranker(weight=weight, **config), data)
        return reranker, ranked(reranker.context_, CANDIDATES, SCORES)

    return run


def test_fitted_state_and_tail_preference(setup) -> None:  # type: ignore[no-untyped-def]
    reranker, _ = setup(0.5)
    assert reranker.context_.items.decode(np.flatnonzero(reranker.head_)).tolist() == ["h0", "h1", "h2", "h3"]
    assert reranker.tail_preference(Query(user="u")) == 0.5
    assert reranker.tail_preference(Query(user="v")) == 1.0
    assert reranker.tail_preference(Query(user="p0")) == 0.0
    assert reranker.tail_preference(Query(history=["h0", "h0", "t3"])) == 0.5  # a repeat is one item
    assert reranker.mean_tail_preference_ == pytest.approx(17.5 / 23)  # 5 head-only users, 16 tail-only, u, v
    assert reranker.tail_preference(Query()) == pytest.approx(17.5 / 23)
    assert reranker.is_tail(np.array([0, 4, len(ITEMS)])).tolist() == [False, True, True]  # added after fit: tail
    copy = PopularityReranker(weight=0.5)
    copy.set_arrays(reranker.arrays())
    np.testing.assert_array_equal(copy.head_, reranker.head_)
    assert copy.mean_tail_preference_ == reranker.mean_tail_preference_


def test_a_tail_item_comes_up_where_the_formula_says(setup) -> None:  # type: ignore[no-untyped-def]
    # user u: P(tail) = 0.5. After h0 the head's binary coverage is spent, so t0 scores
    # (1 - w) 0.375 + w 0.5 against h1's (1 - w) 0.875 (t0 wins above w = 0.5) and, one step
    # later, against h2's (1 - w) 0.75 (above w = 3/7)
    reranker, items = setup(0.4)
    assert reranker.rerank(Query(user="u"), items, 5).item_ids.tolist() == CANDIDATES
    reranker, items = setup(0.45)
    assert reranker.rerank(Query(user="u"), items, 5).item_ids.tolist() == ["h0", "h1", "t0", "h2", "t1"]
    reranker, items = setup(0.55)
    out = reranker.rerank(Query(user="u"), items, 5)
    assert out.item_ids.tolist() == ["h0", "t0", "h1", "h2", "t1"]
    assert out.sources == ("ease", "popularity", "ease", "ease", "ease")
    assert out.reasons == ("", "a less known pick", "", "", "")


def test_binary_promotes_one_tail_item_smooth_keeps_the_mix(setup) -> None:  # type: ignore[no-untyped-def]
    query = Query(user="v")  # P(tail) = 1, P(head) = 0
    reranker, items = setup(0.9)
    assert reranker.rerank(query, items, 5).item_ids.tolist() == ["t0", "h0", "h1", "h2", "t1"]
    reranker, items = setup(0.9, variant="smooth")
    # after t0 and h0, the tail is half the list: t1 gets 0.9 * 0.5 against h1's 0.1 * 0.875
    out = reranker.rerank(query, items, 5)
    assert out.item_ids.tolist() == ["t0", "h0", "t1", "h1", "h2"]
    assert out.sources == ("popularity", "ease", "popularity", "ease", "ease")


def test_a_head_loving_user_gets_a_head_item_first(setup, ranked) -> None:  # type: ignore[no-untyped-def]
    reranker, _ = setup(0.9)
    items = ranked(reranker.context_, ["t0", "t1", "h0", "h1"], [1.0, 0.9, 0.5, 0.2])
    out = reranker.rerank(Query(user="p0"), items, 4)  # P(head) = 1
    assert out.item_ids.tolist() == ["h0", "t0", "t1", "h1"]
    assert out.sources[0] == "popularity" and out.reasons[0] == "a popular pick"
