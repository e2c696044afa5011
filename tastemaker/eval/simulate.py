"""A closed-loop simulator: simulated users over a real catalog, for bandit policies and for
pipelines retrained on their own clicks.

**The world** (:class:`World`: built once per dataset and seed, shared by every run on it):

* *Truth.* An ALS fit (:class:`~tastemaker.models.mf.ALS`) on all of the dataset's
  interactions ranks the catalog for each user; the true score s_ui is the standard-normal
  quantile of item i's rank for user u, so every user has the same spread of taste and only
  the order is theirs (raw ALS scores differ in scale by 100x between light and heavy users,
  which made light users never click). ``quality_weight`` adds a shared item quality q_i:
  the item's mean event value (the stars, for ratings) shrunk to the global mean and
  standardised (:func:`item_quality`), which the agent's binary ALS does not see. ``scale``
  (an inverse temperature) sharpens the truth.
* *The agent's view.* A second ALS, fitted on a seeded random ``agent_share`` of the
  interactions (:attr:`World.observed`) with another seed, is all a policy or pipeline sees:
  its user vector is the context, its item vectors the arm features, its scores the prior.
  It lacks part of the data, has its own factors and ignores quality, so it is not the
  oracle, and exploration has something to find (measured: Spearman ~0.4 with the truth
  over the catalog on ml-latest-small). With ``agent_calibration`` its item vectors are
  multiplied by one scalar (what Platt scaling on logged impressions would find) so that its
  scores read as clicks per impression: the policies' priors are then on the reward's scale.
* *Users.* A seeded sample of ``users`` of the dataset's users. Each round one arrives,
  uniformly or in proportion to their interactions (``arrival``). A user's *consumed* items
  (every real interaction, and every click in the run) are never shown to them.
* *Candidates* (policy runs): the agent's top ``candidates`` unconsumed items by its scores,
  then ``random_candidates`` drawn uniformly from the rest of its top ``explore_pool`` (items
  the offline model undervalues, for exploration to find; uniform draws from the whole
  catalog, ``explore_pool = 0``, are almost never clicked).

**Clicks** (:class:`ClickModel`): a position-weighted multinomial logit with a no-click
option (the "no-click" alternative of Eide et al. 2021's slate model). An item's
*attractiveness* a = sigmoid(u), u = scale·s + bias + novelty bonus, is the chance it is
clicked when shown alone at the top. Its weight is the odds w = a / (1 - a) = exp(u), and
position p (0-based) is examined with weight e_p = (1 + p)^-position_decay. At most one item
is clicked:

    P(click at p) = e_p w_p / (1 + W),    P(no click) = 1 / (1 + W),    W = Σ_q e_q w_q.

The slate's expected reward W / (1 + W) grows with W, so the best slate of k is exactly the k
most attractive candidates in decreasing order (rearrangement inequality): that is the
oracle, and regret >= 0 exactly. ``bias`` is calibrated at build time (bisection) so that the
agent's own top-``calibration_k`` slate, before any novelty bonus, is clicked with mean
probability ``ctr``.

**Novelty-seeking users.** Each user has a static propensity θ_u ~ Beta(novelty_a, novelty_b)
and a session state, explore or exploit: a Markov chain over the user's arrivals that moves
to explore with probability ``novelty_switch``·θ_u and back with ``novelty_switch``·(1 - θ_u),
so in the long run (and at the start of a run) a user explores a share θ_u of sessions. The current *intent* is θ_u while
exploring and 0 otherwise, and each item gets the bonus novelty_weight · intent · (the share
of its categories the user has not consumed: in their last ``history_window`` real
interactions, or in any click of the run). ``novelty_weight = 0`` turns novelty off. Every
round records θ_u, the state and the intent, to check an inferred propensity against.

**Runs.** :func:`run_policy` (select -> clicks -> ``update`` with a :class:`Feedback` per
shown item) and :func:`run_pipeline` (serve a pipeline's top-k, add the clicks to its data,
refit) return a :class:`SimulationResult`; :func:`paired_difference` compares two runs and
:func:`plot` draws them. A run's randomness comes from its own seed, in separate streams for
arrivals, sessions, random candidates and clicks (one uniform per round, read by inverse
CDF), so two policies run with one seed meet the same users in the same order with coupled
click draws (common random numbers), and their difference is far less noisy than that of two
independent runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import expit, ndtri
from tqdm.auto import tqdm

from tastemaker.data.dataset import Dataset
from tastemaker.errors import MissingExtraError
from tastemaker.models.mf import ALS
from tastemaker.online.base import Arms, Feedback, Selection
from tastemaker.types import FitOptions, Query

if TYPE_CHECKING:
    from tastemaker.pipeline.pipeline import Pipeline

#: What :meth:`SimulationResult.series` and :func:`plot` can draw.
METRICS = ("reward", "cumulative_reward", "regret", "cumulative_regret", "gini", "coverage", "period_gini")


class SimulatorConfig(BaseModel):
    """The world's settings (see the module docstring for what each one models)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    users: int = Field(300, ge=1)  # simulated users (all, when the dataset has fewer)
    arrival: Literal["uniform", "activity"] = "uniform"
    candidates: int = Field(50, ge=1)  # the agent's top items per round
    random_candidates: int = Field(10, ge=0)  # plus this many drawn uniformly from ...
    explore_pool: int = Field(500, ge=0)  # ... the agent's top this many (0: the whole catalog)
    agent_share: float = Field(0.5, gt=0.0, le=1.0)  # of the interactions the agent sees
    agent_calibration: bool = True  # the agent's scores in clicks per impression (one scalar)
    embedding_size: int = Field(32, ge=1)  # both ALS fits
    reg: float = Field(1.0, ge=0.0)
    alpha: float = Field(5.0, gt=0.0)
    epochs: int = Field(15, ge=1)
    scale: float = Field(1.0, gt=0.0)  # inverse temperature of the true scores
    quality_weight: float = Field(1.0, ge=0.0)  # utility per standard deviation of item quality
    ctr: float = Field(0.15, gt=0.0, lt=1.0)  # the agent's top-k slate's mean click rate
    calibration_k: int = Field(10, ge=1)  # the k of that slate
    position_decay: float = Field(1.0, ge=0.0)  # examination (1 + p)^-decay
    novelty_weight: float = Field(2.0, ge=0.0)  # utility bonus of an all-novel item at intent 1
    novelty_a: float = Field(2.0, gt=0.0)  # θ_u ~ Beta(a, b)
    novelty_b: float = Field(2.0, gt=0.0)
    novelty_switch: float = Field(0.5, ge=0.0, le=1.0)
    history_window: int = Field(20, ge=0)  # recent real interactions whose categories count as known; 0 = all


