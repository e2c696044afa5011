"""Content-only retrieval: the conformance suite (TF-IDF on the checkerboard titles), known
answers on hand-made vectors (recency weights, max_length, cold items), new items, the
artifact, bad input, and a quality floor on Amazon Scientific with MiniLM vectors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from tastemaker.data.dataset import Dataset
from tastemaker.errors import DataError
from tastemaker.models.content import ContentRetrieval
from tastemaker.testing.conformance import OPTIONS, RecommenderConformance
from tastemaker.types import Query


class TestContentRetrieval(RecommenderConformance):
    # Checkerboard titles are "Even item 4" / "Odd item 7": a TF-IDF fitted on them separates
    # the two groups, so the set-based known answer holds for content alone.
    def make_model(self) -> ContentRetrieval:
        return ContentRetrieval(encoder="tfidf")


# Hand-made unit vectors: two clusters (a*, b*) and a loner (c), plus "a-cold", which nobody
# has seen. Cosines are exact known answers.
VECTORS = {
    "a1": [1.0, 0.0, 0.0],
    "a2": [0.96, 0.28, 0.0],
    "a-cold": [0.8, 0.6, 0.0],
    "b1": [0.0, 0.0, 1.0],
    "b2": [0.0, 0.28, 0.96],
    "c": [0.0, 1.0, 0.0],
}


def hand_made(vectors: dict[str, list[float]] = VECTORS) -> Dataset:
    events = [("u0", "a1", 0), ("u0", "b1", 1), ("u1", "a2", 0), ("u1", "c", 1), ("u2", "b2", 0)]
    catalog = pd.DataFrame({
        "item_id": list(vectors),
        "title": [f"item {k}" for k in vectors],
        "text_vector": [np.array(v, dtype=np.float32) for v in vectors.values()],
    })
    return Dataset.from_frames(pd.DataFrame(events, columns=["user", "item", "timestamp"]), catalog=catalog)


def expected_scores(history: list[str], decay: float) -> dict[str, float]:
    user = sum(decay ** (len(history) - 1 - k) * np.array(VECTORS[i]) for k, i in enumerate(history))
    user = user / np.linalg.norm(user)
    return {item: float(user @ np.array(v)) for item, v in VECTORS.items()}


@pytest.fixture(scope="module")
def data() -> Dataset:
    return hand_made()


def test_scores_are_cosines_to_the_recency_weighted_mean(data: Dataset) -> None:
    model = ContentRetrieval(decay=0.5).fit(data, OPTIONS)
    # u0 saw a1 then b1: user ∝ b1 + 0.5·a1
    expected = expected_scores(["a1", "b1"], 0.5)
    items = list(VECTORS)
    np.testing.assert_allclose(model.score([Query(user="u0")], items)[0], [expected[i] for i in items], atol=1e-6)
    (top,) = model.recommend([Query(user="u0")], n=4)
    assert list(top.item_ids) == sorted((i for i in items if i not in {"a1", "b1"}), key=lambda i: -expected[i])
    assert top.item_ids[0] == "b2"  # the latest item's neighbour leads


def test_recency_decides_between_two_tastes(data: Dataset) -> None:
    # the same two items in the other order: now the a-cluster leads
    (ab,) = ContentRetrieval(decay=0.5).fit(data, OPTIONS).recommend([Query(history=["b1", "a1"])], n=2)
    assert list(ab.item_ids) == ["a2", "a-cold"]
    # decay 1 is a plain mean: the order no longer matters
    flat = ContentRetrieval(decay=1.0).fit(data, OPTIONS)
    np.testing.assert_allclose(
        flat.score([Query(history=["a1", "b1"])], list(VECTORS)),
        flat.score([Query(history=["b1", "a1"])], list(VECTORS)),
        atol=1e-7,
    )


def test_only_the_latest_max_length_items_count(data: Dataset) -> None:
    model = ContentRetrieval(max_length=1).fit(data, OPTIONS)
    scores = model.score([Query(history=["a1", "a2", "b1"])], list(VECTORS))[0]
    np.testing.assert_allclose(scores, [expected_scores(["b1"], 1.0)[i] for i in VECTORS], atol=1e-6)


def test_an_item_nobody_has_seen_is_recommended_by_its_content(data: Dataset) -> None:
    model = ContentRetrieval().fit(data, OPTIONS)
    assert model.item_popularity_[model.items_.code("a-cold")] == 0
    (items,) = model.recommend([Query(history=["a2"])], n=2)
    assert list(items.item_ids) == ["a1", "a-cold"]  # cosines 0.96 and 0.936


def test_vectors_serve_the_scores(data: Dataset) -> None:
    model = ContentRetrieval(decay=0.7).fit(data, OPTIONS)
    vectors = model.item_vectors()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError):
        vectors[0, 0] = 2.0  # a read-only view: an index cannot corrupt the model
    batch = model.resolve([Query(user="u0"), Query(history=["c", "b2"]), Query(user="u1", history=["b1"])])
    users = model.user_vectors(batch)
    np.testing.assert_allclose(users @ vectors.T, model._score(batch), atol=1e-6)
    # a known user's new events fold in: the same as the anonymous full sequence
    anonymous = model.user_vectors(model.resolve([Query(history=["a2", "c", "b1"])]))
    np.testing.assert_allclose(users[2], anonymous[0], atol=1e-6)


def test_added_items_are_scored_at_once_and_survive_a_round_trip(  # type: ignore[no-untyped-def]
    data: Dataset, tmp_path
) -> None:
    model = ContentRetrieval(decay=0.5).fit(data, OPTIONS)
    model.add_items(pd.DataFrame({
        "item_id": ["b-new", "a1", "b-new"],  # a known id and a repeat are ignored
        "title": ["B new", "ignored", "ignored"],
        "text_vector": [[0.0, 0.1, 0.995], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]],
    }))
    assert len(model.items_) == 7 and model.items_.ids[-1] == "b-new" and model.item_titles_[-1] == "B new"
    assert model.user_items_.shape == (3, 7) and model.item_popularity_[-1] == 0
    (items,) = model.recommend([Query(user="u2")], n=2)  # u2 saw b2: b-new (0.983) beats b1 (0.96)
    assert list(items.item_ids) == ["b-new", "b1"]
    loaded = ContentRetrieval.load(model.save(tmp_path / "model"))
    queries = [Query(user="u0"), Query(user="u2"), Query(history=["b-new"])]
    ids = list(model.items_.ids)
    np.testing.assert_array_equal(loaded.score(queries, ids), model.score(queries, ids))
    with pytest.raises(DataError, match="2-d text vectors but the model was fitted on 3-d"):
        model.add_items(pd.DataFrame({"item_id": ["flat"], "text_vector": [[1.0, 0.0]]}))
    assert "flat" not in model.items_  # a refused batch changes nothing


def test_tfidf_encoder_is_fitted_on_the_catalog_and_saved(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tastemaker.testing.synthetic import checkerboard

    model = ContentRetrieval(encoder="tfidf").fit(checkerboard(), OPTIONS)
    loaded = ContentRetrieval.load(model.save(tmp_path / "model"))
    new = pd.DataFrame({
        "item_id": ["new-even", "new-odd"], "title": ["Even item 99", "Odd item 98"], "categories": [["even"], ["odd"]],
    })
    model.add_items(new)
    loaded.add_items(new)  # encoded by the TF-IDF stored in the artifact
    vectors = loaded.item_vectors()
    np.testing.assert_array_equal(vectors, model.item_vectors())
    # the item numbers are not TF-IDF words (each occurs once): a new item is its group's text
    np.testing.assert_allclose(vectors[40], vectors[0], atol=1e-6)
    np.testing.assert_allclose(vectors[41], vectors[1], atol=1e-6)
    assert vectors[40] @ vectors[1] < 0.9
    (items,) = loaded.recommend([Query(history=["i0", "i2"])], n=19)
    assert set(items.item_ids) == {f"i{i}" for i in range(4, 40, 2)} | {"new-even"}


def test_bad_config_and_bad_vectors_are_refused() -> None:
    for bad in ({"decay": 0.0}, {"decay": 1.5}, {"max_length": 0}, {"encoder": " "}, {"decay_rate": 0.5}):
        with pytest.raises(ValidationError):
            ContentRetrieval(**bad)  # type: ignore[arg-type]
    ragged = hand_made(VECTORS | {"b1": [0.0, 1.0]})  # one 2-d vector among 3-d ones
    with pytest.raises(DataError, match="different lengths"):
        ContentRetrieval().fit(ragged, OPTIONS)


# ---------------------------------------------------------------------- real data
# (the `scientific` fixture lives in tests/models/conftest.py)


@pytest.mark.realdata
@pytest.mark.slow  # MiniLM encodes 4,385 texts on one thread the first time (then cached)
def test_scientific_quality_floor(scientific) -> None:  # type: ignore[no-untyped-def]
    """Amazon Scientific (UniSRec), leave-one-out, full ranking: content alone (MiniLM over
    "title. category path. brand.") beats popularity by far: test NDCG@10 0.055 with the default
    decay 0.9 (0.071 with 0.5, 0.048 with a plain mean) against popularity's 0.018."""
    from tastemaker.eval.protocols import evaluate_model
    from tastemaker.models.popularity import MostPopular

    split, train = scientific
    pop = evaluate_model(MostPopular().fit(train, OPTIONS), split.test, ks=(10,), diversity=False)[0]["ndcg@10"]
    model = ContentRetrieval().fit(train, OPTIONS)
    ndcg = evaluate_model(model, split.test, ks=(10,), diversity=False)[0]["ndcg@10"]
    assert ndcg >= 0.047 and ndcg > 2.5 * pop, (ndcg, pop)
    recent = ContentRetrieval(decay=0.5).fit(train, OPTIONS)  # recency matters on this data
    assert evaluate_model(recent, split.test, ks=(10,), diversity=False)[0]["ndcg@10"] > ndcg
