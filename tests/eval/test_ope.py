"""Off-policy evaluation: hand-computed answers for every estimator, identities between them,
unbiasedness on a seeded synthetic problem, bad input, the readers, the reward model, and
equality with obp 0.4.1 (a dev dependency) on the Open Bandit Dataset."""

from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tastemaker.eval import ope
from tastemaker.eval.ope import BanditLog, OPEError
from tastemaker.online.base import Arms, Policy
from tastemaker.protocols import Event

# ---------------------------------------------------------------------- a tiny log
# 4 rounds, 2 actions, one position.
#   round  action  reward  pscore  π_e(0), π_e(1)   w = π_e(a)/pscore   w·r
#     0      0       1      0.50    0.8   0.2        1.6                1.6
#     1      1       0      0.25    0.5   0.5        2.0                0
#     2      0       0      0.50    1.0   0.0        2.0                0
#     3      1       1      0.75    0.4   0.6        0.8                0.8
# IPS = 2.4 / 4 = 0.6;  SNIPS = 2.4 / (1.6 + 2 + 2 + 0.8 = 6.4) = 0.375
# q̂(a) per round: (0.5, 0.1), (0.2, 0.4), (0.3, 0.3), (0.6, 0.9)
#   q̂(π) = 0.8·0.5 + 0.2·0.1 = 0.42, 0.5·0.2 + 0.5·0.4 = 0.30, 0.30, 0.4·0.6 + 0.6·0.9 = 0.78
#   DM = 1.80 / 4 = 0.45
#   factual q̂ = 0.5, 0.4, 0.3, 0.9; residual r - q̂ = 0.5, -0.4, -0.3, 0.1
#   w·residual = 0.8, -0.8, -0.6, 0.08 (sum -0.52);  DR = (1.80 - 0.52) / 4 = 0.32
#   switch-DR, tau = 1.7 keeps rounds 0 and 3: (1.80 + 0.8 + 0.08) / 4 = 0.67
# replay of the deterministic choices (0, 0, 0, 1): rounds 0, 2, 3 match, rewards 1, 0, 1 -> 2/3
TINY = BanditLog(action=[0, 1, 0, 1], reward=[1, 0, 0, 1], pscore=[0.5, 0.25, 0.5, 0.75], position=[0, 0, 0, 0], n_actions=2)
PI = np.array([[0.8, 0.2], [0.5, 0.5], [1.0, 0.0], [0.4, 0.6]])[:, :, None]
Q = np.array([[0.5, 0.1], [0.2, 0.4], [0.3, 0.3], [0.6, 0.9]])[:, :, None]
CHOICE = np.eye(2)[[0, 0, 0, 1]][:, :, None]


def test_known_answers_on_a_tiny_log() -> None:
    assert ope.ips(TINY, PI) == pytest.approx(0.6)
    assert ope.snips(TINY, PI) == pytest.approx(0.375)
    assert ope.dm(TINY, PI, Q) == pytest.approx(0.45)
    assert ope.dr(TINY, PI, Q) == pytest.approx(0.32)
    assert ope.switch_dr(TINY, PI, Q, tau=1.7) == pytest.approx(0.67)
    assert ope.replay(TINY, CHOICE) == pytest.approx(2 / 3)


def test_known_standard_errors() -> None:
    # IPS terms 1.6, 0, 0, 0.8 (mean 0.6): squared deviations 1, 0.36, 0.36, 0.04 sum to 1.76;
    # se = sqrt(1.76 / 3 / 4) = 0.382971
    e = ope.estimate(TINY, PI, "ips")
    assert (e.value, e.n, e.method) == (pytest.approx(0.6), 4, "normal")
    assert e.se == pytest.approx(math.sqrt(1.76 / 12))
    assert (e.ci_low, e.ci_high) == pytest.approx((0.6 - 1.959964 * e.se, 0.6 + 1.959964 * e.se))
    # SNIPS, delta method: (w·r - 0.375·w) / mean(w) = (1.6 - 0.6, -0.75, -0.75, 0.8 - 0.3) / 1.6
    #   = 0.625, -0.46875, -0.46875, 0.3125; squares sum to 0.927734375; se = sqrt(0.92773 / 3 / 4)
    assert ope.estimate(TINY, PI, "snips").se == pytest.approx(math.sqrt(0.927734375 / 12))


