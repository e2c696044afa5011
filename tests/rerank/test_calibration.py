"""Calibration (Steck 2018): the KL measure's known values, the user's mix, and a list moved
towards a 70/30 drama/comedy user."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from tastemaker.rerank import CalibrationReranker, history_distribution, list_distribution, miscalibration
from tastemaker.types import Query

CATEGORIES = ({f"d{i}": ["drama"] for i in range(10)} | {f"c{i}": ["comedy"] for i in range(10)}
              | {f"hd{i}": ["drama"] for i in range(7)} | {f"hc{i}": ["comedy"] for i in range(3)} | {"plain": []})
HISTORY = [f"hd{i}" for i in range(7)] + [f"hc{i}" for i in range(3)]
CANDIDATES = [f"d{i}" for i in range(10)] + [f"c{i}" for i in range(10)]  # every drama above every comedy


def test_miscalibration_known_values() -> None:
    p = np.array([0.7, 0.3])
    assert miscalibration(p, p) == pytest.approx(0.0, abs=1e-12)
    # a list of drama only: q~ = 0.99 [1, 0] + 0.01 p
    expected = 0.7 * math.log(0.7 / (0.99 + 0.007)) + 0.3 * math.log(0.3 / 0.003)
    assert miscalibration(p, np.array([1.0, 0.0])) == pytest.approx(expected, rel=1e-12)
    assert miscalibration(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(math.log(100))  # log(1/alpha)
    rows = miscalibration(np.array([p, [1.0, 0.0], [0.0, 0.0]]), np.array([p, [0.0, 1.0], [0.5, 0.5]]), rows=True)
    np.testing.assert_allclose(rows, [0.0, math.log(100), 0.0], atol=1e-12)  # no mix known: 0
    with pytest.raises(ValueError, match="same shape"):
        miscalibration(p, np.array([1.0]))


def test_distributions_split_an_item_over_its_categories() -> None:
    cats = sp.csr_matrix(np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=np.float32))
    np.testing.assert_allclose(history_distribution(cats, np.array([0, 1, 2])), [0.25, 0.25, 0.5])  # item 2 says nothing
    np.testing.assert_allclose(list_distribution(cats, np.array([0, 1, 2, -1])), [1 / 6, 1 / 6, 1 / 3])  # but counts in a list
    # recency: with half_life 1 each older event weighs half the next
    np.testing.assert_allclose(history_distribution(cats, np.array([0, 1]), half_life=1.0), [1 / 6, 1 / 6, 2 / 3])


@pytest.fixture
def setup(make_dataset, fit, ranked):  # type: ignore[no-untyped-def]
    data = make_dataset(CATEGORIES, {"u": HISTORY, "new": ["plain"]})

    def run(weight: float, **config):  # type: ignore[no-untyped-def]
        reranker = fit(CalibrationReranker(weight=weight, **config), data)
        items = ranked(reranker.context_, CANDIDATES, 1.0 - 0.05 * np.arange(len(CANDIDATES)))
        return reranker, items

    return run


def _kl(reranker: CalibrationReranker, query: Query, codes: np.ndarray) -> float:
    return miscalibration(reranker.target_distribution(query), list_distribution(reranker.context_.categories, codes))


def test_the_list_moves_towards_the_users_mix(setup) -> None:  # type: ignore[no-untyped-def]
    query = Query(user="u")
    reranker, items = setup(0.0)
    np.testing.assert_allclose(reranker.target_distribution(query), [0.3, 0.7])  # [comedy, drama]
    assert reranker.rerank(query, items, 10).item_ids.tolist() == CANDIDATES[:10]
    kls, comedies = [], []
    for weight in (0.0, 0.1, 0.5, 0.75, 1.0):
        reranker, items = setup(weight)
        out = reranker.rerank(query, items, 10)
        kls.append(_kl(reranker, query, out.item_codes))
        comedies.append(sum(i.startswith("c") for i in out.item_ids))
        promoted = [k for k, s in enumerate(out.sources) if s == "calibration"]
        reasons = out.reasons or ("",) * len(out)  # weight 0 returns the input as it is: no reasons column
        assert [out.item_ids[k][0] for k in promoted] == ["c"] * len(promoted)
        assert all(reasons[k] == "to match your mix of comedy" for k in promoted)
        assert all(reasons[k] == "" and out.sources[k] == "ease" for k in range(10) if k not in promoted)
    assert kls[0] == pytest.approx(1.134, abs=1e-3)
    assert all(a >= b for a, b in zip(kls, kls[1:], strict=False)) and kls[-1] < kls[1] < kls[0]
    assert comedies == [0, 1, 1, 2, 3]
    assert kls[-1] == pytest.approx(0.0, abs=1e-12)  # weight 1: exactly 7 drama and 3 comedy


def test_recency_weighting_follows_the_recent_taste(setup) -> None:  # type: ignore[no-untyped-def]
    query = Query(user="u")  # the 3 comedies are the most recent events
    reranker, _ = setup(0.5, half_life=1.0)
    comedy = (1 + 0.5 + 0.25) / (2 - 2.0**-9)  # the three newest of ten events
    np.testing.assert_allclose(reranker.target_distribution(query), [comedy, 1 - comedy])


def test_no_categorised_history_keeps_the_ranking(setup) -> None:  # type: ignore[no-untyped-def]
    reranker, items = setup(1.0)
    for query in (Query(user="new"), Query(), Query(user="stranger")):
        out = reranker.rerank(query, items, 6)
        assert out.item_ids.tolist() == CANDIDATES[:6] and out.sources == ("ease",) * 6
    # a session history counts as the user's
    assert "calibration" in reranker.rerank(Query(history=["hc0", "hd0"]), items, 6).sources