@dataclass(frozen=True)
class ClickModel:
    """The position-weighted multinomial logit with a no-click option (module docstring).
    Attractiveness is in display order; 0 means never clicked."""

    position_decay: float = 1.0

    def examination(self, k: int) -> np.ndarray:
        """e_p for positions 0..k-1."""
        return np.power(1.0 + np.arange(k), -self.position_decay)

    def probabilities(self, attractiveness: np.ndarray) -> np.ndarray:
        """P(click at p) per position; P(no click) is 1 minus their sum."""
        a = np.clip(np.asarray(attractiveness, dtype=np.float64), 0.0, 1.0 - 1e-12)
        weights = self.examination(len(a)) * a / (1.0 - a)
        return weights / (1.0 + weights.sum())  # type: ignore[no-any-return]

    def expected(self, attractiveness: np.ndarray) -> float:
        """P(some click): the slate's expected reward."""
        return float(self.probabilities(attractiveness).sum())

    def oracle(self, attractiveness: np.ndarray, k: int) -> np.ndarray:
        """Rows of the best slate of ``k``: the most attractive first (exactly optimal here)."""
        a = np.asarray(attractiveness, dtype=np.float64)
        k = min(k, len(a))
        top = np.argpartition(-a, k - 1)[:k] if k < len(a) else np.arange(len(a))
        return top[np.argsort(-a[top], kind="stable")]

    def sample(self, probabilities: np.ndarray, uniform: float) -> int:
        """The clicked position for a uniform draw in [0, 1), or -1 for no click."""
        edges = np.cumsum(probabilities)
        return int(np.searchsorted(edges, uniform, side="right")) if len(edges) and uniform < edges[-1] else -1


class SlatePolicy(Protocol):
    """What :func:`run_policy` drives: :class:`~tastemaker.online.base.Policy`, or a wrapper of
    another library's bandit (e.g. Vowpal Wabbit) with the same two verbs."""

    def select(self, context: np.ndarray | None, arms: Arms, k: int, *, explore: float = 1.0) -> Selection: ...

    def update(self, feedback: Sequence[Feedback]) -> None: ...


@dataclass(frozen=True)
class Arrival:
    """One round's user, as :func:`run_policy` passes it to ``explore`` before the policy
    chooses. ``user`` indexes :attr:`World.users`; ``clicked``: item codes the user clicked
    earlier in the run. ``attractiveness`` is the truth over ``candidates``, for oracles and
    diagnostics only: a fair policy never reads it."""

    round: int
    user: int
    user_id: str
    theta: float
    exploring: bool
    intent: float
    clicked: np.ndarray
    candidates: np.ndarray
    attractiveness: np.ndarray


