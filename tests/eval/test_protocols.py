"""The reference protocol: grids, tuning on validation, structure of the result, memory peak."""

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from tastemaker.data.dataset import Dataset
from tastemaker.eval.protocols import ModelResult, ProtocolResult, param_grid, peak_rss, run_protocol
from tastemaker.models.base import ModelConfig, Recommender
from tastemaker.models.ease import EASE
from tastemaker.models.popularity import MostPopular
from tastemaker.testing.synthetic import checkerboard
from tastemaker.types import FitOptions

OPTIONS = FitOptions(progress=False, threads=1)


def test_param_grid():
    assert param_grid({"reg": [1, 2], "k": ["a"]}) == [{"reg": 1, "k": "a"}, {"reg": 2, "k": "a"}]
    # the first key varies slowest, as in itertools.product
    assert param_grid({"a": [1, 2], "b": [3, 4]}) == [
        {"a": 1, "b": 3},
        {"a": 1, "b": 4},
        {"a": 2, "b": 3},
        {"a": 2, "b": 4},
    ]
    assert param_grid({}) == [{}]
    assert param_grid({"a": []}) == []


def rotated_checkerboard() -> Dataset:
    """checkerboard() with each user's sequence rotated by u // 2 positions.

    In checkerboard() every timestamp is the global row number, so under leave-one-out every
    even user (but one) holds out the same two items (36 and 38): they have no training events
    at all. Rotating the sequences spreads the held-out items over the catalog."""
    base = checkerboard()
    rows = []
    for user, seq in enumerate(base.sequences()):
        shift = (user // 2) % len(seq)
        seq = np.concatenate([seq[shift:], seq[:shift]])
        rows += [(base.users.ids[user], base.items.ids[item], t) for t, item in enumerate(seq)]
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    return Dataset.from_frames(frame, catalog=base.catalog.drop(columns=["item"]), name="rotated-checkerboard")


class SignedCooccurrenceConfig(ModelConfig):
    sign: float = 1.0


class SignedCooccurrence(Recommender):
    """Test double: scores = sign * (history @ item-item co-occurrence). On a checkerboard
    sign=+1 puts same-parity items first; sign=-1 puts every opposite-parity item (score 0)
    above every same-parity one (score < 0)."""

    Config = SignedCooccurrenceConfig
    name = "signed-cooccurrence"

    def _fit(self, dataset, options):
        x = self.user_items_
        self.cooc_ = (x.T @ x).toarray().astype(np.float32)

    def _score(self, batch):
        return self.config.sign * np.asarray(sp.csr_matrix(batch.history) @ self.cooc_, dtype=np.float32)

    def _arrays(self):
        return {"cooc": self.cooc_}

    def _set_arrays(self, arrays):
        self.cooc_ = arrays["cooc"]


def test_run_protocol_picks_the_grid_value_with_the_best_validation_ndcg():
    data = rotated_checkerboard()
    result = run_protocol(data, {"signed": (SignedCooccurrence, {"sign": [-1.0, 1.0]})}, OPTIONS, progress=False)
    (model,) = result.results
    assert [t["params"] for t in model.tuning] == [{"sign": -1.0}, {"sign": 1.0}]
    # sign=-1: the 20 opposite-parity items fill the top 10, so no validation item is found
    assert model.tuning[0]["ndcg@10"] == 0.0
    assert model.tuning[1]["ndcg@10"] > 0.5
    assert model.params == {"sign": 1.0}
    assert model.validation["ndcg@10"] == model.tuning[1]["ndcg@10"]


def test_run_protocol_ease_on_checkerboard_known_answer():
    data = rotated_checkerboard()
    grid = {"reg": [1.0, 1000.0]}
    result = run_protocol(
        data, {"ease": (EASE, grid), "most-popular": (MostPopular, {})}, OPTIONS, progress=False
    )
    assert isinstance(result, ProtocolResult)
    assert (result.dataset, result.split) == ("rotated-checkerboard", "leave-one-out")
    assert (result.n_users, result.n_items, result.n_interactions) == (40, 40, 760)
    assert result.n_test_users == 40  # every user has 19 >= 3 events
    ease, pop = result.results
    assert isinstance(ease, ModelResult)
    assert (ease.model, pop.model) == ("ease", "most-popular")
    # the chosen value is the one with the best validation NDCG (the first one on a tie)
    scores = [t["ndcg@10"] for t in ease.tuning]
    assert ease.params == ease.tuning[int(np.argmax(scores))]["params"]
    assert ease.params["reg"] in grid["reg"]
    # Known answer. After refitting on train + validation, user u has two unseen items of its
    # own parity: item u and its test item. The Gram matrix is block-diagonal by parity, so
    # EASE gives every opposite-parity item score 0 and the same-parity ones positive scores:
    # the test item is at rank 1 or 2, so hr@10 = 1 and ndcg@10 >= 1/log2(3) = 0.631.
    assert ease.test["hr@10"] == 1.0
    assert ease.test["ndcg@10"] >= 1 / np.log2(3) - 1e-9
    assert ease.test["mrr@10"] >= 0.5
    assert ease.ndcg10_ci[0] <= ease.test["ndcg@10"] <= ease.ndcg10_ci[1]
    # popularity knows nothing of parity and is far worse
    assert pop.test["ndcg@10"] < ease.test["ndcg@10"] - 0.3
    assert pop.params == {} and len(pop.tuning) == 1
    # result structure: @10 and @20, beyond-accuracy metrics, timings, JSON-friendly dict
    for k in (10, 20):
        for metric in ("hr", "recall", "ndcg", "mrr", "map", "coverage", "novelty", "arp", "gini", "diversity"):
            assert f"{metric}@{k}" in ease.test
    assert set(ease.validation) >= {"hr@10", "ndcg@10"}
    assert ease.fit_seconds >= 0 and ease.peak_rss_mb >= 0
    payload = json.loads(json.dumps(result.to_dict()))
    assert [r["model"] for r in payload["results"]] == ["ease", "most-popular"]


def test_plain_checkerboard_holds_out_items_with_no_training_events():
    """The derivation behind rotated_checkerboard(): on checkerboard() itself, every even user
    but 38 has test item 38 and validation item 36 (odd users: 39 and 37), and after refitting
    on train + validation item 38 still has no events. EASE scores it 0, tied with the 20
    odd items, which have lower codes, so it ranks 21st. Only users 38 (test item 36) and 39
    (test item 37), whose test items do have training events, are hit, at rank 1:
    hr@10 = ndcg@10 = 2/40."""
    result = run_protocol(checkerboard(), {"ease": (EASE, {"reg": [10.0]})}, OPTIONS, progress=False)
    (ease,) = result.results
    assert ease.test["hr@10"] == pytest.approx(2 / 40)
    assert ease.test["ndcg@10"] == pytest.approx(2 / 40)


def test_peak_rss_measures_a_200mb_allocation():
    size_mb = 200
    with peak_rss() as peak:
        block = np.ones(size_mb * 2**20 // 8)  # np.ones writes every page, so all of it is resident
    del block
    assert size_mb * 0.9 <= peak.megabytes <= size_mb * 1.25


def test_peak_rss_is_small_for_small_work():
    with peak_rss() as peak:
        sum(range(1000))
    assert peak.megabytes < 20