def test_bootstrap_interval_is_seeded_and_brackets_the_estimate() -> None:
    log, dist, _ = synthetic(2000, seed=3)
    a = ope.estimate(log, dist, "snips", bootstrap=200, seed=7)
    b = ope.estimate(log, dist, "snips", bootstrap=200, seed=7)
    assert a == b and a.method == "bootstrap"
    assert a.ci_low < a.value < a.ci_high
    normal = ope.estimate(log, dist, "snips")
    assert a.se == pytest.approx(normal.se, rel=0.25)  # the delta method and the bootstrap agree


def test_slate_ips_sums_positions_per_slate() -> None:
    # two slates of two positions, logged uniformly over the two orders (pscore 0.5):
    #   slate 0: item 0 at 0 (click), item 1 at 1 (click); slate 1: item 1 at 0, item 0 at 1 (click)
    # the evaluation policy always shows (0, 1): w = 2, 2 in slate 0 and 0, 0 in slate 1
    # slate value = ((2·1 + 2·1) + 0) / 2 slates = 2 clicks per slate; per row, IPS = 4 / 4 = 1
    log = BanditLog(action=[0, 1, 1, 0], reward=[1, 1, 0, 1], pscore=[0.5] * 4, position=[0, 1, 0, 1],
                    n_actions=2, len_list=2, slate_id=[10, 10, 11, 11])
    dist = np.zeros((4, 2, 2))
    dist[:, 0, 0] = dist[:, 1, 1] = 1.0
    assert ope.slate_ips(log, dist) == pytest.approx(2.0)
    assert ope.ips(log, dist) == pytest.approx(1.0)
    assert ope.estimate(log, dist, "slate-ips").n == 2


# ---------------------------------------------------------------------- identities
def test_identities_between_estimators() -> None:
    log, dist, q = synthetic(500, seed=1)
    # DR = IPS when the reward model is 0
    assert ope.dr(log, dist, np.zeros_like(q)) == pytest.approx(ope.ips(log, dist), abs=1e-12)
    # DR = DM when the evaluation policy never shows the logged action (every weight 0)
    blind = np.ones_like(dist)
    blind[np.arange(len(log)), log.action, log.position] = 0.0
    blind /= blind.sum(axis=1, keepdims=True)
    assert ope.dr(log, blind, q) == pytest.approx(ope.dm(log, blind, q), abs=1e-12)
    # on-policy (the evaluation policy is the logging one, w = 1): IPS = SNIPS = the mean reward
    same = LOGGING[log.context[:, 1].astype(int)][:, :, None]
    assert ope.ips(log, same) == pytest.approx(log.reward.mean()) == pytest.approx(ope.snips(log, same))
    # SNIPS = IPS when the weights average 1, whatever they are: w = 0.25/0.5, 0.75/0.5 = 0.5, 1.5
    two = BanditLog([0, 1], [0.3, 0.8], [0.5, 0.5], [0, 0], n_actions=2)
    pi = np.array([[0.25, 0.75], [0.25, 0.75]])[:, :, None]
    assert ope.snips(two, pi) == pytest.approx(ope.ips(two, pi)) == pytest.approx((0.5 * 0.3 + 1.5 * 0.8) / 2)
    w = ope._weights(log, dist)
    assert abs(w.mean() - 1) > 0.05 and ope.snips(log, dist) != pytest.approx(ope.ips(log, dist))  # and only then
    # switch-DR: tau = inf is DR, a tau below every weight is DM
    assert ope.switch_dr(log, dist, q, tau=math.inf) == pytest.approx(ope.dr(log, dist, q), abs=1e-12)
    assert ope.switch_dr(log, dist, q, tau=w.min() / 2) == pytest.approx(ope.dm(log, dist, q), abs=1e-12)
    # DM with the true reward function is (nearly) the truth; DR keeps it
    assert ope.estimate(log, dist, "dm", estimated_rewards=q).value == pytest.approx(ope.dm(log, dist, q))


def test_slate_ips_is_len_list_times_ips_when_every_slate_is_full() -> None:
    rng = np.random.default_rng(0)
    n_slates, len_list, n_actions = 50, 3, 5
    action = np.concatenate([rng.permutation(n_actions)[:len_list] for _ in range(n_slates)])
    log = BanditLog(action, rng.integers(0, 2, n_slates * len_list), np.full(n_slates * len_list, 1 / 5),
                    np.tile(np.arange(len_list), n_slates), n_actions, len_list, slate_id=np.repeat(np.arange(n_slates), len_list))
    dist = rng.dirichlet(np.ones(n_actions), size=(n_slates * len_list, len_list)).transpose(0, 2, 1)
    assert ope.slate_ips(log, dist) == pytest.approx(len_list * ope.ips(log, dist))


