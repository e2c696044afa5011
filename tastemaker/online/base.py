"""The ``Policy`` contract: choose a slate among candidate arms, learn from feedback.

A decision is ``select(context, arms, k)``:

* ``context``: the user's vector from an offline model (``None`` for context-free policies or
  an anonymous request without one);
* ``arms``: the candidates (:class:`Arms`): their ids, optionally their feature vectors (item
  vectors from the same offline model) and their prior scores (the ranker's);
* ``k``: the slate length.

It returns a :class:`Selection`: the chosen arms in display order and, per position, the
probability that the policy puts that arm there (its *propensity*), which is what off-policy
evaluation needs (:mod:`tastemaker.eval.ope`). A policy's randomness comes from its own
seeded generator, so a fixed seed replays the same slates.

Learning is ``update(feedback)``. A :class:`Feedback` either records an impression
(``shown=True``: the arm was seen, with the reward known so far, usually 0) or adds reward to
an impression already recorded (``shown=False``: a click arriving later). Every policy keeps
per-arm *sufficient statistics* that only ever add up (counts, reward sums, and for linear
policies Σxxᵀ and Σrx), so two replicas' states merge by summing (:meth:`Policy.merge`), and
an impression followed by its click equals one impression with its reward.

Modelled on river's ``bandit.base.Policy``: the public methods do the bookkeeping (input
checks, the generator, the version, propensities, statistics), and a subclass implements one
hook, :meth:`Policy._scores`: one score per arm for this decision (a posterior draw for
Thompson sampling, an index for UCB). Policies whose statistics are not (count, reward sum)
per arm override :meth:`Policy._statistics` and :meth:`Policy._increment`; policies whose
slate is not "the k best scores" override :meth:`Policy._slate`; exact propensities, where
they have a closed form, override :meth:`Policy.distribution`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tastemaker.errors import TastemakerError


class PolicyError(TastemakerError, ValueError):
    """Bad input to a policy (names what is wrong)."""


@dataclass(frozen=True)
class Arms:
    """The candidates of one decision. ``ids``: (n,) arm ids (item ids, as str);
    ``features``: (n, d) float arm features or None; ``prior``: (n,) prior scores (the
    ranker's; higher is better) or None. Ties between arms go to the higher prior, then to
    the earlier arm."""

    ids: np.ndarray
    features: np.ndarray | None = None
    prior: np.ndarray | None = None

    @classmethod
    def of(cls, ids: Sequence[str] | np.ndarray, features: np.ndarray | None = None, prior: np.ndarray | None = None) -> Arms:
        """Checked arms: ids as a str array, features float64 (n, d), prior float64 (n,)."""
        ids = np.asarray([str(i) for i in ids], dtype=object)
        if len(set(ids.tolist())) != len(ids):
            raise PolicyError("arms: ids must be unique")
        if features is not None:
            features = np.asarray(features, dtype=np.float64)
            if features.ndim != 2 or len(features) != len(ids):
                raise PolicyError(f"arms.features must be ({len(ids)}, d), got shape {features.shape}")
            if not np.isfinite(features).all():
                raise PolicyError("arms.features contain NaN or infinite values")
        if prior is not None:
            prior = np.asarray(prior, dtype=np.float64).reshape(-1)
            if len(prior) != len(ids):
                raise PolicyError(f"arms.prior has {len(prior)} values for {len(ids)} arms")
            prior = np.where(np.isfinite(prior), prior, -np.inf)
        return cls(ids, features, prior)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Selection:
    """A chosen slate: ``rows`` index into the decision's arms (display order), ``arm_ids``
    are their ids, ``propensities[p]`` = P(the policy shows ``arm_ids[p]`` at position p)."""

    rows: np.ndarray
    arm_ids: np.ndarray
    propensities: np.ndarray
    policy: str
    version: int

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class Feedback:
    """What happened to one shown arm. ``shown=True``: an impression (counted once) with
    ``reward`` so far; ``shown=False``: ``reward`` added to an impression already counted (a
    late click). ``context`` and ``features`` are the user vector and the arm's features as
    they were given to :meth:`Policy.select` (linear policies need them)."""

    arm_id: str
    reward: float
    shown: bool = True
    context: np.ndarray | None = None
    features: np.ndarray | None = None
    position: int = 0


class PolicyConfig(BaseModel):
    """Base of policy configs: typed, frozen, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: Monte-Carlo draws per decision for the propensities of randomised policies without a
    #: closed form (Thompson sampling): the shown slate counts as one of them, so no
    #: propensity is ever 0
    propensity_draws: int = Field(200, ge=1, le=100_000)


class Policy(ABC):
    """See the module docstring. ``name`` is the kind (e.g. ``"diag-linucb"``)."""

    name: ClassVar[str] = "policy"
    Config: ClassVar[type[PolicyConfig]] = PolicyConfig
    #: True when the same state and input always give the same slate (propensities are 1)
    deterministic: ClassVar[bool] = False
    #: True when the policy reads ``context`` and arm ``features`` (linear policies)
    contextual: ClassVar[bool] = False

    def __init__(self, config: PolicyConfig | None = None, *, seed: int = 0, **params: Any) -> None:
        if config is not None and params:
            raise TypeError("pass either a config or keyword parameters, not both")
        self.config = config if config is not None else self.Config(**params)
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        #: bumped by every update that changed the state (logged with each impression)
        self.version = 0
        self.decisions = 0
        #: per arm id: its sufficient statistics (a float64 vector of :meth:`_statistics` size)
        self.stats: dict[str, np.ndarray] = {}
        #: the dimension of contexts and arm features, fixed by the first one seen
        self.dim: int | None = None
        #: the current decision's exploration scale (set by select/distribution; a policy
        #: instance serves one decision at a time: callers that share one hold a lock)
        self._explore = 1.0

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items())
        return f"{type(self).__name__}({params})"

    # ------------------------------------------------------------------ decisions
    def select(
        self, context: np.ndarray | None, arms: Arms, k: int, *, explore: float = 1.0, rng: np.random.Generator | None = None
    ) -> Selection:
        """Choose ``min(k, len(arms))`` distinct arms, in display order, with their propensities.
        ``explore`` scales this decision's exploration (UCB's bonus, epsilon, the posterior's
        spread): the novelty intent of the user and session (1 = as configured, 0 = greedy).
        ``rng``: the decision's random draws (default: the policy's own seeded generator; a
        service passes one derived from the request, so a repeated request gets the same slate
        until the policy learns something)."""
        context = self._check_context(context, arms)
        self._explore = self._check_explore(explore)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise PolicyError(f"k must be a positive integer, got {k!r}")
        k = min(int(k), len(arms))
        if k == 0:
            return Selection(np.zeros(0, np.int64), np.zeros(0, dtype=object), np.zeros(0), self.name, self.version)
        rows = np.asarray(self._slate(context, arms, k, self.rng if rng is None else rng), dtype=np.int64)
        if self.deterministic:
            propensities = np.ones(k)
        else:
            propensities = self._propensities_of(context, arms, rows)
        self.decisions += 1
        return Selection(rows, arms.ids[rows], propensities, self.name, self.version)

    def distribution(
        self, context: np.ndarray | None, arms: Arms, k: int, draws: int | None = None, *, explore: float = 1.0
    ) -> np.ndarray:
        """(len(arms), k): P(arm i at position p) under the current state. Deterministic
        policies: exact (one 1 per position). Others: the share of ``draws`` simulated slates
        (``config.propensity_draws`` by default), from a generator derived from the policy's
        seed and version: the same state gives the same answer, and the policy's own draws are
        untouched."""
        context = self._check_context(context, arms)
        self._explore = self._check_explore(explore)
        k = min(int(k), len(arms))
        out = np.zeros((len(arms), k))
        if k == 0:
            return out
        if self.deterministic:
            rows = self._slate(context, arms, k, np.random.default_rng(0))
            out[rows, np.arange(k)] = 1.0
            return out
        draws = draws or self.config.propensity_draws
        rng = np.random.default_rng([self.seed, self.version, 1])
        for _ in range(draws):
            rows = self._slate(context, arms, k, rng)
            out[rows, np.arange(k)] += 1.0
        return out / draws

    def _propensities_of(self, context: np.ndarray | None, arms: Arms, rows: np.ndarray) -> np.ndarray:
        """P(rows[p] at p): the chosen slate counts as one of the simulated draws."""
        draws = self.config.propensity_draws
        if draws <= 1:
            return np.ones(len(rows))
        counts = self.distribution(context, arms, len(rows), draws - 1, explore=self._explore)[rows, np.arange(len(rows))] * (draws - 1)
        return (counts + 1.0) / draws

    def _slate(self, context: np.ndarray | None, arms: Arms, k: int, rng: np.random.Generator) -> np.ndarray:
        """Rows of the k arms shown, in order: by default the k best of one :meth:`_scores` draw."""
        return best_rows(self._scores(context, arms, rng), arms, k)

    @abstractmethod
    def _scores(self, context: np.ndarray | None, arms: Arms, rng: np.random.Generator) -> np.ndarray:
        """One score per arm for this decision (higher is shown first); may use ``rng``."""

    # ------------------------------------------------------------------ learning
    def update(self, feedback: Sequence[Feedback]) -> None:
        """Learn from ``feedback`` (see :class:`Feedback`); validates everything first, so a bad
        item changes nothing."""
        checked = [self._check_feedback(f, k) for k, f in enumerate(feedback)]
        for f in checked:
            key = self._key(f)
            stats = self.stats.get(key)
            if stats is None:
                stats = self.stats[key] = np.zeros(self._statistics())
            stats += self._increment(f)
        if checked:
            self.version += 1

    def _key(self, feedback: Feedback) -> str:
        """Whose statistics ``feedback`` adds to: its arm's (a per-position policy: arm and position)."""
        return str(feedback.arm_id)

    def _statistics(self) -> int:
        """The length of one arm's statistics vector: (impressions, reward sum) by default."""
        return 2

    def _increment(self, feedback: Feedback) -> np.ndarray:
        """What ``feedback`` adds to its arm's statistics."""
        return np.array([1.0 if feedback.shown else 0.0, feedback.reward])

    def counts(self, arms: Arms) -> tuple[np.ndarray, np.ndarray]:
        """(impressions, reward sums) per arm, 0 for arms never seen (default statistics).
        Remembered for the last ``arms`` until the next update: a decision's simulated draws
        (propensities) read them hundreds of times."""
        memo = getattr(self, "_counts_memo", None)
        if memo is not None and memo[0] is arms and memo[1] == self.version:
            return memo[2], memo[3]
        n = np.zeros(len(arms))
        r = np.zeros(len(arms))
        for i, key in enumerate(arms.ids):
            s = self.stats.get(str(key))
            if s is not None:
                n[i], r[i] = s[0], s[1]
        self._counts_memo = (arms, self.version, n, r)  # holds arms: its id cannot be reused
        return n, r

    # ------------------------------------------------------------------ state
    def merge(self, other: Policy) -> None:
        """Add ``other``'s statistics (another replica of the same policy and config) to these."""
        if type(other) is not type(self) or other.config != self.config:
            raise PolicyError(f"cannot merge {other!r} into {self!r}: a different policy or config")
        if self.dim is not None and other.dim is not None and self.dim != other.dim:
            raise PolicyError(f"cannot merge: dimensions {other.dim} and {self.dim} differ")
        for key, stats in other.stats.items():
            mine = self.stats.get(key)
            self.stats[key] = stats.copy() if mine is None else mine + stats
        self.dim = self.dim if self.dim is not None else other.dim
        self.version += 1

    def state(self) -> dict[str, Any]:
        """Everything needed to restore the policy (JSON-safe)."""
        return {
            "policy": self.name,
            "config": self.config.model_dump(),
            "seed": self.seed,
            "version": self.version,
            "decisions": self.decisions,
            "dim": self.dim,
            "rng": self.rng.bit_generator.state,
            "stats": {key: value.tolist() for key, value in self.stats.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.state())

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Policy:
        """A policy restored from :meth:`state` (of this class, or of any policy via
        :func:`tastemaker.online.policy_from_state`)."""
        if state.get("policy") != cls.name:
            raise PolicyError(f"state is of policy {state.get('policy')!r}, not {cls.name!r}")
        policy = cls(cls.Config(**state["config"]), seed=int(state["seed"]))
        policy.version = int(state["version"])
        policy.decisions = int(state["decisions"])
        policy.dim = state["dim"]
        policy.rng.bit_generator.state = state["rng"]
        size = policy._statistics()
        for key, values in state["stats"].items():
            array = np.asarray(values, dtype=np.float64)
            if array.shape != (size,):
                raise PolicyError(f"state: arm {key!r} has {array.shape} statistics, expected ({size},)")
            policy.stats[key] = array
        return policy

    # ------------------------------------------------------------------ checks
    def _check_context(self, context: np.ndarray | None, arms: Arms) -> np.ndarray | None:
        if not isinstance(arms, Arms):
            raise PolicyError("arms must be an Arms (use Arms.of(ids, features, prior))")
        if not self.contextual:
            return None
        if context is None:
            raise PolicyError(f"{self.name} needs a context vector (the user's)")
        context = np.asarray(context, dtype=np.float64).reshape(-1)
        if not np.isfinite(context).all():
            raise PolicyError("context contains NaN or infinite values")
        if arms.features is not None and arms.features.shape[1] != len(context):
            raise PolicyError(f"arms.features have dimension {arms.features.shape[1]}, the context {len(context)}")
        self._check_dim(len(context), "context")
        return context

    @staticmethod
    def _check_explore(explore: float) -> float:
        if not np.isfinite(explore) or explore < 0:
            raise PolicyError(f"explore must be a finite number >= 0, got {explore!r}")
        return float(explore)

    def _check_dim(self, dim: int, what: str) -> None:
        if self.dim is None:
            self.dim = dim
        elif dim != self.dim:
            raise PolicyError(f"{what} has dimension {dim}; this policy's is {self.dim}")

    def _check_feedback(self, f: Feedback, index: int) -> Feedback:
        where = f"feedback[{index}]"
        if not isinstance(f, Feedback):
            raise PolicyError(f"{where}: not a Feedback")
        if not np.isfinite(f.reward):
            raise PolicyError(f"{where}.reward must be finite, got {f.reward!r}")
        if not str(f.arm_id):
            raise PolicyError(f"{where}.arm_id is empty")
        if self.contextual:
            if f.context is None:
                raise PolicyError(f"{where}.context is needed by {self.name}")
            context = np.asarray(f.context, dtype=np.float64).reshape(-1)
            if not np.isfinite(context).all():
                raise PolicyError(f"{where}.context contains NaN or infinite values")
            self._check_dim(len(context), f"{where}.context")
            features = None
            if f.features is not None:
                features = np.asarray(f.features, dtype=np.float64).reshape(-1)
                if len(features) != len(context):
                    raise PolicyError(f"{where}.features have dimension {len(features)}, the context {len(context)}")
            return Feedback(str(f.arm_id), float(f.reward), bool(f.shown), context, features, int(f.position))
        return Feedback(str(f.arm_id), float(f.reward), bool(f.shown), None, None, int(f.position))


def best_rows(scores: np.ndarray, arms: Arms, k: int) -> np.ndarray:
    """The rows of the ``k`` best scores; ties to the higher prior, then the earlier arm."""
    scores = np.asarray(scores, dtype=np.float64)
    prior = arms.prior if arms.prior is not None else np.zeros(len(scores))
    order = np.lexsort((np.arange(len(scores)), -prior, -scores))
    return order[:k]
