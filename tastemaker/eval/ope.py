"""Off-policy evaluation: what a new policy would have earned, estimated from another's logs.

The shapes are obp's (Saito et al., "Open Bandit Dataset and Pipeline", NeurIPS 2021), so
results can be compared with it number for number:

* a :class:`BanditLog` holds one row per *shown item*: the logged ``action`` (an index into
  ``n_actions``), its ``position`` in the slate (0-based, ``< len_list``), the ``reward`` and
  ``pscore``, the logging policy's probability of showing that action at that position;
* ``action_dist`` (n, n_actions, len_list) is the *evaluation* policy's probability of each
  action at each position, for each logged row's context;
* ``estimated_rewards`` (n, n_actions, len_list) is a reward model's q̂(x_i, a, k)
  (:func:`fit_reward_model` makes one).

With w_i = action_dist[i, a_i, k_i] / pscore_i (the importance weight) and
q̂_i(π) = Σ_a action_dist[i, a, k_i]·q̂(x_i, a, k_i), the row-level estimators are:

* ``ips``: mean(w·r) (Horvitz-Thompson; unbiased when pscore is the true propensity and the
  logging policy shows every action the evaluation policy might);
* ``snips``: Σ w·r / Σ w (self-normalised: a little bias, much less variance);
* ``dm``: mean(q̂_i(π)) (direct method: no weights, as good as the reward model);
* ``dr``: mean(q̂_i(π) + w·(r - q̂(x_i, a_i, k_i))) (Dudík et al. 2011: unbiased if either the
  propensities or the reward model are right);
* ``switch_dr``: DR where w ≤ tau, DM where w > tau (Wang et al. 2017);
* ``replay``: Li et al. (2011) rejection replay: the mean reward over the rows where the
  evaluation policy's choice at the logged position (sampled from action_dist, so a
  deterministic policy's choice exactly) equals the logged action. Unbiased only for a
  *uniformly random* logging policy; it ignores ``pscore``.

These value the evaluation policy *per shown position* (the expected reward of a row), as
obp does, and on the same inputs give obp 0.4.1's numbers (``tests/eval/test_ope.py``). Our
DM and DR sum Σ_a π·q̂ where obp takes ``np.average`` with weights π; the two coincide when
each position's probabilities sum to 1 (a position the policy may leave empty counts as 0 here).

**Slates.** ``slate_ips`` is the *independent IPS* of obp's slate module (IIPS, Li et al.
2018, "Offline evaluation of ranking policies with click models"): the value of a slate is
the sum over its positions of each position's IPS term, Σ_{i in slate} w_i·r_i, averaged over
the slates of the log (``slate_id``). It is unbiased when the reward at a position depends
only on the item there (and the context), not on the rest of the slate (the item-position
click model), and it needs only the per-position propensities a log records. The
pseudo-inverse estimator (Swaminathan et al. 2017) is *not* implemented: it needs the logging
policy's pairwise marginals P(a at j, b at k), which a log of per-position propensities does
not hold.

:func:`estimate` gives any of them with a standard error and a (1 - alpha) interval, normal
(delta method for the ratio estimators) or by bootstrap over rounds (slates for slate_ips).

Readers make logs from the Open Bandit Dataset (:func:`log_from_open_bandit`) and from the
service's impression events (:func:`log_from_events`, :func:`log_from_store`);
:func:`action_dist_from_policy` turns a :class:`tastemaker.online.base.Policy` into an
``action_dist``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from tastemaker.errors import TastemakerError

if TYPE_CHECKING:
    from tastemaker.data.dataset import Dataset
    from tastemaker.online.base import Policy
    from tastemaker.protocols import Event
    from tastemaker.store.base import SQLStore

Estimator = Literal["replay", "ips", "snips", "dm", "dr", "switch-dr", "slate-ips"]
ESTIMATORS: tuple[str, ...] = ("replay", "ips", "snips", "dm", "dr", "switch-dr", "slate-ips")
#: estimators that need ``estimated_rewards``
MODEL_BASED: frozenset[str] = frozenset({"dm", "dr", "switch-dr"})
DEFAULT_REWARD_TYPES: tuple[str, ...] = ("click", "conversion")


class OPEError(TastemakerError, ValueError):
    """Bad input to off-policy evaluation (the message names the field and the index)."""


def _first(mask: np.ndarray) -> int | None:
    bad = np.flatnonzero(mask)
    return int(bad[0]) if len(bad) else None


def _vector(name: str, values: Any, n: int | None, kind: Literal["int", "float"]) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise OPEError(f"{name} must be one-dimensional, got shape {array.shape}")
    if n is not None and len(array) != n:
        raise OPEError(f"{name} has {len(array)} rows, action has {n}")
    if kind == "int":
        # whole floats pass (a column read from a table), fractions and booleans do not
        whole = array.dtype.kind == "f" and np.isfinite(array).all() and (array == np.round(array)).all()
        if array.dtype.kind not in "iu" and not whole:
            raise OPEError(f"{name} must hold integers, got dtype {array.dtype}")
        return array.astype(np.int64)
    try:
        array = array.astype(np.float64)
    except (TypeError, ValueError):
        raise OPEError(f"{name} must hold numbers, got dtype {array.dtype}") from None
    bad = _first(~np.isfinite(array))
    if bad is not None:
        raise OPEError(f"{name}[{bad}] must be finite, got {array[bad]}")
    return array


@dataclass(frozen=True, eq=False)
class BanditLog:
    """Logged bandit feedback, one row per shown item (obp's shapes; see the module doc).

    ``action`` (n,) int in [0, n_actions); ``reward`` (n,) float; ``pscore`` (n,) in (0, 1]:
    the logging policy's probability of the logged action at its position; ``position`` (n,)
    int in [0, len_list); ``context`` (n, d) float or None; ``slate_id`` (n,) int or None (the
    rows of one shown slate share it); ``action_ids`` (n_actions,) str or None (what each
    action index is). Arrays are checked and converted on construction; a bad value raises
    :class:`OPEError` naming the field and the first bad index."""

    action: np.ndarray
    reward: np.ndarray
    pscore: np.ndarray
    position: np.ndarray
    n_actions: int
    len_list: int = 1
    context: np.ndarray | None = None
    slate_id: np.ndarray | None = None
    action_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("n_actions", "len_list"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise OPEError(f"{name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        action = _vector("action", self.action, None, "int")
        n = len(action)

        def set_(name: str, value: object) -> None:
            object.__setattr__(self, name, value)  # frozen: store the checked, converted value

        set_("action", action)
        bad = _first((action < 0) | (action >= self.n_actions))
        if bad is not None:
            raise OPEError(f"action[{bad}] = {action[bad]} is outside [0, n_actions={self.n_actions})")
        set_("reward", _vector("reward", self.reward, n, "float"))
        pscore = _vector("pscore", self.pscore, n, "float")
        bad = _first((pscore <= 0) | (pscore > 1))
        if bad is not None:
            raise OPEError(f"pscore[{bad}] must be in (0, 1], got {pscore[bad]}")
        set_("pscore", pscore)
        position = _vector("position", self.position, n, "int")
        bad = _first((position < 0) | (position >= self.len_list))
        if bad is not None:
            raise OPEError(
                f"position[{bad}] = {position[bad]} is outside [0, len_list={self.len_list}) (positions are 0-based)"
            )
        set_("position", position)
        if self.context is not None:
            try:
                context = np.asarray(self.context, dtype=np.float64)
            except (TypeError, ValueError):
                raise OPEError("context must hold numbers") from None
            if context.ndim != 2 or len(context) != n:
                raise OPEError(f"context must be ({n}, d), got shape {context.shape}")
            bad = _first(~np.isfinite(context).all(axis=1))
            if bad is not None:
                raise OPEError(f"context[{bad}] contains NaN or infinite values")
            set_("context", context)
        if self.slate_id is not None:
            set_("slate_id", _vector("slate_id", self.slate_id, n, "int"))
        if self.action_ids is not None:
            ids = np.asarray([str(i) for i in np.asarray(self.action_ids, dtype=object).reshape(-1)], dtype=object)
            if len(ids) != self.n_actions:
                raise OPEError(f"action_ids has {len(ids)} ids for n_actions={self.n_actions}")
            if len(set(ids.tolist())) != len(ids):
                raise OPEError("action_ids must be unique")
            set_("action_ids", ids)

    @property
    def n_rounds(self) -> int:
        """The number of rows (shown items)."""
        return len(self.action)

    def __len__(self) -> int:
        return len(self.action)

    def take(self, rows: np.ndarray | Sequence[int]) -> BanditLog:
        """The log restricted to ``rows`` (indices or a boolean mask), e.g. a half or a bootstrap sample."""
        rows = np.asarray(rows)

        def pick(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else array[rows]

        return BanditLog(self.action[rows], self.reward[rows], self.pscore[rows], self.position[rows], self.n_actions,
                         self.len_list, pick(self.context), pick(self.slate_id), self.action_ids)


@dataclass(frozen=True)
class Estimate:
    """An estimated policy value with its standard error and (1 - alpha) interval.
    ``method``: "normal" (value ± z·se) or "bootstrap" (percentiles of ``bootstrap`` resamples
    of the rounds, or of the slates for slate-ips); ``n``: rounds (or slates) used."""

    estimator: str
    value: float
    se: float
    ci_low: float
    ci_high: float
    n: int
    alpha: float = 0.05
    method: str = "normal"


# ---------------------------------------------------------------------- checks
def _check_dist(log: BanditLog, dist: Any, name: str = "action_dist") -> np.ndarray:
    array = np.asarray(dist, dtype=np.float64)
    shape = (log.n_rounds, log.n_actions, log.len_list)
    if array.shape != shape:
        raise OPEError(f"{name} must be (n_rounds, n_actions, len_list) = {shape}, got {array.shape}")
    bad = _first(~np.isfinite(array).all(axis=(1, 2)))
    if bad is not None:
        raise OPEError(f"{name}[{bad}] contains NaN or infinite values")
    if name == "action_dist":
        bad = _first(((array < -1e-12) | (array > 1 + 1e-9)).any(axis=(1, 2)))
        if bad is not None:
            raise OPEError(f"{name}[{bad}] has a probability outside [0, 1]")
        sums = array.sum(axis=1)  # (n, len_list): one position's probabilities over actions
        bad = _first((sums > 1 + 1e-6).any(axis=1))
        if bad is not None:
            k = int(np.argmax(sums[bad]))
            raise OPEError(
                f"{name}[{bad}, :, {k}] sums to {sums[bad, k]:.6g}; a position's probabilities must sum to at most 1"
            )
    return array


def _rows(log: BanditLog) -> np.ndarray:
    return np.arange(log.n_rounds)


def _weights(log: BanditLog, dist: np.ndarray) -> np.ndarray:
    """w_i = π_e(a_i at k_i | x_i) / π_b(a_i at k_i | x_i)."""
    return dist[_rows(log), log.action, log.position] / log.pscore


def _model_parts(log: BanditLog, dist: np.ndarray, q: Any) -> tuple[np.ndarray, np.ndarray]:
    """(q̂_i(π) = Σ_a π(a at k_i)·q̂(x_i, a, k_i), q̂(x_i, a_i, k_i)) per row."""
    if q is None:
        raise OPEError("this estimator needs estimated_rewards (n_rounds, n_actions, len_list); see fit_reward_model")
    q = _check_dist(log, q, "estimated_rewards")
    rows = _rows(log)
    on_policy = (dist[rows, :, log.position] * q[rows, :, log.position]).sum(axis=1)
    return on_policy, q[rows, log.action, log.position]


def _terms(
    log: BanditLog, action_dist: Any, estimator: str, estimated_rewards: Any, tau: float, seed: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per round (or slate): (numerator, denominator or None); the estimate is
    mean(numerator) / mean(denominator), or mean(numerator) without a denominator."""
    if estimator not in ESTIMATORS:
        raise OPEError(f"unknown estimator {estimator!r} (known: {', '.join(ESTIMATORS)})")
    if log.n_rounds == 0:
        raise OPEError("the log is empty")
    dist = _check_dist(log, action_dist)
    if estimator == "replay":
        # the evaluation policy's choice at the logged position, by inverse CDF: a one-hot
        # (deterministic) row always picks its action; a random policy's is one seeded draw
        # (chosen = n_actions, matching nothing, when the draw falls past a position's total
        # probability: the policy leaves that position empty)
        cdf = np.cumsum(dist[_rows(log), :, log.position], axis=1)
        draw = np.random.default_rng(seed).random(log.n_rounds)
        chosen = (cdf <= draw[:, None]).sum(axis=1)
        match = (chosen == log.action).astype(np.float64)
        if match.sum() == 0:
            raise OPEError("replay: no logged action matches the evaluation policy's choice; the estimate is undefined")
        return match * log.reward, match
    w = _weights(log, dist)
    if estimator == "ips":
        return w * log.reward, None
    if estimator == "snips":
        if w.sum() <= 0:
            raise OPEError("snips: every importance weight is 0; the estimate is undefined")
        return w * log.reward, w
    if estimator == "slate-ips":
        if log.slate_id is None:
            raise OPEError("slate-ips needs log.slate_id (which rows were shown together)")
        _, slate = np.unique(log.slate_id, return_inverse=True)
        return np.bincount(slate, weights=w * log.reward), None
    on_policy, factual = _model_parts(log, dist, estimated_rewards)
    if estimator == "dm":
        return on_policy, None
    if estimator == "dr":
        return on_policy + w * (log.reward - factual), None
    if not (isinstance(tau, (int, float)) and tau >= 0):  # switch-dr
        raise OPEError(f"tau must be a number >= 0, got {tau!r}")
    return on_policy + (w <= tau) * w * (log.reward - factual), None


def _ratio(num: np.ndarray, den: np.ndarray | None) -> float:
    return float(num.mean() if den is None else num.sum() / den.sum())


# ---------------------------------------------------------------------- estimators
def replay(log: BanditLog, action_dist: np.ndarray, *, seed: int = 0) -> float:
    """Li et al. (2011) rejection replay (see the module doc): uniform-random logs only."""
    return _ratio(*_terms(log, action_dist, "replay", None, 0.0, seed))


def ips(log: BanditLog, action_dist: np.ndarray) -> float:
    """Inverse propensity scoring: mean(w·r)."""
    return _ratio(*_terms(log, action_dist, "ips", None, 0.0, 0))


def snips(log: BanditLog, action_dist: np.ndarray) -> float:
    """Self-normalised IPS: Σ w·r / Σ w."""
    return _ratio(*_terms(log, action_dist, "snips", None, 0.0, 0))


def dm(log: BanditLog, action_dist: np.ndarray, estimated_rewards: np.ndarray) -> float:
    """Direct method: mean over rows of Σ_a π(a at k_i | x_i)·q̂(x_i, a, k_i)."""
    return _ratio(*_terms(log, action_dist, "dm", estimated_rewards, 0.0, 0))


def dr(log: BanditLog, action_dist: np.ndarray, estimated_rewards: np.ndarray) -> float:
    """Doubly robust (Dudík et al. 2011): DM plus the IPS-weighted residual of the logged action."""
    return _ratio(*_terms(log, action_dist, "dr", estimated_rewards, 0.0, 0))


def switch_dr(log: BanditLog, action_dist: np.ndarray, estimated_rewards: np.ndarray, *, tau: float = 1.0) -> float:
    """Switch-DR (Wang et al. 2017): the DR correction only where w ≤ ``tau`` (obp's default
    tau = 1); tau = inf is DR, tau = 0 is DM."""
    return _ratio(*_terms(log, action_dist, "switch-dr", estimated_rewards, tau, 0))


def slate_ips(log: BanditLog, action_dist: np.ndarray) -> float:
    """Independent (per-position) IPS: mean over slates of Σ_{rows of the slate} w·r, the
    expected total reward of a slate under the item-position model (see the module doc)."""
    return _ratio(*_terms(log, action_dist, "slate-ips", None, 0.0, 0))


def estimate(
    log: BanditLog,
    action_dist: np.ndarray,
    estimator: Estimator = "dr",
    *,
    estimated_rewards: np.ndarray | None = None,
    tau: float = 1.0,
    alpha: float = 0.05,
    bootstrap: int = 0,
    seed: int = 0,
) -> Estimate:
    """``estimator``'s value with a standard error and a (1 - ``alpha``) interval.

    ``bootstrap=0``: a normal interval, se = std of the per-round terms / sqrt(n) (for snips
    and replay, the delta method's: terms num - value·den, divided by mean(den)).
    ``bootstrap=B``: B seeded resamples of the rounds (slates for slate-ips) with the action
    distribution and reward model held fixed; se = their std, the interval their percentiles."""
    if not 0 < alpha < 1:
        raise OPEError(f"alpha must be in (0, 1), got {alpha!r}")
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise OPEError(f"bootstrap must be a number of resamples >= 0, got {bootstrap!r}")
    num, den = _terms(log, action_dist, estimator, estimated_rewards, tau, seed)
    value, n = _ratio(num, den), len(num)
    if bootstrap:
        rng = np.random.default_rng(seed)
        samples = np.empty(bootstrap)
        for b in range(bootstrap):
            pick = rng.integers(0, n, n)
            d = None if den is None else den[pick]
            samples[b] = np.nan if d is not None and d.sum() == 0 else _ratio(num[pick], d)
        low, high = np.nanquantile(samples, [alpha / 2, 1 - alpha / 2])
        se = float(np.nanstd(samples, ddof=1)) if bootstrap > 1 else math.nan
        return Estimate(estimator, value, se, float(low), float(high), n, alpha, "bootstrap")
    influence = num - value if den is None else (num - value * den) / den.mean()
    se = float(influence.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    z = NormalDist().inv_cdf(1 - alpha / 2)
    return Estimate(estimator, value, se, value - z * se, value + z * se, n, alpha, "normal")


# ---------------------------------------------------------------------- reward model
def fit_reward_model(
    log: BanditLog,
    *,
    folds: int = 1,
    l2: float = 1.0,
    interactions: bool = False,
    smoothing: float = 10.0,
    max_steps: int = 30,
    seed: int = 0,
) -> np.ndarray:
    """q̂(x_i, a, k) for every row, action and position: (n, n_actions, len_list), numpy only.

    * With ``log.context``: ridge-regularised logistic regression, fitted by Newton (IRLS)
      steps, on [1, one-hot action, one-hot position, standardised context] (plus context ⊗
      action one-hot when ``interactions``: d·n_actions more columns, and a Newton step costs
      n·columns²). ``l2`` penalises every weight but the intercept. Rewards must lie in [0, 1].
    * Without: per-(action, position) means shrunk towards the log's mean reward by
      ``smoothing`` pseudo-rows: (Σr + smoothing·mean) / (count + smoothing).

    ``folds > 1`` cross-fits (Chernozhukov et al.'s recipe for DR): the rows (whole slates,
    when the log has slate_id) are split into ``folds`` seeded folds and each fold's
    predictions come from a model fitted on the others, so no row is scored by a model that
    saw its reward. ``folds = 1`` fits once on everything (in-sample)."""
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 1:
        raise OPEError(f"folds must be a positive integer, got {folds!r}")
    if l2 < 0 or smoothing < 0:
        raise OPEError(f"l2 and smoothing must be >= 0, got {l2!r} and {smoothing!r}")
    n = log.n_rounds
    if n == 0:
        raise OPEError("the log is empty")
    if log.context is not None and ((log.reward < 0) | (log.reward > 1)).any():
        bad = _first((log.reward < 0) | (log.reward > 1))
        raise OPEError(f"reward[{bad}] = {log.reward[bad]}: the logistic reward model needs rewards in [0, 1]")
    out = np.empty((n, log.n_actions, log.len_list))
    if folds == 1:
        everything = np.arange(n)
        out[:] = _fit_predict(log, everything, everything, l2, interactions, smoothing, max_steps)
        return out
    units = log.slate_id if log.slate_id is not None else np.arange(n)
    unique, unit = np.unique(units, return_inverse=True)
    if len(unique) < folds:
        raise OPEError(f"folds={folds} needs at least {folds} rounds (slates), the log has {len(unique)}")
    fold_of_unit = np.random.default_rng(seed).permutation(len(unique)) % folds
    fold = fold_of_unit[unit]
    for f in range(folds):
        test = np.flatnonzero(fold == f)
        out[test] = _fit_predict(log, np.flatnonzero(fold != f), test, l2, interactions, smoothing, max_steps)
    return out


def _fit_predict(log: BanditLog, train: np.ndarray, test: np.ndarray, l2: float, interactions: bool,
                 smoothing: float, max_steps: int) -> np.ndarray:
    y = log.reward[train]
    a, k = log.action[train], log.position[train]
    shape = (len(test), log.n_actions, log.len_list)
    if log.context is None:
        prior = float(y.mean())
        count = np.zeros((log.n_actions, log.len_list))
        total = np.zeros_like(count)
        np.add.at(count, (a, k), 1.0)
        np.add.at(total, (a, k), y)
        table = (total + smoothing * prior) / np.maximum(count + smoothing, 1e-300)
        table = np.where(count + smoothing > 0, table, prior)
        return np.broadcast_to(table, shape).copy()
    if y.min() == y.max():  # one reward value in training: the logit would run off to ±inf
        return np.full(shape, float(y[0]))
    mean = log.context[train].mean(axis=0)
    std = log.context[train].std(axis=0)
    std[std == 0] = 1.0
    x = (log.context - mean) / std
    d, m, p_len = x.shape[1], log.n_actions, log.len_list
    # columns: intercept | action one-hot (m) | position one-hot (p_len) | context (d) | context ⊗ action (d·m)
    width = 1 + m + p_len + d + (d * m if interactions else 0)
    design = np.zeros((len(train), width))
    rows = np.arange(len(train))
    design[:, 0] = 1.0
    design[rows, 1 + a] = 1.0
    design[rows, 1 + m + k] = 1.0
    design[:, 1 + m + p_len: 1 + m + p_len + d] = x[train]
    if interactions:
        start = 1 + m + p_len + d
        cols = start + a[:, None] * d + np.arange(d)[None, :]
        design[rows[:, None], cols] = x[train]
    coef = _logistic_irls(design, y, l2, max_steps)
    intercept, action_w = coef[0], coef[1: 1 + m]
    position_w, context_w = coef[1 + m: 1 + m + p_len], coef[1 + m + p_len: 1 + m + p_len + d]
    xt = x[test]
    logit = (intercept + xt @ context_w)[:, None, None] + action_w[None, :, None] + position_w[None, None, :]
    if interactions:
        logit = logit + (xt @ coef[1 + m + p_len + d:].reshape(m, d).T)[:, :, None]
    return 1.0 / (1.0 + np.exp(-logit))


def _logistic_irls(design: np.ndarray, y: np.ndarray, l2: float, max_steps: int) -> np.ndarray:
    """Ridge logistic regression by Newton steps with step halving (the intercept, column 0,
    is not penalised)."""
    penalty = np.full(design.shape[1], l2)
    penalty[0] = 0.0
    coef = np.zeros(design.shape[1])
    rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    coef[0] = math.log(rate / (1 - rate))  # start at the base rate: fewer steps on rare clicks

    def loss(c: np.ndarray) -> float:
        z = design @ c
        return float(np.logaddexp(0.0, z).sum() - y @ z + 0.5 * (penalty * c * c).sum())

    current = loss(coef)
    for _ in range(max_steps):
        prob = 1.0 / (1.0 + np.exp(-(design @ coef)))
        grad = design.T @ (prob - y) + penalty * coef
        hess = (design * (prob * (1 - prob))[:, None]).T @ design + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-4:
            trial = coef - scale * step
            value = loss(trial)
            if value <= current + 1e-12:
                break
            scale /= 2
        else:
            break
        coef, previous, current = trial, current, value
        if np.abs(scale * step).max() < 1e-7 or previous - current < 1e-10 * max(1.0, abs(current)):
            break
    return coef


# ---------------------------------------------------------------------- readers
def _sorted_ids(ids: Iterable[str]) -> list[str]:
    """Numeric order when every id is an integer (OBD's item ids 0..n-1 then equal obp's action
    indices), else string order."""
    unique = sorted(set(ids))
    if all(i.lstrip("-").isdigit() for i in unique):
        return sorted(unique, key=int)
    return unique


def log_from_open_bandit(dataset: Dataset) -> BanditLog:
    """A :class:`BanditLog` from :func:`tastemaker.data.loaders.obd.load_open_bandit`.

    Rows in file order (the ``row`` column); ``action`` = the item's index among the catalog's
    item ids in numeric order (= OBD's item_id, as obp indexes actions); ``position`` = slot - 1
    (0-based, len_list 3); ``pscore`` = propensity_score; ``reward`` = click; ``context`` =
    every user_feature_0..3 category one-hot (features in order, categories sorted; obp drops
    the first category of each, which a model with an intercept does not need), followed by
    the user-item affinity columns in action order. ``slate_id`` is None: the small sample's
    rows do not say which were shown together."""
    inter = dataset.interactions
    missing = [c for c in ("position", "propensity_score", "click", "row") if c not in inter.columns]
    contexts = dataset.extras.get("contexts") if isinstance(dataset.extras, dict) else None
    if missing or contexts is None:
        what = f"interactions lack {missing}" if missing else "extras['contexts'] is missing"
        raise OPEError(f"log_from_open_bandit needs a Dataset from load_open_bandit: {what}")
    inter = inter.sort_values("row", kind="stable")
    action_ids = _sorted_ids(str(i) for i in dataset.items.ids)
    index = {item: a for a, item in enumerate(action_ids)}
    items = dataset.items.decode(inter["item"].to_numpy())
    action = np.array([index[str(i)] for i in items], dtype=np.int64)
    contexts = contexts.set_index("row").loc[inter["row"].to_numpy()]
    blocks = []
    for feature in sorted(c for c in contexts.columns if c.startswith("user_feature_")):
        values = contexts[feature].astype(str).to_numpy()
        categories = np.array(sorted(set(values.tolist())), dtype=object)
        blocks.append((values[:, None] == categories[None, :]).astype(np.float64))
    affinity = [f"user-item_affinity_{item}" for item in action_ids if f"user-item_affinity_{item}" in contexts.columns]
    blocks.append(contexts[affinity].to_numpy(dtype=np.float64))
    return BanditLog(
        action=action,
        reward=inter["click"].to_numpy(dtype=np.float64),
        pscore=inter["propensity_score"].to_numpy(dtype=np.float64),
        position=inter["position"].to_numpy(dtype=np.int64) - 1,
        n_actions=len(action_ids),
        len_list=3,
        context=np.hstack(blocks),
        action_ids=np.array(action_ids, dtype=object),
    )


@dataclass(frozen=True, eq=False)
class ImpressionLog:
    """What :func:`log_from_events` read: the :class:`BanditLog` and, per row, the user id,
    the request id and the logging policy's name and version (to recompute contexts, or to
    keep one policy's rows with ``log.take(mask)``)."""

    log: BanditLog
    user_ids: np.ndarray
    request_ids: np.ndarray
    policies: np.ndarray
    policy_versions: np.ndarray


def log_from_events(events: Iterable[Event], *, reward_types: Sequence[str] = DEFAULT_REWARD_TYPES) -> ImpressionLog:
    """A bandit log from the service's events (:class:`tastemaker.protocols.Event`).

    Each ``event_type="impression"`` is a row; its ``context`` must hold ``request_id``,
    ``position`` (0-based int), ``propensity`` (float in (0, 1]), ``policy`` (str) and
    ``policy_version`` (int). Its reward is 1 if an event whose type is in ``reward_types``
    carries the same ``request_id`` in its context and the same item id, else 0. A repeated
    impression of the same (request_id, item_id) (a retried write) counts once; reward events
    without a request_id cannot be attributed and are ignored. ``action_ids`` are the distinct
    impressed item ids (numeric order if all are integers, else sorted), ``len_list`` = the
    largest position + 1, ``slate_id`` = the request's index in order of first appearance."""
    rewards: set[tuple[str, str]] = set()
    rows: list[tuple[str, str, str, int, float, str, int]] = []
    seen: set[tuple[str, str]] = set()
    kinds = set(reward_types)
    for index, event in enumerate(events):
        context = event.context or {}
        if event.event_type in kinds:
            if "request_id" in context:
                rewards.add((str(context["request_id"]), str(event.item_id)))
            continue
        if event.event_type != "impression":
            continue
        where = f"events[{index}] (impression)"
        for key in ("request_id", "position", "propensity", "policy", "policy_version"):
            if key not in context:
                raise OPEError(f"{where}: context.{key} is missing")
        position = context["position"]
        if isinstance(position, bool) or not isinstance(position, (int, np.integer)) or position < 0:
            raise OPEError(f"{where}: context.position must be an integer >= 0, got {position!r}")
        try:
            propensity = float(context["propensity"])
            version = int(context["policy_version"])
        except (TypeError, ValueError):
            raise OPEError(
                f"{where}: context.propensity must be a number and context.policy_version an integer"
            ) from None
        if not 0 < propensity <= 1:
            raise OPEError(f"{where}: context.propensity must be in (0, 1], got {propensity!r}")
        key = (str(context["request_id"]), str(event.item_id))
        if key in seen:
            continue
        seen.add(key)
        rows.append((str(event.user_id), key[0], key[1], int(position), propensity, str(context["policy"]), version))
    if not rows:
        raise OPEError("log_from_events: no impression events")
    users, requests, items, positions, propensities, policies, versions = (list(c) for c in zip(*rows))
    action_ids = _sorted_ids(items)
    index = {item: a for a, item in enumerate(action_ids)}
    slate_index: dict[str, int] = {}
    for r in requests:
        slate_index.setdefault(r, len(slate_index))
    log = BanditLog(
        action=np.array([index[i] for i in items], dtype=np.int64),
        reward=np.array([1.0 if (r, i) in rewards else 0.0 for r, i in zip(requests, items)]),
        pscore=np.array(propensities),
        position=np.array(positions, dtype=np.int64),
        n_actions=len(action_ids),
        len_list=max(positions) + 1,
        slate_id=np.array([slate_index[r] for r in requests], dtype=np.int64),
        action_ids=np.array(action_ids, dtype=object),
    )
    return ImpressionLog(log, np.array(users, dtype=object), np.array(requests, dtype=object),
                         np.array(policies, dtype=object), np.array(versions, dtype=np.int64))


def log_from_store(store: SQLStore, *, since: int = 0, reward_types: Sequence[str] = DEFAULT_REWARD_TYPES,
                   page: int = 50_000) -> ImpressionLog:
    """:func:`log_from_events` over every event of ``store`` with id > ``since`` (read in pages)."""

    def events() -> Iterable[Event]:
        last = since
        while True:
            batch = store.events_since(last, page)
            if not batch:
                return
            for last, event in batch:
                yield event

    return log_from_events(events(), reward_types=reward_types)


# ---------------------------------------------------------------------- policies
def action_dist_from_policy(
    policy: Policy,
    contexts: np.ndarray | None,
    *,
    action_ids: Sequence[str] | np.ndarray,
    len_list: int,
    arms_features: np.ndarray | None = None,
    n_rounds: int | None = None,
    draws: int | None = None,
) -> np.ndarray:
    """(n, n_actions, len_list): ``policy``'s :meth:`~tastemaker.online.base.Policy.distribution`
    over all ``action_ids`` (the arms, with ``arms_features`` for linear policies) for each
    row's context (``contexts`` (n, d)), or, for a context-free policy, ``contexts=None`` and
    ``n_rounds`` rows of the one distribution. Positions beyond the number of arms stay 0.
    The policy is only read, never updated."""
    from tastemaker.online.base import Arms

    arms = Arms.of(action_ids, arms_features)
    if isinstance(len_list, bool) or not isinstance(len_list, (int, np.integer)) or len_list < 1:
        raise OPEError(f"len_list must be a positive integer, got {len_list!r}")
    k = min(int(len_list), len(arms))
    if contexts is None:
        if n_rounds is None or n_rounds < 0:
            raise OPEError("action_dist_from_policy needs n_rounds when contexts is None")
        out = np.zeros((int(n_rounds), len(arms), int(len_list)))
        out[:, :, :k] = policy.distribution(None, arms, k, draws)[None]
        return out
    contexts = np.asarray(contexts, dtype=np.float64)
    if contexts.ndim != 2:
        raise OPEError(f"contexts must be (n, d), got shape {contexts.shape}")
    out = np.zeros((len(contexts), len(arms), int(len_list)))
    for i, x in enumerate(contexts):
        out[i, :, :k] = policy.distribution(x, arms, k, draws)
    return out
