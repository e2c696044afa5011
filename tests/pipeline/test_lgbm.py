"""The LightGBM LambdaRank ranker: the contract, a known answer, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("lightgbm")

from tastemaker.data.dataset import Dataset  # noqa: E402
from tastemaker.pipeline import FusionRanker, ModelSource, Pipeline  # noqa: E402
from tastemaker.pipeline.lgbm import LightGBMRanker  # noqa: E402
from tastemaker.testing.pipeline import RankerConformance  # noqa: E402
from tastemaker.types import FitOptions, Query  # noqa: E402

OPTIONS = FitOptions(seed=1, threads=1, progress=False)


class TestLightGBMRanker(RankerConformance):
    def make_ranker(self):  # type: ignore[no-untyped-def]
        return LightGBMRanker(min_data_in_leaf=5, rounds=50)


def two_taste_groups(n: int = 120, seed: int = 0) -> Dataset:
    """User u used every item of its parity except item u, in a random order: the one unseen
    item of u's parity is u's known answer."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n):
        for t, i in enumerate(rng.permutation([i for i in range(u % 2, n, 2) if i != u])):
            rows.append((f"u{u}", f"i{i}", t))
    return Dataset.from_frames(pd.DataFrame(rows, columns=["user", "item", "timestamp"]), name="two-taste-groups")


def sources() -> list[ModelSource]:
    # BPR after one step at a vanishing learning rate: its scores are its random initial vectors
    return [ModelSource(model="bpr", params={"epochs": 1, "learning_rate": 1e-9}, name="noise"),
            ModelSource(model="ease", params={"reg": 10.0}, name="signal")]


def top1_accuracy(pipeline: Pipeline, n: int = 120) -> float:
    lists = pipeline.recommend([Query(user=f"u{u}") for u in range(n)], n=1)
    return float(np.mean([items.item_ids[0] == f"i{u}" for u, items in enumerate(lists)]))


def test_the_ranker_learns_which_source_holds_the_signal(tmp_path: Path) -> None:
    data = two_taste_groups()
    fused = Pipeline(sources(), ranker=FusionRanker(), candidates=30).fit(data, OPTIONS)
    learned = Pipeline(sources(), ranker=LightGBMRanker(min_data_in_leaf=5), candidates=30).fit(data, OPTIONS)
    assert top1_accuracy(fused) < 0.3  # fusion trusts the noise as much as the signal
    assert top1_accuracy(learned) >= 0.95
    gain = learned.ranker.feature_importance()
    assert gain["signal__score"] + gain["signal__rank"] > 10 * (gain["noise__score"] + gain["noise__rank"])
    loaded = Pipeline.load(learned.save(tmp_path / "pipe"))
    queries = [Query(user=f"u{u}") for u in range(0, 120, 7)]
    for a, b in zip(learned.recommend(queries, n=5), loaded.recommend(queries, n=5), strict=True):
        assert a.item_ids.tolist() == b.item_ids.tolist()
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)


def test_no_label_among_the_candidates_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="held-out item was among the candidates"):
        Pipeline([ModelSource(model="most-popular")], ranker=LightGBMRanker(cuts=1), candidates=1).fit(two_taste_groups(20), OPTIONS)


def test_recency_features_are_cosines_with_the_last_items() -> None:
    """Known answer: last_item_similarity is the cosine with the history's last item,
    recent_similarity the cosine with the mean of its last five, content_similarity with the
    mean of all of it (order ignored)."""
    from tastemaker.pipeline.context import Context
    from tastemaker.pipeline.features import candidate_features, feature_names
    from tastemaker.types import ItemList

    rows = [("u", f"i{i}", t) for t, i in enumerate([0, 1, 2, 3, 4, 5, 6])] + [("v", "i7", 0), ("v", "i8", 1)]
    data = Dataset.from_frames(pd.DataFrame(rows, columns=["user", "item", "timestamp"]), name="chain")
    context = Context.from_dataset(data)
    vectors = np.random.default_rng(3).normal(size=(data.n_items, 4)).astype(np.float32)
    (query,) = context.resolve([Query(user="u")])
    codes = context.items.encode(["i7", "i8"]).astype(np.int32)
    items = ItemList(np.asarray(["i7", "i8"], dtype=object), codes, np.zeros(2, np.float32))
    x = candidate_features(context, query, items, [], vectors)
    names = feature_names([])
    history = context.items.encode([f"i{i}" for i in range(7)])

    def cosine(profile: np.ndarray) -> np.ndarray:
        cand = vectors[codes]
        return (cand @ profile) / np.linalg.norm(cand, axis=1) / np.linalg.norm(profile)

    np.testing.assert_allclose(x[:, names.index("last_item_similarity")], cosine(vectors[history[-1]]), rtol=1e-5)
    np.testing.assert_allclose(x[:, names.index("recent_similarity")], cosine(vectors[history[-5:]].mean(0)), rtol=1e-5)
    np.testing.assert_allclose(x[:, names.index("content_similarity")], cosine(vectors[history].mean(0)), rtol=1e-5)


def test_more_cuts_give_more_training_groups() -> None:
    """Each cut holds out one more event per user and labels every held-out event, so two cuts
    give the ranker about twice the groups of one."""
    data = two_taste_groups(60)
    groups = {}
    for cuts in (1, 2):
        pipe = Pipeline(sources(), ranker=LightGBMRanker(min_data_in_leaf=5, rounds=20, cuts=cuts), candidates=30)
        groups[cuts] = pipe.fit(data, OPTIONS).ranker.training_groups_
    assert groups[1] > 20 and groups[2] >= 1.8 * groups[1], groups
