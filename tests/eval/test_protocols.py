"""The reference protocol: grids, tuning on validation, structure of the result, memory peak."""

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from tastemaker.data.dataset import Dataset
from tastemaker.data.splits import Split, leave_one_out
from tastemaker.eval.protocols import (
    ModelResult,
    ProtocolResult,
    evaluate_model,
    param_grid,
    peak_rss,
    run_protocol,
    selection_metrics,
)
from tastemaker.models.base import ModelConfig, Recommender
from tastemaker.models.ease import EASE
from tastemaker.models.popularity import MostPopular
from tastemaker.testing.synthetic import checkerboard
from tastemaker.types import FitOptions, Query

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


class DegenerateConfig(ModelConfig):
    fill: float = 0.0  # every score; NaN for a model that scores nothing


class Degenerate(Recommender):
    """Test double: the same score (or NaN) for every item. It knows nothing, so every metric
    that selects a model must give it 0, whatever codes the held-out items have."""

    Config = DegenerateConfig
    name = "degenerate"

    def _fit(self, dataset, options):
        pass

    def _score(self, batch):
        return np.full((len(batch), len(self.items_)), self.config.fill, dtype=np.float32)

    def _arrays(self):
        return {}

    def _set_arrays(self, arrays):
        pass


def lowest_code_targets(data: Dataset) -> Split:
    """A split whose held-out item is, for every user, the unseen item with the lowest code:
    where a list that breaks ties by code puts a constant model's first guess."""
    train = data.sequences()
    seen = [set(s.tolist()) for s in train]
    users = np.arange(data.n_users)
    items = np.array([min(set(range(data.n_items)) - s) for s in seen])
    frame = pd.DataFrame({"user": users.astype(np.int32), "item": items.astype(np.int32)})
    return Split(train=data, validation=frame, test=frame, name="lowest-code")


@pytest.mark.parametrize("fill", [0.0, 3.5, float("nan")])
def test_constant_and_nan_scores_get_no_credit_for_low_codes(fill):
    data = checkerboard()
    split = lowest_code_targets(data)
    model = Degenerate(fill=fill).fit(data, OPTIONS)
    means, per_user = selection_metrics(model, split.validation, k=10)
    assert means == {"hr@10": 0.0, "recall@10": 0.0, "ndcg@10": 0.0, "mrr@10": 0.0}
    assert len(per_user["ndcg@10"]) == data.n_users
    if fill == fill:  # the served lists do rank the lowest code first: that is what test reports show
        assert evaluate_model(model, split.validation, ks=(10,), diversity=False)[0]["ndcg@10"] == 1.0


def test_selection_metrics_equal_the_list_metrics_where_untied():
    """Per user: the pessimistic NDCG never exceeds the listed one, and equals it wherever no
    other candidate ties with the validation item's score."""
    data = rotated_checkerboard()
    split = leave_one_out(data)
    # float32 weights: rounded to float16, the checkerboard's symmetric weights tie exactly
    model = EASE(reg=1.0, precision="float32").fit(split.train, OPTIONS)
    _, listed = evaluate_model(model, split.validation, ks=(10,), diversity=False)
    _, selected = selection_metrics(model, split.validation, k=10)
    assert np.all(selected["ndcg@10"] <= listed["ndcg@10"] + 1e-12)
    validation = split.validation.sort_values("user")
    scores = model.score([Query(user=u) for u in data.users.decode(validation["user"])], list(data.items.ids))
    untied = []
    for row, (user, item) in enumerate(zip(validation["user"], validation["item"], strict=True)):
        candidates = np.setdiff1d(np.arange(data.n_items), model.user_items_[user].indices)
        untied.append(np.sum(scores[row, candidates] == scores[row, item]) == 1)
    untied = np.array(untied)
    # the rotated checkerboard gives every held-out item training events, so few (here none)
    # of their scores tie exactly; where ties cost credit is the known-answer test above
    # (test_constant_and_nan_scores_get_no_credit_for_low_codes)
    assert untied.sum() > len(untied) // 2
    np.testing.assert_allclose(selected["ndcg@10"][untied], listed["ndcg@10"][untied])
    assert selected["ndcg@10"].mean() > 0.1  # the rotated checkerboard's EASE is no constant model


def two_blocks() -> Dataset:
    """20 users, 40 items in two blocks: users 0-9 like items 0-19, users 10-19 items 20-39,
    each all of its block but one (user u's hole is item 2u). Hence a first-block user's lowest
    unseen code is its hole, which co-occurrence finds at rank 1; a second-block user's is
    item 0, of the other block, which co-occurrence scores 0 like all of that block."""
    rows = []
    for user in range(20):
        block = range(0, 20) if user < 10 else range(20, 40)
        hole = 2 * user if user < 10 else 20 + 2 * (user - 10)
        rows += [(f"u{user}", f"i{item}", len(rows)) for item in block if item != hole]
    catalog = pd.DataFrame({"item_id": [f"i{i}" for i in range(40)], "title": [f"item {i}" for i in range(40)]})
    return Dataset.from_frames(pd.DataFrame(rows, columns=["user", "item", "timestamp"]), catalog=catalog, name="two-blocks")


def test_tuning_never_picks_a_constant_or_nan_configuration():
    """sign = 0 makes SignedCooccurrence constant. With the validation item at each user's
    lowest unseen code, code-ordered lists give it NDCG 1.0 against the real configuration's
    0.82, so tuning on them picked the constant; by pessimistic ranks they score 0 and 0.5
    (a second-block user's item 0 ties with the 19 other first-block items)."""
    data = two_blocks()
    split = lowest_code_targets(data)
    constant = SignedCooccurrence(sign=0.0).fit(data, OPTIONS)
    assert evaluate_model(constant, split.validation, ks=(10,), diversity=False)[0]["ndcg@10"] == 1.0
    result = run_protocol(
        data,
        {"cooc": (SignedCooccurrence, {"sign": [0.0, 1.0]}), "degenerate": (Degenerate, {"fill": [float("nan")]})},
        OPTIONS,
        split=split,
        progress=False,
    )
    cooc, degenerate = result.results
    assert [t["ndcg@10"] for t in cooc.tuning] == [0.0, pytest.approx(0.5)]
    assert cooc.params == {"sign": 1.0}
    assert degenerate.tuning[0]["ndcg@10"] == 0.0


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
