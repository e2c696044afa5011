"""The rerankers inside a pipeline: built from TOML (errors name the key), weight 0 = the
pipeline without them, and on the bundled ml-latest-small each moves its own measure the
intended way as its weight grows, at a bounded cost in NDCG@10."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tastemaker import load_dataset
from tastemaker.data.splits import leave_one_out
from tastemaker.eval.metrics import accuracy_per_user, intra_list_diversity, truth_from_pairs
from tastemaker.pipeline import ModelSource, Pipeline, PopularitySource
from tastemaker.pipeline.config import PipelineConfigError, build_pipeline
from tastemaker.rerank import (
    CalibrationReranker, FilterReranker, MMRReranker, PopularityReranker, head_items, history_distribution,
    list_distribution, miscalibration,
)
from tastemaker.testing.pipeline import QUERIES
from tastemaker.testing.synthetic import checkerboard
from tastemaker.types import FitOptions, Query

OPTIONS = FitOptions(seed=5, threads=1, progress=False)
SOURCES = [{"kind": "model", "model": "itemknn", "params": {"k": 100}}, {"kind": "popularity"}]


def _toml(kind: str, **config: Any) -> dict[str, Any]:
    return {"sources": SOURCES, "ranker": {"kind": "fusion"}, "rerankers": [{"kind": kind, **config}]}


@pytest.mark.parametrize(("spec", "message"), [
    ({"kind": "mmr", "weight": 1.5}, r"rerankers\[0\]\.weight: Input should be less than or equal to 1"),
    ({"kind": "calibration", "weigth": 0.2}, r"rerankers\[0\]\.weigth: Extra inputs are not permitted"),
    ({"kind": "popularity", "variant": "soft"}, r"rerankers\[0\]\.variant: Input should be 'binary' or 'smooth'"),
    ({"kind": "filter", "max_age_days": 0}, r"rerankers\[0\]\.max_age_days: Input should be greater than 0"),
    ({"kind": "diversity"}, r"rerankers\[0\]\.kind: unknown reranker kind 'diversity'; choose from filter, mmr"),
])
def test_a_bad_reranker_config_names_its_key(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(PipelineConfigError, match=message):
        build_pipeline({"sources": SOURCES, "rerankers": [spec]})


def test_the_toml_kinds_build_the_rerankers() -> None:
    pipeline = build_pipeline({"sources": SOURCES, "rerankers": [
        {"kind": "filter", "exclude_categories": ["Horror"]}, {"kind": "mmr", "weight": 0.2, "name": "variety"},
        {"kind": "calibration"}, {"kind": "popularity", "variant": "smooth"}]})
    assert [type(r) for r in pipeline.rerankers] == [FilterReranker, MMRReranker, CalibrationReranker, PopularityReranker]
    assert [r.name for r in pipeline.rerankers] == ["filter", "variety", "calibration", "popularity"]


@pytest.mark.parametrize("reranker", [MMRReranker(weight=0.0), CalibrationReranker(weight=0.0),
                                      PopularityReranker(weight=0.0), FilterReranker()], ids=lambda r: r.kind)
def test_weight_zero_is_the_pipeline_without_the_reranker(reranker) -> None:  # type: ignore[no-untyped-def]
    data = checkerboard()

    def pipeline(*rerankers):  # type: ignore[no-untyped-def]
        return Pipeline([ModelSource(model="ease", params={"reg": 1.0}), PopularitySource()], rerankers=list(rerankers)).fit(data, OPTIONS)

    for a, b in zip(pipeline().recommend(QUERIES, n=8), pipeline(reranker).recommend(QUERIES, n=8), strict=True):
        assert a.item_ids.tolist() == b.item_ids.tolist() and a.sources == b.sources and a.reasons == b.reasons
        np.testing.assert_array_equal(a.scores, b.scores)


# ---------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def movielens():  # type: ignore[no-untyped-def]
    data = load_dataset("movielens-latest-small")
    split = leave_one_out(data)
    train = split.train_with_validation()
    users, truth = truth_from_pairs(split.test["user"].to_numpy(), split.test["item"].to_numpy(), data.n_items)
    return train, users, truth, head_items(train.item_popularity(), 0.2)


REASONS = {"mmr": "added for variety", "calibration": "to match your mix of ", "popularity": "a less known pick"}


def _measures(kind: str, weight: float, movielens) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    train, users, truth, head = movielens
    pipeline = build_pipeline(_toml(kind, weight=weight), origin="test").fit(train, OPTIONS)
    top = pipeline.recommend_codes(users, 10)
    ctx = pipeline.context_
    p = np.array([history_distribution(ctx.categories, ctx.training_history(u)) for u in users])
    q = np.array([list_distribution(ctx.categories, row) for row in top])
    shown = pipeline.recommend([Query(user=str(u)) for u in ctx.users.decode(users[:20])], n=10)
    promoted = [r for items in shown for s, r in zip(items.sources, items.reasons, strict=True) if s == kind]
    return {
        "ndcg": float(accuracy_per_user(top, truth, 10)["ndcg@10"].mean()),
        "diversity": intra_list_diversity(top, ctx.categories),
        "miscalibration": float(miscalibration(p, q, rows=True).mean()),
        "tail": float((~head[top[top >= 0]]).mean()),
        "promoted": len(promoted),
        "reasons": sorted({REASONS[kind] if r.startswith(REASONS[kind]) else r for r in promoted}),
        "explained": all(all(items.reasons) for items in shown),
    }


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "measure", "direction"), [
    ("mmr", "diversity", +1), ("calibration", "miscalibration", -1), ("popularity", "tail", +1),
])
def test_each_reranker_moves_its_measure_on_movielens(kind: str, measure: str, direction: int, movielens) -> None:  # type: ignore[no-untyped-def]
    runs = {weight: _measures(kind, weight, movielens) for weight in (0.0, 0.5, 0.9)}
    values = [direction * runs[w][measure] for w in (0.0, 0.5, 0.9)]
    # measured (itemknn k=100 + popularity, RRF; 610 test users): diversity 0.671 -> 0.819 -> 0.875,
    # miscalibration 0.848 -> 0.409 -> 0.119, tail share 0.0015 -> 0.0043 -> 0.0444
    assert values[0] < values[1] < values[2], (measure, values)
    assert runs[0.0]["ndcg"] > 0.022  # measured 0.0266
    assert runs[0.5]["ndcg"] > 0.85 * runs[0.0]["ndcg"]  # measured: mmr 0.90x, calibration 0.97x, popularity 1.00x
    # what a reranker promoted says so in the served list (the pipeline's explanations keep it)
    assert runs[0.0]["promoted"] == 0 and runs[0.9]["promoted"] > 0
    assert REASONS[kind] in runs[0.9]["reasons"] and set(runs[0.9]["reasons"]) <= {REASONS[kind], "a popular pick"}
    assert all(r["explained"] for r in runs.values())


def test_a_chain_keeps_what_an_earlier_reranker_decided() -> None:
    # a reranker returns its list best first on the ranker's scale, so a later one at weight 0
    # (or a filter) reads the reranked order as the ranking and keeps it
    data = checkerboard()

    def lists(*rerankers):  # type: ignore[no-untyped-def]
        pipeline = Pipeline([ModelSource(model="ease", params={"reg": 1.0}), PopularitySource()], rerankers=list(rerankers))
        return pipeline.fit(data, OPTIONS).recommend(QUERIES, n=8)

    alone = lists(PopularityReranker(weight=0.9, variant="smooth"))
    chained = lists(FilterReranker(), PopularityReranker(weight=0.9, variant="smooth"), MMRReranker(weight=0.0), CalibrationReranker(weight=0.0))
    assert any("popularity" in items.sources for items in alone)
    for a, b in zip(alone, chained, strict=True):
        assert a.item_ids.tolist() == b.item_ids.tolist() and a.sources == b.sources and a.reasons == b.reasons
        assert np.all(np.diff(a.scores) <= 0)  # promoted items too: the list is best first
