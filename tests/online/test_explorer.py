"""The bandit explorer inside a pipeline: contract, exploration slots, propensities, novelty."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from tastemaker.pipeline.config import PipelineConfigError, build_pipeline
from tastemaker.pipeline.explore import BanditExplorer
from tastemaker.pipeline.pipeline import Pipeline
from tastemaker.pipeline.sources import ModelSource, PopularitySource
from tastemaker.testing.pipeline import QUERIES, ExplorerConformance
from tastemaker.testing.synthetic import checkerboard
from tastemaker.types import FitOptions, Query

OPTIONS = FitOptions(seed=7, threads=1, progress=False)


def _pipeline(**explorer: object) -> Pipeline:
    return Pipeline([ModelSource(model="als", params={"embedding_size": 8, "epochs": 5}, name="als"), PopularitySource()],
                    explorer=BanditExplorer(**explorer))  # type: ignore[arg-type]


class TestDiagLinUCBExplorer(ExplorerConformance):
    def make_pipeline(self) -> Pipeline:
        return _pipeline(policy="diag-linucb", vectors="als", slots=2, pool=6)


class TestSlateThompsonExplorer(ExplorerConformance):
    def make_pipeline(self) -> Pipeline:
        return _pipeline(policy="slate-thompson", slots=3, pool=8, params={"propensity_draws": 50})


def test_slots_keep_the_ranked_head_and_log_the_policys_propensities() -> None:
    data = checkerboard()
    greedy = Pipeline([ModelSource(model="als", params={"embedding_size": 8, "epochs": 5}, name="als"), PopularitySource()]).fit(data, OPTIONS)
    bandit = _pipeline(policy="beta-thompson", slots=2, pool=5, params={"propensity_draws": 100}).fit(data, OPTIONS)
    query = Query(user="u1")
    ranked = greedy.recommend([query], n=10)[0]
    slate = bandit.slates([query], n=6)[0]
    assert slate.items.item_ids[:4].tolist() == ranked.item_ids[:4].tolist()  # the head stays as ranked
    assert (slate.propensities[:4] == 1).all()
    assert set(slate.items.item_ids[4:]) <= set(ranked.item_ids[4:9])  # explored among the next `pool`
    assert ((slate.propensities[4:] > 0) & (slate.propensities[4:] < 1)).all()
    assert slate.items.sources[4:] == ("bandit", "bandit")
    assert all("beta-thompson" in r for r in slate.items.reasons[4:])
    assert slate.policy == "bandit:beta-thompson"


def test_feedback_moves_the_policy_and_copies_share_it() -> None:
    pipeline = _pipeline(policy="diag-linucb", vectors="als", slots=2, pool=6).fit(checkerboard(), OPTIONS)
    explorer = pipeline.explorer
    assert isinstance(explorer, BanditExplorer)
    twin = copy.deepcopy(pipeline)
    before = explorer.policy_.version
    explorer.update(explorer.feedback("u1", ["i3", "i4"], [1.0, 0.0], shown=True, positions=[4, 5]))
    assert explorer.policy_.version == before + 1
    assert twin.explorer.policy_ is explorer.policy_  # type: ignore[attr-defined]
    stats = explorer.policy_.stats["i3"]
    assert stats[0] == 1.0 and np.abs(stats[1:]).sum() > 0  # the context (u1's ALS vector) was used


def test_the_live_policy_is_saved_with_the_pipeline(tmp_path: Path) -> None:
    pipeline = _pipeline(policy="ucb1", slots=2, pool=6).fit(checkerboard(), OPTIONS)
    pipeline.explorer.update(pipeline.explorer.feedback("u2", ["i5"], [1.0], shown=True))  # type: ignore[attr-defined]
    loaded = Pipeline.load(pipeline.save(tmp_path / "p"))
    assert {k: v.tolist() for k, v in loaded.explorer.policy_.stats.items()} == {"i5": [1.0, 1.0]}  # type: ignore[attr-defined]
    for a, b in zip(pipeline.slates(QUERIES, n=5), loaded.slates(QUERIES, n=5), strict=True):
        assert a.items.item_ids.tolist() == b.items.item_ids.tolist()


def test_config_errors_name_the_problem() -> None:
    base = {"sources": [{"kind": "model", "model": "als", "name": "als"}]}
    with pytest.raises(PipelineConfigError, match="unknown policy 'nope'"):
        build_pipeline({**base, "explorer": {"kind": "bandit", "policy": "nope"}})
    with pytest.raises(PipelineConfigError, match="explorer"):
        build_pipeline({**base, "explorer": {"kind": "bandit", "policy": "linucb", "params": {"alpha": -1}}})
    with pytest.raises(ValueError, match="reads user and item vectors"):
        build_pipeline({**base, "explorer": {"kind": "bandit", "policy": "linucb"}}).fit(checkerboard(), OPTIONS)


def test_novelty_intent_scales_exploration() -> None:
    import scipy.sparse as sp

    from tastemaker.online.novelty import new_to_user, novelty_propensities

    # items 0-3 in categories 0,0,1,2; a history 0,1,2,3 brings a new category at 2 and 3
    cats = sp.csr_matrix(np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32))
    assert novelty_propensities(np.array([0, 1, 2, 3]), cats, session=2) == (pytest.approx(2 / 3), pytest.approx(1.0))
    assert novelty_propensities(np.array([0, 1, 0, 1]), cats) == (0.0, 0.0)
    assert novelty_propensities(np.array([2]), cats) == (0.5, 0.5)
    assert new_to_user(np.array([0, 1]), np.array([0, 2, 3]), cats).tolist() == [False, True, True]


def test_the_shipped_bandit_pipeline_trains_and_explores() -> None:
    from tastemaker.data.loaders.movielens import load_movielens_latest_small
    from tastemaker.pipeline.config import load_pipeline_config

    data = load_movielens_latest_small()
    small = data.with_interactions(data.interactions[data.interactions["user"] < 60])
    pipeline = load_pipeline_config("bandit").fit(small, OPTIONS)
    slate = pipeline.slates([Query(user=str(small.users.ids[3]))], n=10)[0]
    assert slate.policy == "bandit:diag-linucb" and len(slate) == 10
    assert (slate.propensities == 1).all()  # Diag-LinUCB is deterministic: propensity 1 everywhere
    assert slate.items.sources[8:] == ("bandit", "bandit")
