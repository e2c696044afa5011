"""Bandit policies: the conformance suite for each, and known answers."""

from __future__ import annotations

import numpy as np
import pytest

from tastemaker.online import (
    POLICIES,
    UCB1,
    Arms,
    BetaThompson,
    DiagLinUCB,
    EpsilonGreedy,
    Feedback,
    LinearThompson,
    LinUCB,
    Policy,
    PolicyError,
    PositionThompson,
    RandomPolicy,
    SlateThompson,
)
from tastemaker.testing.online import PolicyConformance, problem


class TestRandom(PolicyConformance):
    def make_policy(self, seed: int) -> Policy:
        return RandomPolicy(seed=seed)


class TestEpsilonGreedy(PolicyConformance):
    def make_policy(self, seed: int) -> Policy:
        return EpsilonGreedy(seed=seed, epsilon=0.2)


class TestUCB1(PolicyConformance):
    def make_policy(self, seed: int) -> Policy:
        return UCB1(seed=seed)


class TestBetaThompson(PolicyConformance):
    def make_policy(self, seed: int) -> Policy:
        return BetaThompson(seed=seed, propensity_draws=100)


class TestSlateThompson(PolicyConformance):
    def make_policy(self, seed: int) -> Policy:
        return SlateThompson(seed=seed, propensity_draws=100)


class TestPositionThompson(PolicyConformance):
    def make_policy(self, seed: int) -> Policy:
        return PositionThompson(seed=seed, propensity_draws=100)


class TestLinUCB(PolicyConformance):
    def make_policy(self, seed: int) -> Policy:
        return LinUCB(seed=seed, alpha=0.5)


class TestDiagLinUCB(PolicyConformance):
    def make_policy(self, seed: int) -> Policy:
        return DiagLinUCB(seed=seed, alpha=0.5)


class TestLinearThompson(PolicyConformance):
    def make_policy(self, seed: int) -> Policy:
        return LinearThompson(seed=seed, alpha=0.3, propensity_draws=100)


def test_every_policy_has_a_suite() -> None:
    suites = {cls().make_policy(0).name for cls in PolicyConformance.__subclasses__()}
    assert suites == set(POLICIES)


# ---------------------------------------------------------------------- known answers
def _arms(n: int, features: np.ndarray | None = None) -> Arms:
    return Arms.of([f"a{i}" for i in range(n)], features)


def test_ucb1_index_by_hand() -> None:
    policy = UCB1()
    # a0: 4 shown, 2 rewards; a1: 1 shown, 0 rewards; a2 never shown -> first
    policy.update([Feedback("a0", 1.0), Feedback("a0", 1.0), Feedback("a0", 0.0), Feedback("a0", 0.0), Feedback("a1", 0.0)])
    scores = policy._scores(None, _arms(3), policy.rng)
    total = 5.0
    assert scores[0] == pytest.approx(0.5 + np.sqrt(2 * np.log(total) / 4))
    assert scores[1] == pytest.approx(0.0 + np.sqrt(2 * np.log(total) / 1))
    assert scores[2] == np.inf
    assert policy.select(None, _arms(3), 3).arm_ids.tolist() == ["a2", "a1", "a0"]


def test_epsilon_greedy_propensities_are_exact() -> None:
    policy = EpsilonGreedy(epsilon=0.3, seed=1)
    policy.update([Feedback("a2", 1.0), Feedback("a1", 0.0)])
    arms = _arms(5)
    dist = policy.distribution(None, arms, 2)
    # greedy slate: a2 (mean 1), then a0 (unseen: mean 0, earlier than a1's 0 mean... ties by row)
    expected = np.full((5, 2), 0.3 / 5)
    expected[2, 0] += 0.7
    expected[0, 1] += 0.7
    np.testing.assert_allclose(dist, expected)
    counts = np.zeros((5, 2))
    for _ in range(4000):
        rows = policy.select(None, arms, 2).rows
        counts[rows, [0, 1]] += 1
    np.testing.assert_allclose(counts / 4000, expected, atol=0.03)


def test_linucb_is_ridge_regression_towards_the_item_vector() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(2, 3))
    xs = rng.normal(size=(10, 3))
    rewards = rng.random(10)
    policy = LinUCB(alpha=0.7, reg=2.0)
    policy.update([Feedback("a0", float(r), True, x) for x, r in zip(xs, rewards, strict=True)])
    a = 2.0 * np.eye(3) + xs.T @ xs
    theta = np.linalg.solve(a, xs.T @ rewards + 2.0 * v[0])
    x = rng.normal(size=3)
    arms = _arms(2, v)
    mean, width = policy.estimates(x, arms)
    assert mean[0] == pytest.approx(theta @ x)
    assert width[0] == pytest.approx(np.sqrt(x @ np.linalg.solve(a, x)))
    # an arm never shown: the offline model's score, the widest bonus
    assert mean[1] == pytest.approx(v[1] @ x)
    assert width[1] == pytest.approx(np.sqrt(x @ x / 2.0))
    assert policy._scores(x, arms, policy.rng)[0] == pytest.approx(theta @ x + 0.7 * width[0])


