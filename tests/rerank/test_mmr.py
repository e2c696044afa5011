"""MMR: known answers on a hand-built list, a plain-loop reference over a model's vectors,
and the errors for a bad ``vectors`` source."""

from __future__ import annotations

import numpy as np
import pytest

from tastemaker.pipeline import ModelSource, Pipeline, PopularitySource
from tastemaker.rerank import MMRReranker
from tastemaker.rerank.base import relevance
from tastemaker.testing.synthetic import checkerboard
from tastemaker.types import FitOptions, Query

CATEGORIES = {"a": ["x"], "b": ["x"], "c": ["y"], "d": ["x"], "e": ["z"]}
SCORES = [1.0, 0.8, 0.6, 0.4, 0.0]  # relevance after min-max: the same numbers


@pytest.fixture
def setup(make_dataset, fit, ranked):  # type: ignore[no-untyped-def]
    data = make_dataset(CATEGORIES, {"u": ["a"]})

    def run(weight: float, n: int = 5):  # type: ignore[no-untyped-def]
        reranker = fit(MMRReranker(weight=weight), data)
        items = ranked(reranker.context_, list(CATEGORIES), SCORES)
        return items, reranker.rerank(Query(), items, n)

    return run


def test_weight_zero_keeps_the_ranking(setup) -> None:  # type: ignore[no-untyped-def]
    items, out = setup(0.0)
    assert out.item_ids.tolist() == list("abcde")
    assert out.sources == items.sources and out.reasons == items.reasons
    np.testing.assert_array_equal(out.scores, items.scores)


def test_weight_one_picks_the_most_different_item_next(setup) -> None:  # type: ignore[no-untyped-def]
    _, out = setup(1.0)
    # a first (nothing picked yet: relevance), then c (y) and e (z), similar to nothing picked;
    # b is then the first item the ranker put above the rest: placed by the ranking, not by MMR
    assert out.item_ids.tolist() == ["a", "c", "e", "b", "d"]
    assert out.sources == ("ease", "mmr", "mmr", "ease", "ease")
    assert out.reasons == ("", "added for variety", "added for variety", "", "")
    np.testing.assert_allclose(out.scores, SCORES)  # best first, on the ranker's scale


def test_the_trade_off_flips_where_the_formula_says(setup) -> None:  # type: ignore[no-untyped-def]
    # second pick: b scores (1 - w) 0.8 - w * 1, c scores (1 - w) 0.6: c wins above w = 1/6
    assert setup(0.15, n=2)[1].item_ids.tolist() == ["a", "b"]
    assert setup(0.18, n=2)[1].item_ids.tolist() == ["a", "c"]


def test_n_caps_the_list(setup) -> None:  # type: ignore[no-untyped-def]
    assert setup(1.0, n=2)[1].item_ids.tolist() == ["a", "c"]
    assert len(setup(1.0, n=0)[1]) == 0


def _reference_mmr(scores: np.ndarray, vectors: np.ndarray, weight: float, n: int) -> list[int]:
    """MMR as the paper writes it, one item and one pair at a time."""
    rel = relevance(scores)
    norms = [float(np.linalg.norm(v)) for v in vectors]

    def cosine(i: int, j: int) -> float:
        return float(vectors[i] @ vectors[j]) / (norms[i] * norms[j]) if norms[i] and norms[j] else 0.0

    picked: list[int] = []
    while len(picked) < min(n, len(scores)):
        best, best_value = -1, -np.inf
        for i in range(len(scores)):
            if i in picked:
                continue
            penalty = max((cosine(i, j) for j in picked), default=0.0)
            value = (1 - weight) * rel[i] - weight * penalty
            if value > best_value + 1e-12:
                best, best_value = i, value
        picked.append(best)
    return picked


