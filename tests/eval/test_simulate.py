"""The closed-loop simulator: the click model's known answers, seeded runs, novelty, the
running metrics, the pipeline feedback loop, the plot, and bandit policies beating random on
a seeded world over the bundled ml-latest-small (its 2,000 most popular movies, for speed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tastemaker.data.dataset import Dataset
from tastemaker.data.loaders.movielens import load_movielens_latest_small
from tastemaker.eval import metrics
from tastemaker.eval.simulate import (
    Arrival,
    ClickModel,
    SimulationResult,
    SimulatorConfig,
    World,
    coverage,
    gini,
    paired_difference,
    plot,
    run_pipeline,
    run_policy,
)
from tastemaker.online.base import Arms, Feedback, Policy

ROUNDS = 2000  # enough for a paired difference of a few standard errors; about 1 s a policy


def _popular_subset(data: Dataset, items: int) -> Dataset:
    """The ``items`` most popular items and their events, re-encoded."""
    keep = np.argsort(-data.item_popularity(), kind="stable")[:items]
    inter = data.interactions[data.interactions["item"].isin(keep)]
    frame = inter.assign(user=data.users.decode(inter["user"].to_numpy()), item=data.items.decode(inter["item"].to_numpy()))
    catalog = data.catalog[data.catalog["item"].isin(keep)].drop(columns=["item"])
    return Dataset.from_frames(frame, catalog, name=f"{data.name}-top{items}")


@pytest.fixture(scope="module")
def data() -> Dataset:
    return _popular_subset(load_movielens_latest_small(), 2000)


@pytest.fixture(scope="module")
def world(data: Dataset) -> World:
    return World.build(data, seed=0, users=200)


class UniformRandom(Policy):
    name = "uniform"

    def _scores(self, context: np.ndarray | None, arms: Arms, rng: np.random.Generator) -> np.ndarray:
        return rng.random(len(arms))

    def _propensities_of(self, context: np.ndarray | None, arms: Arms, rows: np.ndarray) -> np.ndarray:
        return np.full(len(rows), 1.0 / len(arms))  # exact, and no Monte-Carlo draws to pay for


class Oracle(Policy):
    """Shows the truly most attractive candidates: its hook reads the round's truth."""

    name = "oracle"
    deterministic = True
    truth: np.ndarray | None = None

    def hook(self, arrival: Arrival) -> float:
        self.truth = arrival.attractiveness
        return 1.0

    def _scores(self, context: np.ndarray | None, arms: Arms, rng: np.random.Generator) -> np.ndarray:
        assert self.truth is not None and len(self.truth) == len(arms)
        return self.truth