def gini(counts: np.ndarray) -> float:
    """Gini index of impression counts over the catalog (0 = even, 1 - 1/n = one item); the
    formula of :func:`tastemaker.eval.metrics.gini`, on counts instead of lists."""
    sorted_counts = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(sorted_counts), sorted_counts.sum()
    if n == 0 or total == 0:
        return 0.0
    return float(np.sum((2 * np.arange(1, n + 1) - n - 1) * sorted_counts) / (n * total))


def coverage(counts: np.ndarray) -> float:
    """Share of the catalog shown at least once."""
    counts = np.asarray(counts)
    return float((counts > 0).mean()) if len(counts) else 0.0


def item_quality(dataset: Dataset, shrinkage: float = 10.0) -> np.ndarray:
    """Per item: its mean event value (the stars, for ratings) shrunk towards the global mean
    by ``shrinkage`` pseudo-events, standardised over the catalog; 0 everywhere when values
    do not vary (implicit data)."""
    inter = dataset.interactions
    values = inter["value"].to_numpy(dtype=np.float64)
    items = inter["item"].to_numpy()
    counts = np.bincount(items, minlength=dataset.n_items)
    sums = np.bincount(items, weights=values, minlength=dataset.n_items)
    prior = values.mean() if len(values) else 0.0
    shrunk = (sums + shrinkage * prior) / (counts + shrinkage)
    std = shrunk.std()
    return (shrunk - shrunk.mean()) / std if std > 1e-9 else np.zeros(dataset.n_items)