# ---------------------------------------------------------------------- unbiasedness
MU = np.array([[0.10, 0.30, 0.60], [0.50, 0.20, 0.05]])  # true click rate by (user type, action)
LOGGING = np.array([[0.6, 0.3, 0.1], [0.2, 0.3, 0.5]])  # logging policy by user type: bad on purpose
TARGET = np.array([[0.1, 0.2, 0.7], [0.7, 0.2, 0.1]])  # evaluation policy by user type
P_TYPE = np.array([0.4, 0.6])
TRUE_VALUE = float(P_TYPE @ (TARGET * MU).sum(axis=1))  # 0.4·0.49 + 0.6·0.395 = 0.433


def synthetic(n: int, seed: int, logging: np.ndarray = LOGGING) -> tuple[BanditLog, np.ndarray, np.ndarray]:
    """A seeded log from ``logging`` on two user types, the target's action_dist, the true q."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(2, size=n, p=P_TYPE)
    action = (rng.random(n)[:, None] > np.cumsum(logging[kind], axis=1)).sum(axis=1)
    reward = (rng.random(n) < MU[kind, action]).astype(float)
    log = BanditLog(action, reward, logging[kind, action], np.zeros(n, int), 3, context=np.eye(2)[kind])
    return log, TARGET[kind][:, :, None], MU[kind][:, :, None]


def test_ips_and_dr_are_unbiased_on_a_seeded_problem() -> None:
    assert TRUE_VALUE == pytest.approx(0.433)
    log, dist, _ = synthetic(20_000, seed=11)
    q = ope.fit_reward_model(log, folds=5, l2=1e-3, interactions=True)
    naive = log.reward.mean()  # what the logging policy earned: far from the target's value
    for name in ("ips", "snips", "dr"):
        e = ope.estimate(log, dist, name, estimated_rewards=q)
        assert abs(e.value - TRUE_VALUE) < 3 * e.se, (name, e, TRUE_VALUE)
        assert abs(naive - TRUE_VALUE) > 10 * e.se  # so the check has power
        assert e.ci_low < TRUE_VALUE < e.ci_high
    # a fitted model on the right features: DM is nearly exact too, with a far smaller se
    dm = ope.estimate(log, dist, "dm", estimated_rewards=q)
    assert abs(dm.value - TRUE_VALUE) < 0.01 and dm.se < ope.estimate(log, dist, "ips").se / 2


def test_replay_is_unbiased_for_uniform_logging() -> None:
    uniform = np.full((2, 3), 1 / 3)
    log, _, _ = synthetic(30_000, seed=5, logging=uniform)
    best = np.eye(3)[np.argmax(MU, axis=1)]  # deterministic: action 2 for type 0, action 0 for type 1
    kind = log.context[:, 1].astype(int)
    dist = best[kind][:, :, None]
    truth = float(P_TYPE @ MU.max(axis=1))  # 0.4·0.6 + 0.6·0.5 = 0.54
    e = ope.estimate(log, dist, "replay")
    assert abs(e.value - truth) < 3 * e.se and e.n == 30_000
    assert ope.replay(log, dist) == pytest.approx(ope.ips(log, dist), abs=4 * e.se)
    # a random evaluation policy is replayed by seeded draws
    random = ope.replay(log, TARGET[kind][:, :, None], seed=1)
    assert abs(random - TRUE_VALUE) < 0.02 and random == ope.replay(log, TARGET[kind][:, :, None], seed=1)


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pscore": [0.5, 0.5, 0.0, 0.5]}, r"pscore\[2\] must be in \(0, 1\], got 0\.0"),
        ({"pscore": [0.5, 1.5, 0.5, 0.5]}, r"pscore\[1\] must be in \(0, 1\]"),
        ({"action": [0, 1, 2, 0]}, r"action\[2\] = 2 is outside \[0, n_actions=2\)"),
        ({"action": [0.5, 1, 0, 0]}, r"action must hold integers"),
        ({"position": [0, 1, 0, 0]}, r"position\[1\] = 1 is outside \[0, len_list=1\)"),
        ({"reward": [0, np.nan, 0, 0]}, r"reward\[1\] must be finite"),
        ({"reward": [0, 1, 0]}, r"reward has 3 rows, action has 4"),
        ({"context": np.array([[0.0], [1.0], [np.inf], [0.0]])}, r"context\[2\] contains NaN"),
        ({"context": np.zeros((3, 2))}, r"context must be \(4, d\)"),
        ({"n_actions": 0}, r"n_actions must be a positive integer"),
        ({"action_ids": ["a", "a"]}, r"action_ids must be unique"),
        ({"action_ids": ["a"]}, r"action_ids has 1 ids for n_actions=2"),
    ],
)
def test_bad_logs_name_the_field_and_index(change: dict[str, Any], message: str) -> None:
    fields = {"action": [0, 1, 0, 1], "reward": [1, 0, 0, 1], "pscore": [0.5, 0.25, 0.5, 0.75], "position": [0] * 4, "n_actions": 2}
    with pytest.raises(OPEError, match=message):
        BanditLog(**{**fields, **change})


def test_bad_estimator_input() -> None:
    with pytest.raises(OPEError, match=r"action_dist must be \(n_rounds, n_actions, len_list\) = \(4, 2, 1\)"):
        ope.ips(TINY, PI[:, :, 0])
    over = PI.copy()
    over[3, 1, 0] = 0.9
    with pytest.raises(OPEError, match=r"action_dist\[3, :, 0\] sums to 1\.3"):
        ope.ips(TINY, over)
    negative = PI.copy()
    negative[1, 0, 0] = -0.5
    with pytest.raises(OPEError, match=r"action_dist\[1\] has a probability outside \[0, 1\]"):
        ope.ips(TINY, negative)
    with pytest.raises(OPEError, match="needs estimated_rewards"):
        ope.estimate(TINY, PI, "dr")
    with pytest.raises(OPEError, match=r"estimated_rewards\[0\] contains NaN"):
        ope.dm(TINY, PI, np.where(np.arange(4)[:, None, None] == 0, np.nan, Q))
    with pytest.raises(OPEError, match="slate-ips needs log.slate_id"):
        ope.slate_ips(TINY, PI)
    with pytest.raises(OPEError, match="unknown estimator 'ipw'"):
        ope.estimate(TINY, PI, "ipw")  # type: ignore[arg-type]
    with pytest.raises(OPEError, match="replay: no logged action matches"):
        ope.replay(TINY, np.eye(2)[[1, 0, 1, 0]][:, :, None])
    with pytest.raises(OPEError, match="tau must be a number >= 0"):
        ope.switch_dr(TINY, PI, Q, tau=-1)
    with pytest.raises(OPEError, match="alpha must be in"):
        ope.estimate(TINY, PI, "ips", alpha=1.0)


# ---------------------------------------------------------------------- reward model
def test_smoothed_means_without_context() -> None:
    # action 0: rewards 1, 1; action 1: 0, 1; mean 0.75; smoothing 2:
    #   q(0) = (2 + 2·0.75) / (2 + 2) = 0.875, q(1) = (1 + 1.5) / 4 = 0.625; position 1 (no rows): 0.75
    log = BanditLog([0, 0, 1, 1], [1, 1, 0, 1], [0.5] * 4, [0] * 4, n_actions=2, len_list=2)
    q = ope.fit_reward_model(log, smoothing=2.0)
    assert q.shape == (4, 2, 2)
    assert np.allclose(q[:, :, 0], [0.875, 0.625]) and np.allclose(q[:, :, 1], 0.75)


def test_logistic_model_recovers_the_click_rates() -> None:
    log, _, truth = synthetic(20_000, seed=2)
    q = ope.fit_reward_model(log, l2=1e-3)
    # an additive logit over (type, action) cannot express MU (the best action flips with the
    # type); the model with context ⊗ action can
    assert np.abs(q - truth).max() > 0.2
    q_int = ope.fit_reward_model(log, l2=1e-3, interactions=True)
    assert np.abs(q_int - truth).max() < 0.05  # the smallest cell has ~800 rows: se about 0.017
    # that model is saturated, so its maximum likelihood is each (type, action) cell's mean click
    kind = log.context[:, 1].astype(int)
    for t in range(2):
        for a in range(3):
            cell = (kind == t) & (log.action == a)
            assert q_int[np.flatnonzero(kind == t)[0], a, 0] == pytest.approx(log.reward[cell].mean(), abs=1e-3)


def test_cross_fitting_never_scores_a_row_with_its_own_reward() -> None:
    log, _, _ = synthetic(400, seed=4)
    flipped = BanditLog(log.action, np.where(np.arange(400) == 0, 1 - log.reward, log.reward), log.pscore,
                        log.position, log.n_actions, context=log.context)
    crossed = ope.fit_reward_model(log, folds=4, l2=0.1), ope.fit_reward_model(flipped, folds=4, l2=0.1)
    assert np.array_equal(crossed[0][0], crossed[1][0])
    assert not np.allclose(crossed[0][1:], crossed[1][1:])  # the other folds did see it
    in_sample = ope.fit_reward_model(log, l2=0.1), ope.fit_reward_model(flipped, l2=0.1)
    assert not np.allclose(in_sample[0][0], in_sample[1][0])
    with pytest.raises(OPEError, match="rewards in \\[0, 1\\]"):
        ope.fit_reward_model(BanditLog([0], [2.0], [1.0], [0], 1, context=[[1.0]]))


# ---------------------------------------------------------------------- events
def _impression(user: str, item: str, request: str, position: int, propensity: float, **extra: Any) -> Event:
    context = {"request_id": request, "position": position, "propensity": propensity, "policy": "diag-linucb",
               "policy_version": 3, **extra}
    return Event(user, item, "impression", 0.0, 1.0, context)


EVENTS = [
    _impression("u1", "10", "r1", 0, 0.5),
    _impression("u1", "2", "r1", 1, 0.25),
    Event("u1", "2", "click", 1.0, 2.0, {"request_id": "r1"}),
    _impression("u2", "10", "r2", 0, 1.0),
    _impression("u2", "2", "r2", 1, 0.5),
    _impression("u2", "2", "r2", 1, 0.5),  # a retried write: counted once
    Event("u2", "10", "conversion", 1.0, 3.0, {"request_id": "r2"}),
    Event("u2", "2", "click", 1.0, 3.0, {}),  # no request id: not attributable
    Event("u2", "2", "like", 1.0, 3.0, {"request_id": "r2"}),  # a reward only if asked for
    Event("u3", "7", "click", 1.0, 3.0, {"request_id": "r9"}),  # no such impression
]


def test_log_from_events() -> None:
    read = ope.log_from_events(EVENTS)
    log = read.log
    assert log.action_ids.tolist() == ["2", "10"]  # numeric order
    assert log.action.tolist() == [1, 0, 1, 0]
    assert log.reward.tolist() == [0.0, 1.0, 1.0, 0.0]
    assert log.pscore.tolist() == [0.5, 0.25, 1.0, 0.5]
    assert log.position.tolist() == [0, 1, 0, 1] and log.len_list == 2
    assert log.slate_id.tolist() == [0, 0, 1, 1]
    assert read.user_ids.tolist() == ["u1", "u1", "u2", "u2"] and read.request_ids.tolist() == ["r1", "r1", "r2", "r2"]
    assert read.policies.tolist() == ["diag-linucb"] * 4 and read.policy_versions.tolist() == [3] * 4
    assert ope.log_from_events(EVENTS, reward_types=("click", "conversion", "like")).log.reward.tolist() == [0, 1, 1, 1]


def test_log_from_events_names_the_bad_event() -> None:
    bad = [EVENTS[0], Event("u", "1", "impression", 0.0, 0.0, {"request_id": "r", "position": 0, "policy": "p", "policy_version": 1})]
    with pytest.raises(OPEError, match=r"events\[1\] \(impression\): context.propensity is missing"):
        ope.log_from_events(bad)
    with pytest.raises(OPEError, match=r"events\[0\] \(impression\): context.propensity must be in \(0, 1\]"):
        ope.log_from_events([_impression("u", "1", "r", 0, 0.0)])
    with pytest.raises(OPEError, match=r"events\[0\] \(impression\): context.position must be an integer"):
        ope.log_from_events([_impression("u", "1", "r", -1, 0.5)])
    with pytest.raises(OPEError, match="no impression events"):
        ope.log_from_events(EVENTS[2:3])


def test_log_from_store(tmp_path: Path) -> None:
    from tastemaker.store import open_store

    with open_store(tmp_path / "events.db") as store:
        store.append_events(EVENTS)
        read = ope.log_from_store(store, page=3)  # several pages
    assert read.log.reward.tolist() == [0.0, 1.0, 1.0, 0.0] and read.log.slate_id.tolist() == [0, 0, 1, 1]


# ---------------------------------------------------------------------- policies
class ArgmaxPolicy(Policy):
    """Deterministic, contextual: arm i scores its feature vector · the context."""

    name = "test-argmax"
    deterministic = True
    contextual = True

    def _scores(self, context: np.ndarray | None, arms: Arms, rng: np.random.Generator) -> np.ndarray:
        assert context is not None and arms.features is not None
        return arms.features @ context


class CoinPolicy(Policy):
    """Context-free and random: a fresh uniform score per arm per draw."""

    name = "test-coin"

    def _scores(self, context: np.ndarray | None, arms: Arms, rng: np.random.Generator) -> np.ndarray:
        return rng.random(len(arms))


def test_action_dist_from_policy() -> None:
    features = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    contexts = np.array([[1.0, 0.0], [0.0, 1.0]])
    dist = ope.action_dist_from_policy(ArgmaxPolicy(), contexts, action_ids=["a", "b", "c"], len_list=2, arms_features=features)
    # context (1, 0): scores 1, 0, 0.5 -> a then c; context (0, 1): b then c
    expected = np.zeros((2, 3, 2))
    expected[0, 0, 0] = expected[0, 2, 1] = expected[1, 1, 0] = expected[1, 2, 1] = 1.0
    assert np.array_equal(dist, expected)
    coin = ope.action_dist_from_policy(CoinPolicy(propensity_draws=4000), None, action_ids=list("abcd"), len_list=5, n_rounds=3)
    assert coin.shape == (3, 4, 5) and np.allclose(coin[:, :, :4].sum(axis=1), 1.0) and (coin[:, :, 4] == 0).all()
    assert np.allclose(coin, 0.25 * (np.arange(5) < 4), atol=0.04)
    with pytest.raises(OPEError, match="needs n_rounds"):
        ope.action_dist_from_policy(CoinPolicy(), None, action_ids=["a"], len_list=1)


def test_action_dist_from_linucb_values_a_log() -> None:
    from tastemaker.online import DiagLinUCB, Feedback

    log, _, _ = synthetic(600, seed=8)
    ids = ["0", "1", "2"]
    policy = DiagLinUCB(alpha=0.0)
    policy.update([Feedback(ids[a], r, context=x) for a, r, x in zip(log.action[:300], log.reward[:300], log.context[:300])])
    dist = ope.action_dist_from_policy(policy, log.context[300:], action_ids=ids, len_list=1)
    assert set(np.unique(dist)) <= {0.0, 1.0} and np.allclose(dist.sum(axis=1), 1.0)
    # greedy on learnt means picks each type's best action: 2 for type 0, 0 for type 1
    kind = log.context[300:, 1].astype(int)
    assert (np.argmax(dist[:, :, 0], axis=1) == np.array([2, 0])[kind]).all()
    assert ope.ips(log.take(np.arange(300, 600)), dist) > log.reward.mean()


# ---------------------------------------------------------------------- Open Bandit Dataset
CAMPAIGNS = [("men", 34), ("women", 46)]


def _raw_obd(data_root: Path, policy: str, campaign: str) -> pd.DataFrame:
    with zipfile.ZipFile(data_root / "open-bandit-dataset-small" / "obd_small_men_women.zip") as archive:
        return pd.read_csv(io.BytesIO(archive.read(f"obd/{policy}/{campaign}/{campaign}.csv")), index_col=0)


@pytest.fixture(scope="module")
def obd_logs(data_root: Path) -> dict[str, BanditLog]:
    from tastemaker.data.loaders.obd import load_open_bandit

    return {campaign: ope.log_from_open_bandit(load_open_bandit(policy="random", campaign=campaign)) for campaign, _ in CAMPAIGNS}


@pytest.mark.realdata
@pytest.mark.parametrize(("campaign", "n_actions"), CAMPAIGNS)
def test_log_from_open_bandit(obd_logs: dict[str, BanditLog], data_root: Path, campaign: str, n_actions: int) -> None:
    log, raw = obd_logs[campaign], _raw_obd(data_root, "random", campaign)
    assert (log.n_rounds, log.len_list, log.n_actions) == (10_000, 3, n_actions)
    assert set(log.position.tolist()) == {0, 1, 2}
    # row for row the file's values (the file's item_id is the action index)
    assert np.array_equal(log.pscore, raw["propensity_score"].to_numpy())
    assert np.array_equal(log.action, raw["item_id"].to_numpy()) and np.array_equal(log.position, raw["position"].to_numpy() - 1)
    assert np.array_equal(log.reward, raw["click"].to_numpy()) and log.action_ids.tolist() == [str(i) for i in range(n_actions)]
    affinity = raw[[f"user-item_affinity_{i}" for i in range(n_actions)]].to_numpy()
    assert log.context.shape == (10_000, raw.filter(like="user_feature").nunique().sum() + n_actions)
    assert np.array_equal(log.context[:, -n_actions:], affinity)
    assert (log.context[:, :-n_actions].sum(axis=1) == 4).all()  # one category of each of the 4 user features


@pytest.mark.realdata
@pytest.mark.parametrize(("campaign", "n_actions"), CAMPAIGNS)
def test_equals_obp_on_open_bandit(obd_logs: dict[str, BanditLog], campaign: str, n_actions: int) -> None:
    from obp.ope import DirectMethod, DoublyRobust, InverseProbabilityWeighting, ReplayMethod
    from obp.ope import SelfNormalizedInverseProbabilityWeighting, SwitchDoublyRobust
    from obp.policy import BernoulliTS

    log = obd_logs[campaign]
    bts = BernoulliTS(n_actions=n_actions, len_list=3, is_zozotown_prior=True, campaign=campaign, random_state=12345)
    dist = bts.compute_batch_action_dist(n_sim=5000, n_rounds=log.n_rounds)
    q = ope.fit_reward_model(log, folds=3, l2=100.0)
    inputs = {"reward": log.reward, "action": log.action, "pscore": log.pscore, "position": log.position,
              "action_dist": dist, "estimated_rewards_by_reg_model": q}
    pairs = [
        (InverseProbabilityWeighting(), ope.ips(log, dist)),
        (SelfNormalizedInverseProbabilityWeighting(), ope.snips(log, dist)),
        (DirectMethod(), ope.dm(log, dist, q)),
        (DoublyRobust(), ope.dr(log, dist, q)),
        (SwitchDoublyRobust(tau=20.0), ope.switch_dr(log, dist, q, tau=20.0)),
    ]
    for estimator, ours in pairs:
        theirs = float(estimator.estimate_policy_value(**inputs))
        assert ours == pytest.approx(theirs, abs=1e-6, rel=1e-9), estimator.estimator_name
        assert 0 < ours < 0.05
    greedy = np.zeros_like(dist)  # replay needs a deterministic policy in obp: the BTS's likeliest slate
    greedy[np.arange(log.n_rounds)[:, None], np.argmax(dist, axis=1), np.arange(3)[None, :]] = 1.0
    theirs = ReplayMethod().estimate_policy_value(reward=log.reward, action=log.action, position=log.position, action_dist=greedy)
    assert ope.replay(log, greedy) == pytest.approx(float(theirs), abs=1e-12)


def test_slate_ips_equals_obp_independent_ips() -> None:
    from obp.ope import SlateIndependentIPS

    rng = np.random.default_rng(9)
    n_slates, len_list, n_actions = 300, 3, 6
    action = np.concatenate([rng.permutation(n_actions)[:len_list] for _ in range(n_slates)])
    n = n_slates * len_list
    log = BanditLog(action, rng.integers(0, 2, n), rng.uniform(0.05, 1.0, n), np.tile(np.arange(len_list), n_slates),
                    n_actions, len_list, slate_id=np.repeat(np.arange(n_slates), len_list))
    dist = rng.dirichlet(np.ones(n_actions), size=(n, len_list)).transpose(0, 2, 1)
    theirs = SlateIndependentIPS(len_list=len_list).estimate_policy_value(
        slate_id=log.slate_id, reward=log.reward, position=log.position, pscore_item_position=log.pscore,
        evaluation_policy_pscore_item_position=dist[np.arange(n), log.action, log.position])
    assert ope.slate_ips(log, dist) == pytest.approx(float(theirs), abs=1e-12)
