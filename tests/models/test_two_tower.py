"""Two-tower: the conformance suite, content cold start, the logQ-corrected loss, memory-bounded
scoring of a 1M-item catalog, and a quality floor on Amazon Beauty."""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pandas as pd
import pytest
import torch

from tastemaker.data.dataset import Dataset
from tastemaker.eval.protocols import peak_rss
from tastemaker.models.neural.two_tower import TwoTower, sampled_softmax_loss
from tastemaker.testing.conformance import OPTIONS, RecommenderConformance
from tastemaker.testing.synthetic import checkerboard
from tastemaker.types import Query

# Fast on the 40 x 40 checkerboard (about 1 s a fit on one thread). The checkerboard's
# histories are in item order, so a pure next-item model learns "the successor" rather than
# the taste: shuffling half the training windows makes the history count as a set too.
FAST = dict(embedding_size=16, epochs=60, batch_size=8, learning_rate=3e-3, validation_users=0, shuffle_history=0.5)


class TestTwoTower(RecommenderConformance):
    def make_model(self) -> TwoTower:
        return TwoTower(**FAST)  # type: ignore[arg-type]


class TestTwoTowerMean(RecommenderConformance):
    def make_model(self) -> TwoTower:
        return TwoTower(**FAST, user_encoder="mean")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def fitted() -> TwoTower:
    return TwoTower(**FAST).fit(checkerboard(), OPTIONS)  # type: ignore[arg-type]


def test_item_vectors_are_normalised_and_score(fitted: TwoTower) -> None:
    vectors = fitted.item_vectors()
    assert vectors.dtype == np.float32 and vectors.shape == (40, 16)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    batch = fitted.resolve([Query(user="u2"), Query(history=["i1", "i3"])])
    users = fitted.user_vectors(batch)
    np.testing.assert_allclose(users @ vectors.T, fitted._score(batch), rtol=1e-6)


def test_user_features_are_used() -> None:
    data = checkerboard()
    users = pd.DataFrame({"user_id": [f"u{u}" for u in range(40)], "group": ["a", "b"] * 20, "age": np.arange(40) / 2})
    with_features = Dataset.from_frames(data.interactions.assign(
        user=data.users.decode(data.interactions["user"]), item=data.items.decode(data.interactions["item"])
    ), catalog=data.catalog.drop(columns="item"), users=users)
    model = TwoTower(**FAST).fit(with_features, OPTIONS)  # type: ignore[arg-type]
    assert model.user_feature_codes_.shape == (40, 1)  # "group"; the float column is not categorical
    assert set(model.user_feature_codes_[:, 0]) == {1, 2}
    (items,) = model.recommend([Query(user="u4")], n=1)
    assert items.item_ids[0] == "i4"
    (unknown,) = model.recommend([Query(user="stranger", history=["i2", "i6"])], n=3)
    assert all(int(i[1:]) % 2 == 0 for i in unknown.item_ids)