class World:
    """The simulated users, their true preferences and the agent's view (module docstring).
    Build with :meth:`build`; runs never change it. ``observed``: the agent's share of the
    data; ``bias`` and ``agent_scale``: the calibrated utility offset and score scalar;
    ``quality``: per item. Per simulated user j (``users[j]`` is their dataset code, the
    rows below are in that order): ``theta[j]``, ``utilities[j]`` (true scores s, float32
    over the catalog), ``agent_users[j]`` (the context), ``consumed[j]`` and ``hidden[j]``
    (their real items, and those the agent never saw: CSR rows), ``known_categories[j]``
    (bool per category of ``categories``). ``agent_items``: the arm features."""

    def __init__(self, dataset: Dataset, observed: Dataset, config: SimulatorConfig, seed: int, truth: ALS,
                 agent: ALS, users: np.ndarray, theta: np.ndarray) -> None:
        self.dataset, self.observed, self.config, self.seed = dataset, observed, config, seed
        self.users, self.theta = users, theta
        self.user_ids = np.asarray(dataset.users.decode(users), dtype=object)
        self.item_ids = np.asarray(dataset.items.ids, dtype=object)
        self.n_items = dataset.n_items
        self.truth_users = truth.user_factors_[users].astype(np.float64)
        self.truth_items = truth.item_vectors().astype(np.float64)
        self.agent_users = agent.user_factors_[users].astype(np.float64)
        self.agent_items = agent.item_vectors().astype(np.float64)
        self.click_model = ClickModel(config.position_decay)
        self.consumed = sp.csr_matrix(dataset.to_csr("binary")[users])
        #: real items the agent never saw (a pipeline must not show what the user has consumed)
        self.hidden = sp.csr_matrix(self.consumed - self.consumed.multiply(observed.to_csr("binary")[users]))
        self.hidden.eliminate_zeros()
        self.categories = sp.csr_matrix(dataset.category_matrix(), dtype=np.float64)
        sizes = np.asarray(self.categories.sum(axis=1)).ravel()
        inverse = np.divide(1.0, sizes, out=np.zeros_like(sizes), where=sizes > 0)
        self._category_share = sp.csr_matrix(sp.diags(inverse) @ self.categories)  # rows sum to 1 (or 0)
        self.known_categories = self._recent_categories()
        counts = np.diff(self.consumed.indptr).astype(np.float64)
        uniform = np.full(len(users), 1.0 / len(users))
        self.arrival_weights = counts / counts.sum() if config.arrival == "activity" else uniform
        self.quality = item_quality(dataset)
        self.utilities = self._true_utilities() + np.float32(config.quality_weight) * self.quality.astype(np.float32)
        self.bias, self.agent_scale = self._calibrate()
        self.agent_items = self.agent_items * self.agent_scale

    @classmethod
    def build(cls, dataset: Dataset, config: SimulatorConfig | None = None, *, seed: int = 0, threads: int | None = 1,
              **params: Any) -> World:
        """Fit the truth and the agent's view on ``dataset`` and draw the users (all seeded)."""
        if config is not None and params:
            raise TypeError("pass either a config or keyword parameters, not both")
        cfg = config if config is not None else SimulatorConfig(**params)
        rng = np.random.default_rng([seed, 0])
        inter = dataset.interactions
        observed = dataset.with_interactions(inter[rng.random(len(inter)) < cfg.agent_share])
        als = {"embedding_size": cfg.embedding_size, "reg": cfg.reg, "alpha": cfg.alpha, "epochs": cfg.epochs}
        truth = ALS(**als).fit(dataset, FitOptions(seed=seed, threads=threads, progress=False))
        agent = ALS(**als).fit(observed, FitOptions(seed=seed + 1, threads=threads, progress=False))
        active = np.flatnonzero(np.bincount(observed.interactions["user"].to_numpy(), minlength=dataset.n_users) > 0)
        users = np.sort(rng.choice(active, size=min(cfg.users, len(active)), replace=False)).astype(np.int64)
        theta = rng.beta(cfg.novelty_a, cfg.novelty_b, size=len(users))
        return cls(dataset, observed, cfg, seed, truth, agent, users, theta)

    def __repr__(self) -> str:
        return f"World({self.dataset.name!r}: {len(self.users)} users, {self.n_items} items, bias={self.bias:.3f})"

    def _recent_categories(self) -> np.ndarray:
        """Per user: the categories of their last ``history_window`` real interactions."""
        sequences = self.dataset.sequences()
        window = self.config.history_window
        known = np.zeros((len(self.users), self.categories.shape[1]), dtype=bool)
        for j, user in enumerate(self.users):
            recent = sequences[user][-window:] if window else sequences[user]
            known[j, self.categories[recent].indices] = True
        return known

    def _true_utilities(self) -> np.ndarray:
        """(users, items) float32: each user's true scores as standard-normal quantiles of
        their rank over the catalog (ties by item code)."""
        out = np.zeros((len(self.users), self.n_items), dtype=np.float32)
        quantiles = ndtri(np.arange(1, self.n_items + 1) / (self.n_items + 1)).astype(np.float32)
        for j in range(len(self.users)):
            order = np.argsort(self.truth_items @ self.truth_users[j], kind="stable")
            out[j, order] = quantiles
        return out

    def true_scores(self, user: int, items: np.ndarray | None = None) -> np.ndarray:
        """True scores s (rank quantile + quality_weight · quality) of ``items`` (default: every
        item) for simulated user ``user``."""
        row = self.utilities[user]
        return np.asarray(row if items is None else row[items], dtype=np.float64)

    def agent_scores(self, user: int, items: np.ndarray | None = None) -> np.ndarray:
        """The agent's scores (its prior) of ``items`` (default: every item)."""
        vectors = self.agent_items if items is None else self.agent_items[items]
        return vectors @ self.agent_users[user]  # type: ignore[no-any-return]

    def item_categories(self, item: int) -> np.ndarray:
        """The category indices of one item."""
        return self.categories.indices[self.categories.indptr[item] : self.categories.indptr[item + 1]]

    def attractiveness(self, user: int, items: np.ndarray, intent: float, known_categories: np.ndarray) -> np.ndarray:
        """sigmoid(scale·s + bias + novelty bonus) of ``items`` for ``user`` at this ``intent``,
        given the categories the user knows (a bool per category)."""
        utility = self.config.scale * self.true_scores(user, items) + self.bias
        if intent > 0 and self.config.novelty_weight > 0:
            # the whole catalog's novel shares in one sparse product: cheaper than slicing rows
            novel = self._category_share @ (~known_categories).astype(np.float64)
            utility = utility + self.config.novelty_weight * intent * novel[items]
        return expit(utility)  # type: ignore[no-any-return]

    def _calibrate(self) -> tuple[float, float]:
        """(bias, agent scale): the bias that gives the agent's own top-k slates mean click
        probability ``ctr``; then the scalar that puts the agent's mean score over those items
        on their mean click probability per impression."""
        k = min(self.config.calibration_k, self.n_items)
        exam = self.click_model.examination(k)
        weights = np.zeros((len(self.users), k))  # per user and position: e_p exp(scale·s_p)
        scores = np.zeros((len(self.users), k))
        for j in range(len(self.users)):
            agent = self.agent_scores(j)
            agent[self.consumed[j].indices] = -np.inf
            top = np.argpartition(-agent, k - 1)[:k]
            top = top[np.isfinite(agent[top])]
            top = top[np.argsort(-agent[top])]
            weights[j, : len(top)] = exam[: len(top)] * np.exp(self.config.scale * self.true_scores(j, top))
            scores[j, : len(top)] = agent[top]
        totals = weights.sum(axis=1)  # W(0) per user
        low, high = -60.0, 60.0  # W(b) = e^b · W(0), so the mean of W / (1 + W) rises with b
        for _ in range(100):
            mid = (low + high) / 2
            total = np.exp(mid) * totals
            low, high = (mid, high) if np.mean(total / (1 + total)) < self.config.ctr else (low, mid)
        bias = (low + high) / 2
        clicks = np.exp(bias) * weights / (1 + np.exp(bias) * totals)[:, None]  # P(click) per shown item
        mean_score = float(scores[np.isfinite(scores)].mean())
        scale = float(clicks.mean()) / mean_score if self.config.agent_calibration and mean_score > 0 else 1.0
        return bias, scale


