"""Explorers pick the shown slate from the ranked list and log a propensity per item.

:class:`GreedyExplorer` shows the top ``k`` as ranked, each with propensity 1 (the choice is
deterministic). The online-learning policies (bandits, in-slate Thompson sampling) implement
the same contract and plug in here: :class:`BanditExplorer` (``kind = "bandit"``) lets a policy
of :mod:`tastemaker.online` fill the slate's exploration slots.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from tastemaker.index.recommender import has_vectors
from tastemaker.online.base import Arms, Feedback, Policy
from tastemaker.online.novelty import new_to_user, novelty_intent
from tastemaker.pipeline.base import Explorer, Source, StageConfig
from tastemaker.rerank.base import relevance
from tastemaker.types import ItemList, Query, Slate


class GreedyExplorer(Explorer):
    kind = "greedy"

    def select(self, query: Query, items: ItemList, k: int) -> Slate:
        shown = items.take(np.arange(min(k, len(items))))
        return Slate(shown, np.ones(len(shown), dtype=np.float64), policy=self.name, policy_version="0")


class BanditExplorerConfig(StageConfig):
    """``policy``: a policy of :mod:`tastemaker.online` by name, with ``params`` (its config);
    ``slots``: how many of the shown positions the policy fills (the last ones; the ranker's
    first ``n - slots`` items keep the positions before them); ``pool``: the ranked items, after
    those, that the policy chooses among; ``vectors``: the model source whose user vector is
    the context and whose item vectors are the arms' features (needed by the linear policies);
    ``novelty``: scale exploration by the user's novelty intent
    (:mod:`tastemaker.online.novelty`), within [``explore_low``, ``explore_high``], and give
    candidates from categories new to the user a bonus of up to ``novelty_weight`` on the
    prior. The **prior** an arm gets is the ranker's score min-max normalised over the pool
    (:func:`tastemaker.rerank.base.relevance`) times ``top_click_rate`` (the click rate you expect of the best-ranked pool item): a
    click rate, which is what the policies' offline hybrids read (``prior_strength`` of the
    Beta policies, ``prior_scale = "auto"`` of the linear ones)."""

    policy: str = "diag-linucb"
    params: dict[str, Any] = {}
    slots: int = Field(2, ge=1, le=1000)
    pool: int = Field(20, ge=1, le=10_000)
    vectors: str | None = None
    novelty: bool = False
    novelty_weight: float = Field(0.2, ge=0)
    session: int = Field(10, ge=1)
    explore_low: float = Field(0.25, ge=0)
    explore_high: float = Field(1.75, ge=0)
    top_click_rate: float = Field(0.05, gt=0, le=1)
    seed: int = 0

    @model_validator(mode="after")
    def _policy_builds(self) -> BanditExplorerConfig:
        from tastemaker.online import policy_class

        policy_class(self.policy).Config(**self.params)  # a bad name or parameter is a config error
        return self


class BanditExplorer(Explorer):
    """A bandit policy fills the exploration slots (see :class:`BanditExplorerConfig`), with the
    policy's propensity for each; the ranked positions before them have propensity 1.

    The live policy (``policy_``) is shared by the copies a service makes of its pipeline when
    items are added (:meth:`__deepcopy__`), so feedback never lands on a stale copy; decisions
    and updates take turns on a lock."""

    kind = "bandit"
    Config = BanditExplorerConfig
    config: BanditExplorerConfig
    policy_: Policy

    def __init__(self, config: StageConfig | None = None, *, name: str | None = None, **params: Any) -> None:
        super().__init__(config, name=name, **params)
        self._lock = threading.Lock()
        self._source: Any = None

    def __deepcopy__(self, memo: dict[int, Any]) -> BanditExplorer:
        clone = copy.copy(self)
        memo[id(self)] = clone
        clone.__dict__ = {k: v if k in ("policy_", "_lock", "_source") else copy.deepcopy(v, memo) for k, v in self.__dict__.items()}
        return clone

    def _new_policy(self) -> Policy:
        from tastemaker.online import policy_class

        cls = policy_class(self.config.policy)
        return cls(cls.Config(**self.config.params), seed=self.config.seed)

    def _fit(self, dataset: Any, options: Any) -> None:
        self.policy_ = self._new_policy()

    def use_sources(self, sources: Sequence[Source]) -> None:
        if self.config.vectors is None:
            if self.policy_.contextual:
                raise ValueError(f"{self.name}: policy {self.config.policy!r} reads user and item vectors: "
                                 "set vectors = \"<a model source with vectors, e.g. als>\"")
            return
        by_name = {s.name: s for s in sources}
        source = by_name.get(self.config.vectors)
        if source is None or not callable(getattr(source, "vectors", None)) or not has_vectors(getattr(source, "model_", None)):
            raise ValueError(f"{self.name}: vectors = {self.config.vectors!r} names no model source with vectors "
                             f"(this pipeline's sources: {', '.join(by_name)})")
        self._source = source

    # ------------------------------------------------------------------ decisions
    def select(self, query: Query, items: ItemList, k: int) -> Slate:
        self._check_fitted()
        slots = min(self.config.slots, k, len(items))
        kept = max(0, min(k, len(items)) - slots)
        pool = items.take(np.arange(kept, min(len(items), kept + self.config.pool)))
        head = items.take(np.arange(kept))
        if not len(pool) or slots == 0:
            return Slate(head, np.ones(len(head)), policy=self.policy_label(), policy_version=str(self.policy_.version))
        resolved = self.context_.resolve([query])[0]
        context, features = self._vectors(query, pool.item_codes)
        prior = relevance(pool.scores)  # min-max over the pool, as the rerankers read scores
        explore = 1.0
        if self.config.novelty:
            g = novelty_intent(resolved.history, self.context_.categories, self.config.session)
            explore = self.config.explore_low + (self.config.explore_high - self.config.explore_low) * g
            prior = prior + self.config.novelty_weight * g * new_to_user(resolved.history, pool.item_codes, self.context_.categories)
        arms = Arms.of(pool.item_ids, features, self.config.top_click_rate * prior)
        with self._lock:
            # the decision's draws come from (seed, policy version, who asks): a repeated request
            # gets the same slate until the policy learns something, and batch equals single
            rng = np.random.default_rng([self.config.seed, self.policy_.version, _stable_hash(query)])
            chosen = self.policy_.select(context, arms, slots, explore=explore, rng=rng)
            version = str(self.policy_.version)
        picked = pool.take(chosen.rows)
        reason = f"picked by {self.policy_.name} to learn from your clicks"
        picked = picked.with_provenance(sources=[self.name] * len(picked), reasons=[reason] * len(picked))
        shown = _concat(head, picked)
        return Slate(shown, np.concatenate([np.ones(len(head)), chosen.propensities]), policy=self.policy_label(), policy_version=version)

    def policy_label(self) -> str:
        return f"{self.name}:{self.policy_.name}"

    def _vectors(self, query: Query, codes: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        if self._source is None:
            return None, None
        found = self._source.vectors([query], codes)
        if found is None:
            return None, None
        users, block = found
        return users[0], block

    # ------------------------------------------------------------------ learning
    def feedback(self, user: str | None, item_ids: Sequence[str], rewards: Sequence[float], shown: bool,
                 positions: Sequence[int] | None = None) -> list[Feedback]:
        """Feedback on ``item_ids`` shown to ``user``, with the context and arm features the
        policy reads recomputed from the vector source (the same vectors a decision uses)."""
        codes = self.context_.items.encode(list(item_ids), missing="mark")
        known = codes >= 0
        context, features = self._vectors(Query(user=user), np.where(known, codes, 0))
        positions = list(positions) if positions is not None else [0] * len(item_ids)
        out = []
        for i, item in enumerate(item_ids):
            arm_features = None if features is None else (features[i] if known[i] else np.zeros(features.shape[1]))
            out.append(Feedback(str(item), float(rewards[i]), shown, context, arm_features, int(positions[i])))
        return out

    def update(self, feedback: Sequence[Any]) -> None:
        with self._lock:
            self.policy_.update(list(feedback))

    # ------------------------------------------------------------------ persistence
    def arrays(self) -> dict[str, np.ndarray]:
        return {"policy": np.frombuffer(self.policy_.to_json().encode(), dtype=np.uint8)}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        from tastemaker.online import policy_from_state

        self.policy_ = policy_from_state(json.loads(arrays["policy"].tobytes().decode()))

    def load_state(self, state: dict[str, Any]) -> None:
        """Replace the live policy's state (e.g. the service's snapshot from its store)."""
        from tastemaker.online import policy_from_state

        policy = policy_from_state(state)
        with self._lock:
            self.policy_ = policy


def _stable_hash(query: Query) -> int:
    """A stable 63-bit hash of who asks (the user, else the session's history)."""
    key = f"u:{query.user}" if query.user is not None else "h:" + "\x1f".join(map(str, query.history))
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") >> 1


def _concat(a: ItemList, b: ItemList) -> ItemList:
    if not len(a):
        return b
    names = set(a.source_scores) | set(b.source_scores)
    n_a, n_b = len(a), len(b)
    return ItemList(
        np.concatenate([a.item_ids, b.item_ids]), np.concatenate([a.item_codes, b.item_codes]),
        np.concatenate([a.scores, b.scores]),
        (a.sources or ("",) * n_a) + (b.sources or ("",) * n_b),
        (a.reasons or ("",) * n_a) + (b.reasons or ("",) * n_b),
        {k: np.concatenate([a.source_scores.get(k, np.full(n_a, np.nan, np.float32)), b.source_scores.get(k, np.full(n_b, np.nan, np.float32))]) for k in names},
        {k: np.concatenate([a.source_ranks.get(k, np.full(n_a, -1, np.int32)), b.source_ranks.get(k, np.full(n_b, -1, np.int32))]) for k in names},
    )