def test_diag_linucb_keeps_two_sums_per_dimension() -> None:
    d = 4
    rng = np.random.default_rng(1)
    v = rng.normal(size=(1, d))
    xs, rewards = rng.normal(size=(6, d)), rng.random(6)
    policy = DiagLinUCB(alpha=0.5, reg=1.5)
    policy.update([Feedback("a0", float(r), True, x) for x, r in zip(xs, rewards, strict=True)])
    assert policy.stats["a0"].shape == (1 + 2 * d,)  # O(d) state and update, no d x d matrix
    dsum, bsum = (xs**2).sum(axis=0), (rewards[:, None] * xs).sum(axis=0)
    x = rng.normal(size=d)
    theta = (bsum + 1.5 * v[0]) / (1.5 + dsum)
    mean, width = policy.estimates(x, _arms(1, v))
    assert mean[0] == pytest.approx(theta @ x)
    assert width[0] == pytest.approx(np.sqrt((x**2 / (1.5 + dsum)).sum()))


@pytest.mark.parametrize("cls", [LinUCB, DiagLinUCB])
def test_merged_linear_shards_estimate_what_one_policy_does(cls: type[Policy]) -> None:
    contexts, arms, vectors = problem()
    rng = np.random.default_rng(4)
    whole, left, right = cls(), cls(), cls()
    for t in range(200):
        x = contexts[t % len(contexts)]
        r = int(rng.integers(len(arms)))
        f = Feedback(f"i{r}", float(rng.random() < 0.4), True, x, vectors[r])
        whole.update([f])
        (left if rng.random() < 0.5 else right).update([f])
    left.merge(right)
    for x in contexts[:10]:
        np.testing.assert_allclose(left.estimates(x, arms), whole.estimates(x, arms), rtol=1e-9, atol=1e-12)
    with pytest.raises(PolicyError, match="different policy or config"):
        left.merge(cls(alpha=9.0))


def test_in_slate_thompson_draws_each_position_from_its_own_sample() -> None:
    # two equally uncertain arms per "taste": one draw per slate shows a draw's top k together,
    # in-slate sampling mixes draws, so slates vary more
    arms = _arms(12)
    per_slate, in_slate = BetaThompson(seed=0), SlateThompson(seed=0)
    distinct_a = {tuple(per_slate.select(None, arms, 3).arm_ids) for _ in range(200)}
    distinct_b = {tuple(in_slate.select(None, arms, 3).arm_ids) for _ in range(200)}
    assert len(distinct_b) > 0.8 * len(distinct_a)
    # a confidently best arm leads every slate, whatever the position's draw
    confident = SlateThompson(seed=0)
    confident.update([Feedback("a5", 1.0)] * 200 + [Feedback(f"a{i}", 0.0) for i in range(12) if i != 5 for _ in range(20)])
    assert all(confident.select(None, arms, 3).arm_ids[0] == "a5" for _ in range(50))


def test_position_thompson_learns_each_position_apart() -> None:
    policy = PositionThompson(seed=0)
    policy.update([Feedback("a1", 1.0, position=0)] * 50 + [Feedback("a1", 0.0, position=1)] * 50)
    assert set(policy.stats) == {"a1@0", "a1@1"}
    assert policy.stats["a1@0"].tolist() == [50.0, 50.0]


def test_exploration_scale_zero_is_greedy() -> None:
    contexts, arms, vectors = problem()
    for policy in (LinUCB(alpha=2.0), LinearThompson(alpha=2.0, seed=3), BetaThompson(seed=2)):
        x = contexts[0]
        greedy = [policy.select(x, arms, 3, explore=0.0).arm_ids.tolist() for _ in range(5)]
        assert all(g == greedy[0] for g in greedy)
    with pytest.raises(PolicyError, match="explore"):
        UCB1().select(None, arms, 2, explore=-1.0)


def test_beta_prior_strength_reads_the_prior_as_a_click_rate() -> None:
    arms = Arms.of(["a", "b"], prior=np.array([0.9, 0.1]))
    plain, hybrid = BetaThompson(seed=0), BetaThompson(seed=0, prior_strength=200.0)
    draws = np.array([hybrid._scores(None, arms, hybrid.rng) for _ in range(200)])
    np.testing.assert_allclose(draws.mean(axis=0), [(1 + 180) / 202, (1 + 20) / 202], atol=0.01)
    assert plain.distribution(None, arms, 1)[0, 0] == pytest.approx(0.5, abs=0.1)  # uniform prior: a coin


def test_auto_prior_scale_puts_the_offline_score_in_the_priors_units() -> None:
    rng = np.random.default_rng(3)
    v, x = rng.normal(size=(6, 4)), rng.normal(size=4)
    arms = Arms.of([f"a{i}" for i in range(6)], v, 0.02 * (v @ x))  # a calibrated prior: 2% of the dot product
    mean, _ = LinUCB(prior_scale="auto").estimates(x, arms)
    np.testing.assert_allclose(mean, 0.02 * (v @ x))
    np.testing.assert_allclose(LinUCB().estimates(x, arms)[0], v @ x)  # scale 1: the raw dot product