#: the fields of a SimulationResult that are not per-round arrays
_NOT_PER_ROUND = ("name", "k", "n_items", "dataset")


@dataclass(frozen=True)
class SimulationResult:
    """Per round (one slate served to one user), in order: ``user`` (index into
    :attr:`World.users`), ``period`` (0 for policy runs), ``items`` (T, k) shown item codes
    (-1 pads), ``propensities`` (T, k), ``click`` (position, -1 none), ``reward`` (0/1),
    ``expected`` (the slate's true click probability), ``oracle`` (the best slate's),
    ``regret`` (oracle - expected), ``gini`` and ``coverage`` of all impressions so far, the
    user's ``theta``, ``exploring`` state and ``intent``, the ``explore`` factor given to the
    policy (1 without a hook; NaN in pipeline runs) and ``novel_click`` (the click had a
    category new to the user). ``dataset``: a pipeline run's final data (the agent's view
    plus every click)."""

    name: str
    k: int
    n_items: int
    user: np.ndarray
    period: np.ndarray
    items: np.ndarray
    propensities: np.ndarray
    click: np.ndarray
    reward: np.ndarray
    expected: np.ndarray
    oracle: np.ndarray
    regret: np.ndarray
    gini: np.ndarray
    coverage: np.ndarray
    theta: np.ndarray
    exploring: np.ndarray
    intent: np.ndarray
    explore: np.ndarray
    novel_click: np.ndarray
    dataset: Dataset | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.reward)

    def summary(self) -> dict[str, float]:
        """Totals and final values: rounds, clicks, ctr, expected, oracle, regret (summed),
        gini, coverage, novel_click_share (of the clicks)."""
        clicks = float(self.reward.sum())
        return {
            "rounds": float(len(self)), "clicks": clicks, "ctr": float(self.reward.mean()) if len(self) else 0.0,
            "expected": float(self.expected.mean()) if len(self) else 0.0,
            "oracle": float(self.oracle.mean()) if len(self) else 0.0, "regret": float(self.regret.sum()),
            "gini": float(self.gini[-1]) if len(self) else 0.0, "coverage": float(self.coverage[-1]) if len(self) else 0.0,
            "novel_click_share": float(self.novel_click.sum() / clicks) if clicks else 0.0,
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per round, the scalar columns (not ``items`` and ``propensities``)."""
        return pd.DataFrame({f.name: getattr(self, f.name) for f in fields(self)
                             if f.name not in _NOT_PER_ROUND and f.name not in ("items", "propensities")})

    def per_period(self) -> pd.DataFrame:
        """One row per period: slates, clicks, mean reward / expected / oracle / regret, the
        running gini and coverage at its end, and ``period_gini`` (its own impressions')."""
        out = self.to_frame().groupby("period").agg(
            slates=("reward", "size"), clicks=("reward", "sum"), reward=("reward", "mean"), expected=("expected", "mean"),
            oracle=("oracle", "mean"), regret=("regret", "mean"), gini=("gini", "last"), coverage=("coverage", "last"))
        out["period_gini"] = [
            gini(np.bincount(shown[shown >= 0], minlength=self.n_items))
            for shown in (self.items[self.period == p] for p in out.index)
        ]
        return out

    def series(self, metric: str, by: Literal["round", "period"] = "round") -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of one of :data:`METRICS`: per round (``reward``/``regret``: the running mean)
        or per period (``reward``/``regret``: the period's mean)."""
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
        if by == "period":
            table = self.per_period()
            sums = {"cumulative_reward": table["clicks"], "cumulative_regret": table["regret"] * table["slates"]}
            y = np.cumsum(sums[metric]) if metric in sums else table[metric]
            return table.index.to_numpy(), np.asarray(y, dtype=np.float64)
        x = np.arange(1, len(self) + 1)
        values = {"reward": np.cumsum(self.reward) / x, "cumulative_reward": np.cumsum(self.reward),
                  "regret": np.cumsum(self.regret) / x, "cumulative_regret": np.cumsum(self.regret),
                  "gini": self.gini, "coverage": self.coverage}
        if metric not in values:
            raise ValueError(f"{metric!r} is per period: use by='period'")
        return x, np.asarray(values[metric], dtype=np.float64)


class _Run:
    """One run's mutable state over a world: sessions, clicks, consumption, impressions."""

    def __init__(self, world: World, seed: int, rounds: int, k: int) -> None:
        self.world, self.k = world, k
        streams = [np.random.default_rng([seed, stream]) for stream in range(4)]
        self.arrivals, self.sessions, self.draws, clicks = streams
        self.uniforms = clicks.random(rounds)
        self.exploring = self.sessions.random(len(world.users)) < world.theta
        self.known = world.known_categories.copy()
        self.consumed = [set(world.consumed[j].indices.tolist()) for j in range(len(world.users))]
        self.clicked: list[list[int]] = [[] for _ in world.users]
        self.impressions = np.zeros(world.n_items, dtype=np.int64)
        self.covered = 0
        self.columns: dict[str, list[Any]] = {f.name: [] for f in fields(SimulationResult) if f.name not in _NOT_PER_ROUND}

    def arrive(self, user: int) -> float:
        """Advance the user's session one step; their current intent."""
        theta, switch = self.world.theta[user], self.world.config.novelty_switch
        move = switch * ((1 - theta) if self.exploring[user] else theta)
        if self.sessions.random() < move:
            self.exploring[user] = not self.exploring[user]
        return float(theta) if self.exploring[user] else 0.0

    def unconsumed(self, user: int, scores: np.ndarray) -> np.ndarray:
        """``scores`` with the user's consumed items at -inf."""
        scores = scores.copy()
        scores[list(self.consumed[user])] = -np.inf
        return scores

    def unconsumed_items(self, user: int) -> np.ndarray:
        free = np.ones(self.world.n_items, dtype=bool)
        free[list(self.consumed[user])] = False
        return np.flatnonzero(free)

    def candidates(self, user: int, agent_scores: np.ndarray) -> np.ndarray:
        """The agent's top unconsumed items by its scores, then uniformly drawn others."""
        cfg = self.world.config
        scores = self.unconsumed(user, agent_scores)
        free = int(np.isfinite(scores).sum())
        m = min(cfg.candidates, free)
        top = np.argpartition(-scores, m - 1)[:m] if m else np.zeros(0, np.int64)
        top = top[np.argsort(-scores[top], kind="stable")]
        pool_size = min(cfg.explore_pool or free, free)
        extra = min(cfg.random_candidates, pool_size - m)
        if extra > 0:
            pool = np.argpartition(-scores, pool_size - 1)[:pool_size] if pool_size < free else np.arange(len(scores))
            pool = np.setdiff1d(pool[np.isfinite(scores[pool])], top)
            top = np.concatenate([top, self.draws.choice(pool, size=extra, replace=False)])
        return top.astype(np.int64)

    def serve(self, user: int, period: int, intent: float, shown: np.ndarray, propensities: np.ndarray,
              attractiveness: np.ndarray, oracle: float, explore: float) -> int:
        """Clicks on the ``shown`` item codes (their ``attractiveness``); records the round
        and updates consumption and impressions. Returns the clicked position or -1."""
        model = self.world.click_model
        probabilities = model.probabilities(attractiveness)
        expected = float(probabilities.sum())
        position = model.sample(probabilities, self.uniforms[len(self.columns["reward"])])
        novel = False
        if position >= 0:
            item = int(shown[position])
            cats = self.world.item_categories(item)
            novel = bool(len(cats)) and not self.known[user, cats].all()
            self.known[user, cats] = True
            self.consumed[user].add(item)
            self.clicked[user].append(item)
        self.covered += int((self.impressions[shown] == 0).sum())
        self.impressions[shown] += 1
        padded = np.full(self.k, -1, dtype=np.int64)
        padded[: len(shown)] = shown
        props = np.full(self.k, np.nan)
        props[: len(shown)] = propensities
        row = {"user": user, "period": period, "items": padded, "propensities": props, "click": position,
               "reward": float(position >= 0), "expected": expected, "oracle": oracle,
               "regret": oracle - expected, "gini": gini(self.impressions),
               "coverage": self.covered / self.world.n_items, "theta": float(self.world.theta[user]),
               "exploring": bool(self.exploring[user]), "intent": intent, "explore": explore, "novel_click": novel}
        for key, value in row.items():
            self.columns[key].append(value)
        return position

    def result(self, name: str, dataset: Dataset | None = None) -> SimulationResult:
        arrays = {key: np.asarray(values) for key, values in self.columns.items()}
        k = self.k
        arrays["items"] = arrays["items"].reshape(-1, k).astype(np.int64)
        arrays["propensities"] = arrays["propensities"].reshape(-1, k).astype(np.float64)
        return SimulationResult(name=name, k=k, n_items=self.world.n_items, dataset=dataset, **arrays)


def run_policy(world: World, policy: SlatePolicy, *, rounds: int, k: int = 10, seed: int = 0,
               explore: Callable[[Arrival], float] | None = None, name: str | None = None,
               progress: bool = True) -> SimulationResult:
    """The bandit loop for ``rounds`` rounds: a user arrives, the policy picks ``k`` of the
    round's candidates (context: the agent's user vector; arms: :meth:`Arms.of` with the
    agent's item vectors and scores), the user clicks at most one, and the policy learns
    from a :class:`Feedback` per shown item (reward 1 for the click, else 0, with its
    position). ``explore(arrival)``, when given, is passed to ``select(..., explore=)`` (else
    1): e.g. an inferred, or the true, novelty intent. The oracle is the best slate of the
    round's candidates."""
    _check_counts(rounds=rounds, k=k)
    run = _Run(world, seed, rounds, k)
    users = run.arrivals.choice(len(world.users), size=rounds, p=world.arrival_weights)
    label = name or getattr(policy, "name", type(policy).__name__)
    for t in tqdm(range(rounds), desc=f"simulate {label}", unit="round", disable=not progress):
        user = int(users[t])
        intent = run.arrive(user)
        prior = world.agent_scores(user)
        candidates = run.candidates(user, prior)
        attractiveness = world.attractiveness(user, candidates, intent, run.known[user])
        context, features = world.agent_users[user], world.agent_items[candidates]
        arms = Arms.of(world.item_ids[candidates], features, prior[candidates])
        factor = 1.0
        if explore is not None:
            factor = float(explore(Arrival(t, user, str(world.user_ids[user]), float(world.theta[user]),
                                           bool(run.exploring[user]), intent, np.asarray(run.clicked[user], np.int64),
                                           candidates, attractiveness)))
        selection = policy.select(context, arms, k, explore=factor)
        rows = np.asarray(selection.rows, dtype=np.int64)
        oracle = world.click_model.expected(attractiveness[world.click_model.oracle(attractiveness, k)])
        clicked = run.serve(user, 0, intent, candidates[rows], np.asarray(selection.propensities), attractiveness[rows],
                            oracle, factor)
        policy.update([Feedback(str(arms.ids[row]), float(p == clicked), True, context, features[row], p)
                       for p, row in enumerate(rows)])
    return run.result(label)


def run_pipeline(world: World, pipeline: Pipeline | Mapping[str, Any], *, periods: int = 20, users_per_period: int = 200,
                 k: int = 10, retrain_every: int = 1, seed: int = 0, options: FitOptions | None = None,
                 name: str | None = None, progress: bool = True) -> SimulationResult:
    """The feedback loop: fit ``pipeline`` (a :class:`~tastemaker.pipeline.pipeline.Pipeline`,
    cloned so it is left as given, or a pipeline-file dict for
    :func:`~tastemaker.pipeline.config.build_pipeline`) on the agent's view of the data; then
    each period ``users_per_period`` distinct users arrive, each is served the pipeline's top
    ``k`` (their real interactions it never saw excluded, clicks since its last fit as the
    query's history), their clicks join the data as ``"click"`` events, and every
    ``retrain_every`` periods the pipeline is refitted on the grown data. The oracle is the
    best ``k`` of the user's whole unconsumed catalog."""
    from tastemaker.pipeline.config import build_pipeline

    _check_counts(periods=periods, users_per_period=users_per_period, k=k, retrain_every=retrain_every)
    template = build_pipeline(pipeline) if isinstance(pipeline, Mapping) else pipeline
    options = options or FitOptions(seed=seed, threads=1, progress=False)
    per_period = min(users_per_period, len(world.users))
    run = _Run(world, seed, periods * per_period, k)
    data = world.observed
    served = template.clone().fit(data, options)
    now = int(data.interactions["timestamp"].max()) + 1 if data.n_interactions else 0
    pending: list[list[int]] = [[] for _ in world.users]  # clicks since the last fit, per user
    new_rows: list[tuple[int, int, int]] = []  # (user code, item code, timestamp) of clicks not yet in data
    label = name or template.name
    for period in tqdm(range(periods), desc=f"simulate {label}", unit="period", disable=not progress):
        users = run.arrivals.choice(len(world.users), size=per_period, replace=False, p=world.arrival_weights)
        queries = [Query(user=str(world.user_ids[j]), history=tuple(world.item_ids[pending[j]]),
                         exclude=tuple(world.item_ids[world.hidden[j].indices])) for j in users]
        slates = served.slates(queries, n=k)
        for i, (user, slate) in enumerate(zip(users.tolist(), slates, strict=True)):
            intent = run.arrive(user)
            shown = world.dataset.items.encode(slate.items.item_ids, missing="drop").astype(np.int64)
            truth = world.attractiveness(user, run.unconsumed_items(user), intent, run.known[user])
            oracle = world.click_model.expected(truth[world.click_model.oracle(truth, k)])
            attractiveness = world.attractiveness(user, shown, intent, run.known[user])
            position = run.serve(user, period, intent, shown, np.asarray(slate.propensities)[: len(shown)],
                                 attractiveness, oracle, float("nan"))
            if position >= 0:
                pending[user].append(int(shown[position]))
                # a day per period, a second per slate: the clicks keep their order in time
                new_rows.append((int(world.users[user]), int(shown[position]), now + period * 86_400 + i))
        if (period + 1) % retrain_every == 0 or period == periods - 1:
            data = _with_clicks(data, new_rows)
            new_rows = []
            if period < periods - 1:
                served = template.clone().fit(data, options)
                pending = [[] for _ in world.users]
    return run.result(label, data)


def _check_counts(**counts: int) -> None:
    for key, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < (0 if key == "rounds" else 1):
            raise ValueError(f"{key} must be a {'non-negative' if key == 'rounds' else 'positive'} integer, got {value!r}")


def _with_clicks(data: Dataset, rows: Sequence[tuple[int, int, int]]) -> Dataset:
    if not rows:
        return data
    user, item, timestamp = (np.asarray(column) for column in zip(*rows, strict=True))
    clicks = pd.DataFrame({"user": user.astype(np.int32), "item": item.astype(np.int32),
                           "timestamp": timestamp.astype(np.int64), "event_type": np.full(len(rows), "click", dtype=object),
                           "value": np.ones(len(rows), np.float32)})
    return data.with_interactions(pd.concat([data.interactions, clicks], ignore_index=True))


def paired_difference(a: SimulationResult, b: SimulationResult, metric: str = "reward",
                      blocks: int = 10) -> tuple[float, float]:
    """(mean per-round difference a - b of ``metric``, its standard error), from the
    differences of ``blocks`` consecutive blocks of rounds. Meant for two runs with one seed
    (the same arrivals and click draws), so each block's difference is paired."""
    if len(a) != len(b):
        raise ValueError(f"runs of different lengths: {len(a)} and {len(b)} rounds")
    if not 2 <= blocks <= len(a):
        raise ValueError(f"blocks must be between 2 and the number of rounds ({len(a)}), got {blocks}")
    diff = np.asarray(getattr(a, metric), dtype=np.float64) - np.asarray(getattr(b, metric), dtype=np.float64)
    means = np.array([part.mean() for part in np.array_split(diff, blocks)])
    return float(means.mean()), float(means.std(ddof=1) / np.sqrt(blocks))


def plot(results: Mapping[str, SimulationResult], path: str | Path,
         metrics: Sequence[str] = ("cumulative_reward", "cumulative_regret", "gini", "coverage"),
         by: Literal["round", "period"] = "round", title: str | None = None) -> Path:
    """A PNG of line plots, one panel per metric (of :data:`METRICS`), one line per named run."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError("matplotlib", "plot") from None
    if not metrics:
        raise ValueError(f"no metrics to plot; choose from {', '.join(METRICS)}")
    path = Path(path)
    columns = min(len(metrics), 2)
    rows = -(-len(metrics) // columns)
    figure = Figure(figsize=(6 * columns, 3.6 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, metric in zip(axes, metrics, strict=False):
        for label, result in results.items():
            x, y = result.series(metric, by)
            ax.plot(x, y, label=label)
        ax.set_title(metric.replace("_", " "))
        ax.set_xlabel(by)
        ax.grid(alpha=0.3)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    axes[0].legend(fontsize="small")
    if title:
        figure.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    return path