def test_a_named_sources_vectors_give_the_same_lists_as_the_reference() -> None:
    data = checkerboard()
    pipeline = Pipeline([ModelSource(model="als", params={"embedding_size": 8, "epochs": 5}), PopularitySource()],
                        rerankers=[MMRReranker(weight=0.6, vectors="als")]).fit(data, FitOptions(seed=3, threads=1, progress=False))
    mmr = pipeline.rerankers[0]
    mmr.use_sources(pipeline.sources)  # the pipeline does not yet pass its sources to rerankers
    model = pipeline.sources[0].model_
    queries = [Query(user="u1"), Query(user="u6"), Query(history=["i3", "i8"])]
    resolved = pipeline.context_.resolve(queries)
    lists = pipeline.ranker.rank(queries, pipeline._candidates(resolved, pipeline.sources, pipeline.fallback))
    for query, items in zip(queries, lists, strict=True):
        vectors = model.item_vectors()[model.items_.encode(items.item_ids)]
        expected = _reference_mmr(items.scores, vectors, 0.6, 8)
        out = mmr.rerank(query, items, 8)
        assert out.item_codes.tolist() == items.item_codes[expected].tolist()
        assert "mmr" in out.sources  # the vectors disagree with the ranking somewhere


def test_vectors_must_name_a_source_with_item_vectors() -> None:
    data = checkerboard()
    options = FitOptions(seed=3, threads=1, progress=False)
    with pytest.raises(ValueError, match=r"'nope' names no source of this pipeline \(its sources: ease, popular\)"):
        Pipeline([ModelSource(model="ease", params={"reg": 1.0}), PopularitySource()],
                 rerankers=[MMRReranker(vectors="nope")]).fit(data, options)  # fit hands the sources over
    pipeline = Pipeline([ModelSource(model="ease", params={"reg": 1.0}), PopularitySource()]).fit(data, options)
    unwired = MMRReranker(vectors="ease").fit(data, pipeline.context_, options)
    with pytest.raises(ValueError, match=r"'ease': that source's model has no item_vectors\(\)"):
        unwired.use_sources(pipeline.sources)
    with pytest.raises(RuntimeError, match=r"needs the pipeline's sources"):
        unwired.rerank(Query(user="u0"), pipeline.recommend([Query(user="u0")], n=5)[0], 3)


def test_relevance_is_min_max_over_the_list() -> None:
    np.testing.assert_allclose(relevance(np.array([3.0, 1.0, 2.0])), [1.0, 0.0, 0.5])
    np.testing.assert_allclose(relevance(np.array([2.0, 2.0])), [1.0, 1.0])  # constant: all equally relevant
    np.testing.assert_allclose(relevance(np.array([4.0, np.nan, 2.0, -np.inf])), [1.0, 0.0, 0.0, 0.0])


def test_category_similarity_many_categories_matches_the_reference(make_dataset, fit, ranked) -> None:  # type: ignore[no-untyped-def]
    # > 64 categories takes the sparse path; the answer must not change with it
    rng = np.random.default_rng(4)
    names = [f"g{k}" for k in range(70)]
    categories = {f"i{k}": [names[k], *rng.choice(names, size=int(rng.integers(0, 3)), replace=False)] for k in range(60)}
    categories |= {f"i{k}": [] for k in range(60, 64)} | {"rest": names[60:]}  # some items without any
    data = make_dataset(categories, {"u": ["i0"]})
    mmr = fit(MMRReranker(weight=0.4), data)
    assert mmr.context_.categories.shape[1] > 64
    ids = [f"i{k}" for k in rng.permutation(64)]
    items = ranked(mmr.context_, ids, np.sort(rng.random(64))[::-1])
    vectors = mmr.context_.categories[items.item_codes].toarray()
    expected = _reference_mmr(items.scores, vectors, 0.4, 20)
    assert mmr.rerank(Query(), items, 20).item_codes.tolist() == items.item_codes[expected].tolist()


def test_pool_lets_only_the_rankers_first_items_compete(setup, make_dataset, fit, ranked) -> None:  # type: ignore[no-untyped-def]
    # weight 1 over the whole list picks a, c, e; with pool 3 only a, b, c compete: a, c, b
    data = make_dataset(CATEGORIES, {"u": ["a"]})
    reranker = fit(MMRReranker(weight=1.0, pool=3), data)
    items = ranked(reranker.context_, list(CATEGORIES), SCORES)
    assert reranker.rerank(Query(), items, 3).item_ids.tolist() == ["a", "c", "b"]
    assert setup(1.0, n=3)[1].item_ids.tolist() == ["a", "c", "e"]
    # asked for more than the pool holds, the cap does not apply
    assert reranker.rerank(Query(), items, 5).item_ids.tolist() == ["a", "c", "e", "b", "d"]