def test_new_item_is_encoded_from_content_and_recommended(fitted: TwoTower, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = TwoTower.load(fitted.save(tmp_path / "model"))  # a copy: the fixture stays as it was
    before = model.item_vectors().copy()
    model.add_items(pd.DataFrame({
        "item_id": ["new-even", "new-odd", "i3", "new-bare"],
        "title": ["New even", "New odd", "ignored: i3 is known", ""],
        "categories": [["even", "unknown-category"], ["odd"], ["even"], []],
    }))
    assert len(model.items_) == 43 and list(model.items_.ids[-3:]) == ["new-even", "new-odd", "new-bare"]
    assert model.user_items_.shape == (40, 43) and list(model.item_popularity_[-3:]) == [0, 0, 0]
    assert model.item_titles_[40] == "New even"
    vectors = model.item_vectors()
    np.testing.assert_array_equal(vectors[:40], before)  # known items keep their vectors
    even, odd = vectors[0:40:2].mean(axis=0), vectors[1:40:2].mean(axis=0)
    assert vectors[40] @ even > vectors[40] @ odd and vectors[41] @ odd > vectors[41] @ even
    # Content decides: the new item of a user's group is among the top 3 (of 21 unseen items)
    # and scores above the other group's new item; an item with no content scores 0.
    for user, wanted, unwanted in (("u0", "new-even", "new-odd"), ("u5", "new-odd", "new-even")):
        (items,) = model.recommend([Query(user=user)], n=3)
        assert wanted in items.item_ids, (user, items.item_ids)
        (scores,) = model.score([Query(user=user)], [wanted, unwanted, "new-bare"])
        assert scores[0] > scores[1] and scores[2] == 0.0, scores
    # The added items survive a save/load round trip with identical scores.
    loaded = TwoTower.load(model.save(tmp_path / "extended"))
    queries = [Query(user="u0"), Query(user="u5"), Query(history=["new-even", "i2"])]
    np.testing.assert_allclose(loaded.score(queries, list(model.items_.ids)), model.score(queries, list(model.items_.ids)), atol=1e-6)


def test_text_vectors_feed_the_item_tower(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = checkerboard()
    catalog = data.catalog.drop(columns=["item", "categories"]).assign(
        text_vector=[np.array([1.0, 0.0, 0.5]) if i % 2 == 0 else np.array([0.0, 1.0, 0.5]) for i in range(40)]
    )
    data = Dataset.from_frames(
        data.interactions.assign(user=data.users.decode(data.interactions["user"]), item=data.items.decode(data.interactions["item"])),
        catalog=catalog,
    )
    model = TwoTower(**FAST).fit(data, OPTIONS)  # type: ignore[arg-type]
    assert model.content_["text"].shape == (40, 3) and len(model.category_vocab_) == 0
    model.add_items(pd.DataFrame({"item_id": ["t-even", "t-odd", "t-none"], "text_vector": [[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], None]}))
    vectors = model.item_vectors()
    even, odd = vectors[0:40:2].mean(axis=0), vectors[1:40:2].mean(axis=0)
    assert vectors[40] @ even > vectors[40] @ odd and vectors[41] @ odd > vectors[41] @ even
    loaded = TwoTower.load(model.save(tmp_path / "model"))
    np.testing.assert_allclose(loaded.item_vectors(), vectors, atol=1e-6)


def test_logq_correction_known_answer() -> None:
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    candidates = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    positives = torch.tensor([0, 1])
    items = torch.tensor([10, 11, 12])
    q = torch.tensor([0.5, 0.25, 0.25])
    temperature = 0.5

    def expected(correct: bool) -> float:
        total = 0.0
        for row in range(2):
            logits = [float(queries[row] @ candidates[j]) / temperature - (math.log(q[j]) if correct else 0.0) for j in range(3)]
            total += -logits[row] + math.log(sum(math.exp(x) for x in logits))
        return total / 2

    plain = sampled_softmax_loss(queries, candidates, positives, items, None, temperature)
    corrected = sampled_softmax_loss(queries, candidates, positives, items, torch.log(q), temperature)
    assert float(plain) == pytest.approx(expected(False), rel=1e-6)
    assert float(corrected) == pytest.approx(expected(True), rel=1e-6)
    # The popular item 10 loses log(0.5) - log(0.25) = log 2 against the others: as a positive
    # (row 0) its loss rises, as a negative (row 1) the loss falls.
    per_row = [
        float(sampled_softmax_loss(queries[[r]], candidates, positives[[r]], items, log_q, temperature))
        for r in range(2) for log_q in (None, torch.log(q))
    ]
    assert per_row[1] > per_row[0] and per_row[3] < per_row[2]


def test_accidental_hits_are_masked() -> None:
    queries = torch.tensor([[1.0, 0.0]])
    candidates = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    items = torch.tensor([7, 7, 8])  # column 1 is the positive item again
    loss = sampled_softmax_loss(queries, candidates, torch.tensor([0]), items, None, 1.0)
    assert float(loss) == pytest.approx(-1.0 + math.log(math.e + 1.0), rel=1e-6)


@pytest.mark.slow  # about a minute: top-10 of 2,000 x 1M scores is the base class's argpartition
def test_million_item_catalog_scores_in_bounded_memory() -> None:
    data = checkerboard()
    model = TwoTower(**{**FAST, "embedding_size": 8, "epochs": 5}).fit(data, OPTIONS)  # type: ignore[arg-type]
    n_new = 1_000_000
    started = time.perf_counter()
    model.add_items(pd.DataFrame({
        "item_id": [f"n{i}" for i in range(n_new)],
        "categories": [["even"] if i % 2 else ["odd"] for i in range(n_new)],
    }))
    add_seconds = time.perf_counter() - started
    assert model.item_vectors().shape == (1_000_040, 8)
    users = np.arange(40, dtype=np.int32).repeat(50)  # 2,000 queries
    with peak_rss() as peak:
        top = model.recommend_codes(users, n=10)
    assert top.shape == (2000, 10) and (top >= 0).all()
    # users x items float32 would be 8 GB; one scoring batch is 32 queries x 1M items = 128 MB
    assert peak.megabytes < 1500, f"peak {peak.megabytes:.0f} MB"
    assert add_seconds < 120


@pytest.mark.realdata
def test_beauty_quality_floor() -> None:
    """Issue target: test NDCG@10 >= 0.0327 (ALS), aiming at 0.0445 (EASE). This budget (20
    epochs, ~100 s on one thread) measured 0.0423; 30 epochs measured 0.0460."""
    if not os.environ.get("TASTEMAKER_DATA"):
        pytest.skip("TASTEMAKER_DATA is not set")
    from tastemaker.data.loaders import load_dataset
    from tastemaker.data.splits import leave_one_out
    from tastemaker.eval.protocols import evaluate_model
    from tastemaker.types import FitOptions

    split = leave_one_out(load_dataset("amazon-s3rec-sequences", subset="Beauty"))
    model = TwoTower(
        epochs=20, scheduler="cosine", warmup_epochs=1.0, learning_rate=5e-3, dropout=0.5, validation_users=0
    ).fit(split.train_with_validation(), FitOptions(seed=42, threads=1, progress=False))
    means, _ = evaluate_model(model, split.test, ks=(10,), diversity=False)
    assert means["ndcg@10"] >= 0.040, means