class Recorder(UniformRandom):
    """Keeps every decision's context and every feedback batch."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.contexts: list[np.ndarray | None] = []
        self.batches: list[list[Feedback]] = []
        self.explores: list[float] = []

    def select(self, context: np.ndarray | None, arms: Arms, k: int, *, explore: float = 1.0) -> Any:
        self.contexts.append(context)
        self.explores.append(explore)
        return super().select(context, arms, k, explore=explore)

    def update(self, feedback: Any) -> None:
        self.batches.append(list(feedback))
        super().update(feedback)


def _z(a: SimulationResult, b: SimulationResult, metric: str = "reward") -> float:
    mean, se = paired_difference(a, b, metric, blocks=10)
    return mean / se


# ---------------------------------------------------------------------- the click model
def test_click_model_known_answers() -> None:
    model = ClickModel(position_decay=1.0)
    # odds 1 and 1, examination 1 and 1/2: W = 1.5 -> P = [1, 0.5] / 2.5, no click 1 / 2.5
    np.testing.assert_allclose(model.probabilities(np.array([0.5, 0.5])), [0.4, 0.2])
    assert model.expected(np.array([0.5, 0.5])) == pytest.approx(0.6)
    # alone at the top, an item is clicked with probability = its attractiveness
    assert model.expected(np.array([0.3])) == pytest.approx(0.3)
    np.testing.assert_allclose(model.examination(4), [1, 1 / 2, 1 / 3, 1 / 4])
    assert ClickModel(position_decay=0.0).examination(3).tolist() == [1.0, 1.0, 1.0]
    assert model.oracle(np.array([0.1, 0.4, 0.2, 0.3]), 2).tolist() == [1, 3]


def test_the_same_item_is_clicked_less_at_a_lower_position() -> None:
    model = ClickModel(position_decay=1.0)
    a, b = 0.2, 0.1
    rng = np.random.default_rng(0)
    uniforms = rng.random(20_000)
    top = sum(model.sample(model.probabilities(np.array([a, b])), u) == 0 for u in uniforms)
    lower = sum(model.sample(model.probabilities(np.array([b, a])), u) == 1 for u in uniforms)
    # exact: a at the top 0.25 / (1 + 0.25 + 0.0556) = 0.1915; below b 0.125 / 1.2361 = 0.1011
    assert model.probabilities(np.array([a, b]))[0] == pytest.approx(0.25 / (1 + 0.25 + 1 / 18))
    assert top / 20_000 == pytest.approx(0.1915, abs=0.01)
    assert lower / 20_000 == pytest.approx(0.1011, abs=0.01)
    assert top > 1.5 * lower


def test_zero_attractiveness_is_never_clicked_and_no_click_is_always_possible() -> None:
    model = ClickModel()
    zero = model.probabilities(np.zeros(5))
    assert zero.tolist() == [0.0] * 5
    assert all(model.sample(zero, u) == -1 for u in np.linspace(0, 0.999, 50))
    nearly_sure = model.probabilities(np.full(5, 0.999))
    assert 0 < 1 - nearly_sure.sum() < 0.01  # the no-click option never vanishes
    assert model.sample(nearly_sure, 0.9999) == -1


# ---------------------------------------------------------------------- the world and runs
def test_world_build_is_seeded_and_calibrated(data: Dataset, world: World) -> None:
    again = World.build(data, seed=0, users=200)
    assert np.array_equal(again.users, world.users) and np.array_equal(again.theta, world.theta)
    assert again.bias == world.bias
    other = World.build(data, seed=1, users=200)
    assert not np.array_equal(other.users, world.users)
    assert len(world.users) == 200 and world.observed.n_interactions < data.n_interactions
    assert world.config == SimulatorConfig(users=200)
    with pytest.raises(ValueError):
        SimulatorConfig(users=10, no_such_setting=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        World.build(data, SimulatorConfig(), users=10)


def test_same_seed_same_run_and_another_seed_another(world: World) -> None:
    a = run_policy(world, UniformRandom(seed=3), rounds=300, seed=1, progress=False)
    b = run_policy(world, UniformRandom(seed=3), rounds=300, seed=1, progress=False)
    c = run_policy(world, UniformRandom(seed=3), rounds=300, seed=2, progress=False)
    frame = a.to_frame()
    assert frame.equals(b.to_frame()) and np.array_equal(a.items, b.items)
    assert not np.array_equal(a.user, c.user) and not np.array_equal(a.items, c.items)
    assert len(frame) == 300 and a.items.shape == (300, 10)


def test_activity_arrivals_favour_heavy_users_and_bad_counts_are_refused(data: Dataset, world: World) -> None:
    heavy = World.build(data, seed=0, users=200, arrival="activity")
    result = run_policy(heavy, UniformRandom(seed=0), rounds=400, seed=1, progress=False)
    activity = np.diff(heavy.consumed.indptr)
    assert activity[result.user].mean() > 1.5 * activity.mean()
    uniform = run_policy(world, UniformRandom(seed=0), rounds=400, seed=1, progress=False)
    assert np.diff(world.consumed.indptr)[uniform.user].mean() < 1.3 * np.diff(world.consumed.indptr).mean()
    with pytest.raises(ValueError, match="rounds"):
        run_policy(world, UniformRandom(seed=0), rounds=-1, progress=False)
    with pytest.raises(ValueError, match="retrain_every"):
        run_pipeline(world, {"sources": [{"kind": "popularity"}]}, periods=1, retrain_every=0, progress=False)


def test_every_shown_item_gets_one_feedback_with_its_position_and_the_click(world: World) -> None:
    policy = Recorder(seed=0)
    result = run_policy(world, policy, rounds=200, k=5, seed=4, progress=False, explore=lambda arrival: 0.5)
    assert len(policy.batches) == 200 and set(policy.explores) == {0.5}
    assert np.all(result.explore == 0.5)
    for t, batch in enumerate(policy.batches):
        assert [f.position for f in batch] == list(range(5)) and all(f.shown for f in batch)
        assert [f.arm_id for f in batch] == list(world.item_ids[result.items[t]])
        rewards = [f.reward for f in batch]
        assert rewards == [float(p == result.click[t]) for p in range(5)]
        np.testing.assert_array_equal(batch[0].context, world.agent_users[result.user[t]])
        np.testing.assert_array_equal(batch[1].features, world.agent_items[result.items[t, 1]])
    assert result.reward.sum() > 0
    no_hook = run_policy(world, UniformRandom(seed=0), rounds=5, seed=4, progress=False)
    assert np.all(no_hook.explore == 1.0)


def test_shown_items_are_never_consumed_ones(world: World) -> None:
    result = run_policy(world, UniformRandom(seed=0), rounds=400, seed=5, progress=False)
    for t in range(len(result)):
        real = set(world.consumed[result.user[t]].indices.tolist())
        earlier = {int(result.items[s, result.click[s]]) for s in range(t)
                   if result.user[s] == result.user[t] and result.click[s] >= 0}
        assert not (set(result.items[t].tolist()) & (real | earlier))


def test_the_oracle_has_zero_regret_and_beats_random(world: World) -> None:
    oracle = Oracle()
    best = run_policy(world, oracle, rounds=ROUNDS, seed=1, progress=False, explore=oracle.hook)
    random = run_policy(world, UniformRandom(seed=0), rounds=ROUNDS, seed=1, progress=False)
    assert np.abs(best.regret).max() < 1e-12
    np.testing.assert_allclose(best.expected, best.oracle)
    assert np.all(random.regret >= 0) and random.regret.mean() > 0.05
    assert _z(best, random) > 3 and _z(best, random, "expected") > 3
    summary = best.summary()
    assert summary["rounds"] == ROUNDS and summary["regret"] == pytest.approx(0, abs=1e-9)
    assert 0.05 < random.summary()["ctr"] < 0.3  # a realistic click rate per slate


def test_policies_beat_random(world: World) -> None:
    from tastemaker.online import BetaThompson, DiagLinUCB, LinUCB, RandomPolicy

    # Settings on the reward's scale (a click per slate ~10%): the offline prior is trusted
    # (ridge reg 100, or 100 pseudo-impressions at the prior's rate) and the bonus is small.
    # With the defaults (alpha 1, reg 1) the bonus dwarfs every difference in click rates and
    # the linear policies explore every arm about evenly, i.e. play about as random does.
    random = run_policy(world, RandomPolicy(seed=0), rounds=ROUNDS, seed=1, progress=False)
    for policy in (DiagLinUCB(seed=0, alpha=0.1, reg=100.0), LinUCB(seed=0, alpha=0.1, reg=100.0),
                   BetaThompson(seed=0, prior_strength=100.0, propensity_draws=1)):
        result = run_policy(world, policy, rounds=ROUNDS, seed=1, progress=False)
        assert result.summary()["clicks"] > random.summary()["clicks"], policy
        assert _z(result, random) > 3, (policy, paired_difference(result, random))


def test_novelty_seekers_click_novel_items_when_exploring(world: World, data: Dataset) -> None:
    user = int(np.argmax(world.theta))
    known = world.known_categories[user]
    novel = np.flatnonzero(np.asarray(world.categories[:, ~known].sum(axis=1)).ravel() > 0)
    familiar = np.setdiff1d(np.flatnonzero(np.asarray(world.categories.sum(axis=1)).ravel() > 0), novel)
    assert len(novel) and len(familiar)
    items = np.concatenate([novel[:5], familiar[:5]])
    calm = world.attractiveness(user, items, 0.0, known)
    curious = world.attractiveness(user, items, float(world.theta[user]), known)
    assert np.all(curious[:5] > calm[:5]) and np.allclose(curious[5:], calm[5:])

    # θ ~ Beta(1, 1), a strong bonus and a high click rate (for clicks enough to compare)
    seekers = World.build(data, seed=0, users=200, novelty_weight=4.0, novelty_a=1.0, novelty_b=1.0, ctr=0.5)
    result = run_policy(seekers, UniformRandom(seed=0), rounds=ROUNDS, seed=2, progress=False)
    clicked = result.click >= 0
    exploring, calm_rounds = clicked & (result.intent > 0), clicked & (result.intent == 0)
    assert exploring.sum() > 200 and calm_rounds.sum() > 200
    share_exploring, share_calm = result.novel_click[exploring].mean(), result.novel_click[calm_rounds].mean()
    se = np.sqrt(share_exploring * (1 - share_exploring) / exploring.sum()
                 + share_calm * (1 - share_calm) / calm_rounds.sum())
    assert share_exploring > 1.5 * share_calm and (share_exploring - share_calm) / se > 3  # measured: 0.31 vs 0.16
    # the recorded state follows the propensity: high-θ users explore more of their sessions
    high = result.theta > np.median(result.theta)
    assert result.exploring[high].mean() > result.exploring[~high].mean()
    assert np.all(result.intent[result.exploring] == result.theta[result.exploring])


# ---------------------------------------------------------------------- metrics
def test_gini_and_coverage_known_answers() -> None:
    assert gini(np.array([1, 1, 1, 1])) == 0.0
    assert gini(np.array([0, 0, 0, 4])) == pytest.approx(0.75)  # one item: 1 - 1/n
    assert gini(np.array([3, 1, 2])) == pytest.approx(4 / 18)  # (-2·1 + 0·2 + 2·3) / (3·6)
    assert gini(np.zeros(3)) == 0.0 and coverage(np.zeros(0)) == 0.0
    assert coverage(np.array([0, 1, 0, 3])) == 0.5
    topk = np.array([[0, 1, 2], [0, 1, -1], [0, 5, 6]])
    counts = np.bincount(topk[topk >= 0], minlength=8)
    assert gini(counts) == pytest.approx(metrics.gini(topk, 8))
    assert coverage(counts) == pytest.approx(metrics.coverage(topk, 8))


def test_running_gini_and_coverage_are_those_of_the_impressions(world: World) -> None:
    result = run_policy(world, UniformRandom(seed=0), rounds=300, seed=1, progress=False)
    for t in (0, 99, 299):
        shown = result.items[: t + 1]
        counts = np.bincount(shown[shown >= 0], minlength=world.n_items)
        assert result.gini[t] == pytest.approx(gini(counts)) and result.coverage[t] == pytest.approx(coverage(counts))
    assert np.all(np.diff(result.coverage) >= 0)
    x, y = result.series("cumulative_reward")
    assert x[-1] == 300 and y[-1] == result.reward.sum()
    with pytest.raises(ValueError, match="per period"):
        result.series("period_gini")


# ---------------------------------------------------------------------- the pipeline loop
def test_pipeline_loop_grows_the_data_by_its_clicks(world: World) -> None:
    config = {"sources": [{"kind": "model", "model": "als", "params": {"embedding_size": 16, "epochs": 5}}],
              "rerankers": [{"kind": "popularity", "weight": 0.5}]}
    result = run_pipeline(world, config, periods=2, users_per_period=60, k=10, seed=0, progress=False)
    assert result.dataset is not None and len(result) == 120
    assert result.period.tolist() == [0] * 60 + [1] * 60
    clicks = int(result.reward.sum())
    assert clicks > 0
    assert result.dataset.n_interactions == world.observed.n_interactions + clicks
    added = result.dataset.interactions[result.dataset.interactions["event_type"] == "click"]
    shown = result.items[result.click >= 0, result.click[result.click >= 0]]
    assert sorted(added["item"].tolist()) == sorted(shown.tolist())
    assert sorted(added["user"].tolist()) == sorted(world.users[result.user[result.click >= 0]].tolist())
    table = result.per_period()
    assert table.index.tolist() == [0, 1] and table["slates"].tolist() == [60, 60]
    assert table["clicks"].sum() == clicks and np.all(table["regret"] >= 0)
    # within a period a user is served once, and never an item they consumed
    for p in (0, 1):
        users = result.user[result.period == p]
        assert len(set(users.tolist())) == 60
    for t in range(len(result)):
        assert not set(result.items[t][result.items[t] >= 0].tolist()) & set(world.consumed[result.user[t]].indices.tolist())


def test_plot_writes_a_png(world: World, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    runs = {name: run_policy(world, UniformRandom(seed=seed), rounds=100, seed=1, progress=False)
            for name, seed in (("a", 0), ("b", 1))}
    path = plot(runs, tmp_path / "sim" / "runs.png", title="two random runs")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000
    by_period = plot(runs, tmp_path / "periods.png", metrics=("reward", "period_gini", "coverage"), by="period")
    assert by_period.stat().st_size > 5_000
