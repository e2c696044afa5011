"""Bandit policies (the contract is :mod:`tastemaker.online.base`).

Context-free, per arm (statistics: impressions n and reward sum r):

* :class:`RandomPolicy`: a uniformly random slate (the baseline; exact propensities).
* :class:`EpsilonGreedy`: with probability epsilon a uniformly random slate, else the arms
  with the best mean reward (unseen arms: mean 0, in the ranker's order); exact propensities.
* :class:`UCB1`: mean + c·sqrt(2 ln N / n) (Auer et al. 2002); unseen arms first; deterministic.
* :class:`BetaThompson`: Beta-Bernoulli Thompson sampling, one posterior draw per slate.
* :class:`SlateThompson`: **in-slate** Thompson sampling (Eide et al. 2021, the FINN code's
  ``recommend_inslate``): k posterior draws, each draw's top k interleaved rank-major, the first
  k distinct arms shown, so each position effectively comes from its own draw. It learns only
  from the shown items (the slate likelihood), as every policy here does.
* :class:`PositionThompson`: independent per-position Thompson sampling: one Beta-Bernoulli
  bandit per position, each learning from its own position's feedback (the baseline the slate
  policy is compared with).

Linear, per arm, on the user's vector from an offline model as context (the "offline +
online" hybrid of Online Matching): arm a's reward model is E[r | x] = θ_aᵀx, a ridge
regression shrunk towards the arm's own item vector v_a (``prior = true``), so an arm never
shown scores what the offline model says (xᵀv_a) plus its exploration bonus:
θ_a = (λI + Σxxᵀ)⁻¹ (Σrx + λ v_a).

* :class:`LinUCB`: full covariance (Li et al. 2010, disjoint model): θ_aᵀx + α·sqrt(xᵀA_a⁻¹x).
  O(d²) per update, a d x d solve per arm and decision (cached between updates).
* :class:`DiagLinUCB`: Online Matching's diagonal variant (Yi et al. 2023): per arm and
  dimension two sums, D_aj = Σx_j² and B_aj = Σr x_j; θ_aj = (B_aj + λv_aj) / (λ + D_aj), score
  Σ_j θ_aj x_j + α·sqrt(Σ_j x_j² / (λ + D_aj)). O(d) per update and per arm scored; the sums
  only add up, so replicas merge without locks or matrix inversions.
* :class:`LinearThompson`: linear Thompson sampling (Agrawal & Goyal 2013): θ̃_a ~ N(θ_a, v²A_a⁻¹).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from tastemaker.online.base import Arms, Feedback, Policy, PolicyConfig, best_rows


# ---------------------------------------------------------------------- context-free
class RandomPolicy(Policy):
    name = "random"

    def _scores(self, context: np.ndarray | None, arms: Arms, rng: np.random.Generator) -> np.ndarray:
        return rng.random(len(arms))

    def _slate(self, context: np.ndarray | None, arms: Arms, k: int, rng: np.random.Generator) -> np.ndarray:
        return rng.permutation(len(arms))[:k]

    def distribution(self, context: np.ndarray | None, arms: Arms, k: int, draws: int | None = None, *, explore: float = 1.0) -> np.ndarray:
        k = min(int(k), len(arms))
        return np.full((len(arms), k), 1.0 / max(len(arms), 1))

    def _propensities_of(self, context: np.ndarray | None, arms: Arms, rows: np.ndarray) -> np.ndarray:
        return np.full(len(rows), 1.0 / len(arms))


class EpsilonGreedyConfig(PolicyConfig):
    epsilon: float = Field(0.1, ge=0, le=1)


class EpsilonGreedy(Policy):
    name = "epsilon-greedy"
    Config = EpsilonGreedyConfig
    config: EpsilonGreedyConfig

    def _epsilon(self) -> float:
        return min(1.0, self.config.epsilon * self._explore)

    def _scores(self, context: np.ndarray | None, arms: Arms, rng: np.random.Generator) -> np.ndarray:
        n, r = self.counts(arms)
        return np.where(n > 0, r / np.maximum(n, 1), 0.0)

    def _slate(self, context: np.ndarray | None, arms: Arms, k: int, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < self._epsilon():
            return rng.permutation(len(arms))[:k]
        return best_rows(self._scores(context, arms, rng), arms, k)

    def distribution(self, context: np.ndarray | None, arms: Arms, k: int, draws: int | None = None, *, explore: float = 1.0) -> np.ndarray:
        # exact: (1 - eps) x the greedy slate + eps x a uniform slate (1/n per position)
        self._explore = self._check_explore(explore)
        k = min(int(k), len(arms))
        eps = self._epsilon()
        out = np.full((len(arms), k), eps / max(len(arms), 1))
        greedy = best_rows(self._scores(None, arms, self.rng), arms, k)
        out[greedy, np.arange(k)] += 1.0 - eps
        return out

    def _propensities_of(self, context: np.ndarray | None, arms: Arms, rows: np.ndarray) -> np.ndarray:
        return self.distribution(context, arms, len(rows), explore=self._explore)[rows, np.arange(len(rows))]


class UCB1Config(PolicyConfig):
    #: the bonus's scale (1: Auer et al.'s sqrt(2 ln N / n) for rewards in [0, 1])
    c: float = Field(1.0, ge=0)


class UCB1(Policy):
    name = "ucb1"
    deterministic = True
    Config = UCB1Config
    config: UCB1Config

    def _scores(self, context: np.ndarray | None, arms: Arms, rng: np.random.Generator) -> np.ndarray:
        n, r = self.counts(arms)
        total = max(sum(float(s[0]) for s in self.stats.values()), 1.0)
        bonus = self.config.c * self._explore * np.sqrt(2.0 * np.log(max(total, 2.0)) / np.maximum(n, 1))
        return np.where(n > 0, r / np.maximum(n, 1) + bonus, np.inf)  # every arm once first


class BetaConfig(PolicyConfig):
    #: Beta prior: alpha0 pseudo-successes and beta0 pseudo-failures per arm
    alpha0: float = Field(1.0, gt=0)
    beta0: float = Field(1.0, gt=0)
    #: the offline hybrid for Beta posteriors: an arm's prior score, read as a click rate
    #: (clipped to [0, 1]), adds ``prior_strength`` pseudo-impressions at that rate (0: off,
    #: the classic uniform prior, under which an arm never shown looks as good as a coin)
    prior_strength: float = Field(0.0, ge=0)


class BetaThompson(Policy):
    name = "beta-thompson"
    Config = BetaConfig
    config: BetaConfig

    def _posterior(self, arms: Arms, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
        n, r = self.counts(arms)
        return _beta_draws(self.config, n, r, rng, self._explore, size, arms.prior)

    def _scores(self, context: np.ndarray | None, arms: Arms, rng: np.random.Generator) -> np.ndarray:
        return self._posterior(arms, rng)


class SlateThompson(BetaThompson):
    """In-slate Thompson sampling (see the module docstring)."""

    name = "slate-thompson"

    def _slate(self, context: np.ndarray | None, arms: Arms, k: int, rng: np.random.Generator) -> np.ndarray:
        draws = self._posterior(arms, rng, size=k)  # (k, n): one posterior draw per position
        tops = [best_rows(row, arms, k) for row in draws]
        shown: list[int] = []
        for rank in range(k):  # rank-major: every draw's best, then every draw's second...
            for top in tops:
                row = int(top[rank])
                if row not in shown:
                    shown.append(row)
                    if len(shown) == k:
                        return np.asarray(shown, dtype=np.int64)
        return np.asarray(shown, dtype=np.int64)


class PositionThompson(BetaThompson):
    """Independent per-position Thompson sampling (see the module docstring)."""

    name = "position-thompson"

    def _key(self, feedback: Feedback) -> str:
        return f"{feedback.arm_id}@{feedback.position}"

    def _position_counts(self, arms: Arms, position: int) -> tuple[np.ndarray, np.ndarray]:
        memo = getattr(self, "_position_memo", None)
        if memo is None or memo[0] is not arms or memo[1] != self.version:
            memo = self._position_memo = (arms, self.version, {})  # holds arms: its id cannot be reused
        if position not in memo[2]:
            n, r = np.zeros(len(arms)), np.zeros(len(arms))
            for i, key in enumerate(arms.ids):
                s = self.stats.get(f"{key}@{position}")
                if s is not None:
                    n[i], r[i] = s[0], s[1]
            memo[2][position] = (n, r)
        return memo[2][position]

    def _slate(self, context: np.ndarray | None, arms: Arms, k: int, rng: np.random.Generator) -> np.ndarray:
        shown: list[int] = []
        for position in range(k):
            n, r = self._position_counts(arms, position)
            draw = _beta_draws(self.config, n, r, rng, self._explore, None, arms.prior)
            draw[shown] = -np.inf  # no duplicates: the position's best arm not shown yet
            shown.append(int(best_rows(draw, arms, 1)[0]))
        return np.asarray(shown, dtype=np.int64)


def _beta_draws(config: BetaConfig, n: np.ndarray, r: np.ndarray, rng: np.random.Generator, explore: float,
                size: int | None = None, prior: np.ndarray | None = None) -> np.ndarray:
    """Posterior draws Beta(alpha0 + m·p + r, beta0 + m·(1 - p) + n - r) per arm (m =
    ``prior_strength``, p the arm's prior clipped to [0, 1]); ``explore`` scales the draws'
    spread around the posterior mean (1: the posterior itself, 0: its mean)."""
    successes = np.clip(r, 0.0, n)  # rewards beyond 1 per impression would leave Beta's support
    a, b = config.alpha0 + successes, config.beta0 + n - successes
    if config.prior_strength > 0 and prior is not None:
        p = np.clip(np.nan_to_num(prior, nan=0.0, neginf=0.0, posinf=1.0), 0.0, 1.0)
        a, b = a + config.prior_strength * p, b + config.prior_strength * (1.0 - p)
    shape = (len(n),) if size is None else (size, len(n))
    draws = rng.beta(a, b, size=shape)
    if explore != 1.0:
        mean = a / (a + b)
        draws = mean + explore * (draws - mean)
    return draws


# ---------------------------------------------------------------------- linear
class LinearConfig(PolicyConfig):
    #: the exploration bonus's scale (LinUCB), or the posterior's scale v (linear TS)
    alpha: float = Field(1.0, ge=0)
    #: ridge strength λ (the prior's weight, in pseudo-observations)
    reg: float = Field(1.0, gt=0)
    #: shrink each arm towards its item vector (the offline model's view) instead of 0
    prior: bool = True
    #: the factor c that puts the offline score xᵀv in reward units (the prior is θ_a = c·v_a).
    #: "auto": fitted per decision by least squares to the arms' prior scores (right when those
    #: are calibrated, e.g. clicks per impression); an uncalibrated prior (a raw dot product
    #: of 0.3 where one item's click rate is 0.02) makes every shown arm look worse than
    #: the unseen ones, and the policy explores for ever
    prior_scale: float | Literal["auto"] = 1.0


class _Linear(Policy):
    """Per-arm ridge regression on the context (shared bookkeeping of the linear policies)."""

    contextual = True
    Config = LinearConfig
    config: LinearConfig
    #: full covariance (d x d per arm) or its diagonal (d per arm)
    full: ClassVar[bool] = True

    def __init__(self, config: PolicyConfig | None = None, *, seed: int = 0, **params: Any) -> None:
        super().__init__(config, seed=seed, **params)
        self._inverse: dict[str, tuple[float, np.ndarray]] = {}  # arm -> (impressions, A^-1)

    def _statistics(self) -> int:
        d = self.dim or 0
        return 1 + (d * d if self.full else d) + d

    def _increment(self, feedback: Feedback) -> np.ndarray:
        x = feedback.context
        assert x is not None  # checked by update
        d = len(x)
        out = np.zeros(self._statistics())
        if feedback.shown:
            out[0] = 1.0
            out[1 : 1 + (d * d if self.full else d)] = np.outer(x, x).ravel() if self.full else x * x
        out[-d:] = feedback.reward * x
        return out

    def _parts(self, key: str) -> tuple[float, np.ndarray, np.ndarray] | None:
        """(impressions, Σxxᵀ (d, d) or Σx² (d,), Σrx (d,)) of an arm, None if never seen."""
        s = self.stats.get(key)
        if s is None:
            return None
        d = self.dim or 0
        second = s[1 : 1 + d * d].reshape(d, d) if self.full else s[1 : 1 + d]
        return float(s[0]), second, s[-d:]

    def _prior(self, arms: Arms, x: np.ndarray) -> np.ndarray:
        if not self.config.prior or arms.features is None:
            return np.zeros((len(arms), len(x)))
        scale = self.config.prior_scale
        if scale == "auto":
            offline = arms.features @ x
            usable = np.isfinite(arms.prior) if arms.prior is not None else np.zeros(len(arms), bool)
            denom = float(offline[usable] @ offline[usable])
            scale = float(arms.prior[usable] @ offline[usable]) / denom if denom > 0 else 1.0  # type: ignore[index]
        return float(scale) * arms.features

    def estimates(self, context: np.ndarray, arms: Arms) -> tuple[np.ndarray, np.ndarray]:
        """Per arm: (θ_aᵀx, sqrt(xᵀA_a⁻¹x)), the mean reward estimate and its uncertainty.
        Remembered for the last (context, arms) until the next update (a decision's simulated
        draws read them hundreds of times)."""
        x = np.asarray(context, dtype=np.float64)
        memo = getattr(self, "_estimates_memo", None)
        if memo is not None and memo[0] is arms and memo[1] == self.version and np.array_equal(memo[2], x):
            return memo[3], memo[4]
        mean, width = self._estimates(x, arms)
        self._estimates_memo = (arms, self.version, x.copy(), mean, width)
        return mean, width

    def _estimates(self, x: np.ndarray, arms: Arms) -> tuple[np.ndarray, np.ndarray]:
        lam = self.config.reg
        prior = self._prior(arms, x)
        mean = prior @ x  # arms never seen: the prior alone (A = λI)
        width = np.full(len(arms), np.sqrt(x @ x / lam))
        for i, key in enumerate(arms.ids):
            parts = self._parts(str(key))
            if parts is None:
                continue
            _, second, b = parts
            if self.full:
                inv = self._inverse_of(str(key))
                theta = inv @ (b + lam * prior[i])
                mean[i] = theta @ x
                width[i] = np.sqrt(max(float(x @ inv @ x), 0.0))
            else:
                denom = lam + second
                mean[i] = ((b + lam * prior[i]) / denom) @ x
                width[i] = np.sqrt(float((x * x / denom).sum()))
        return mean, width

    def _inverse_of(self, key: str) -> np.ndarray:
        """(λI + Σxxᵀ)⁻¹ of an arm, cached until its next impression."""
        parts = self._parts(key)
        assert parts is not None
        n, second, _ = parts
        cached = self._inverse.get(key)
        if cached is None or cached[0] != n:
            a = second + self.config.reg * np.eye(len(second))
            cached = (n, np.linalg.inv(a))
            self._inverse[key] = cached
        return cached[1]

    def merge(self, other: Policy) -> None:
        super().merge(other)
        self._inverse.clear()

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Policy:
        return super().from_state(state)


class LinUCB(_Linear):
    name = "linucb"
    deterministic = True

    def _scores(self, context: np.ndarray | None, arms: Arms, rng: np.random.Generator) -> np.ndarray:
        assert context is not None
        mean, width = self.estimates(context, arms)
        return mean + self.config.alpha * self._explore * width


class DiagLinUCB(LinUCB):
    name = "diag-linucb"
    full = False


class LinearThompson(_Linear):
    name = "linear-thompson"

    def _scores(self, context: np.ndarray | None, arms: Arms, rng: np.random.Generator) -> np.ndarray:
        # θ̃ᵀx with θ̃ ~ N(θ, v²A⁻¹) is N(θᵀx, v²·xᵀA⁻¹x): one normal draw per arm, no Cholesky
        assert context is not None
        mean, width = self.estimates(context, arms)
        return mean + self.config.alpha * self._explore * width * rng.standard_normal(len(arms))


#: every policy by its name (what an explorer's ``policy = "..."`` names)
POLICIES: dict[str, type[Policy]] = {
    cls.name: cls
    for cls in (RandomPolicy, EpsilonGreedy, UCB1, BetaThompson, SlateThompson, PositionThompson, LinUCB, DiagLinUCB, LinearThompson)
}


def policy_class(name: str) -> type[Policy]:
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r} (known: {', '.join(sorted(POLICIES))})") from None


def policy_from_state(state: dict[str, Any]) -> Policy:
    """Any policy restored from its :meth:`Policy.state`."""
    return policy_class(str(state.get("policy"))).from_state(state)
