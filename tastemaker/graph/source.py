"""The graph as a pipeline source (``kind = "graph"``): personalized SALSA over a bounded,
time-segmented graph of recent interactions and trust, weighted by MeritRank.

    [[sources]]
    kind = "graph"          # walks = 1000, walk_length = 100, reset = 0.1, beta = 0.8, gatekeeper = 0.99

Fitting loads the training interactions (oldest first, so the window keeps the newest) and the
dataset's social edges (``Dataset.social``: user trusts / befriends friend) into a
:class:`~tastemaker.graph.store.GraphStore`. A query's walks start at its user, or, for an
anonymous query, at its history (:mod:`tastemaker.graph.salsa`); the root's store items and
the query's history both count as what it has seen. With ``meritrank`` (the default) and a
root who trusts someone, a walk lands only on users the root's MeritRank reputation reaches
(:mod:`tastemaker.graph.meritrank`); a root without trust edges gets the plain walk, since
MeritRank has nothing to go on there. Each root's reputation and landing are kept between
requests (``reputation_cache``, ``reputation_cache_mb``; :class:`~tastemaker.graph.meritrank.MeritCache`)
until the trust graph changes or a segment is sealed; a kept landing takes in the edges added
since, so a cached answer is the answer computed afresh.

Edges arrive in real time through :meth:`GraphSource.add_events` and
:meth:`GraphSource.add_trust`; the next retrieval sees them. A user the pipeline's context
does not know gets a code of its own in the graph, so their events shape other users' walks
at once. Writers and readers share one lock.

Walks are seeded from ``FitOptions.seed``, the root and its history, so a query gets the same
list alone or in a batch, before and after a save/load round trip.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
from pydantic import Field

from tastemaker.data.dataset import Dataset
from tastemaker.graph.meritrank import MeritCache, MeritSettings
from tastemaker.graph.salsa import Visits, WalkSettings, walk_items
from tastemaker.graph.store import GraphStore
from tastemaker.pipeline.base import Source, StageConfig
from tastemaker.pipeline.context import Resolved
from tastemaker.types import FitOptions, ItemList


class GraphConfig(StageConfig):
    """Walk: ``walks`` per query, at most ``walk_length`` hops, stop probability ``reset``
    (α) per hop, ``trust_share``: the chance a walk at a user who trusts someone follows a
    trust edge. MeritRank: on with ``meritrank``; connectivity decay ``beta`` for users behind
    a gatekeeper holding more than ``gatekeeper`` of their walks; ``epoch_decay``: an edge
    counts ``(1 - epoch_decay) ** age`` (age in store segments). Store: at most ``max_edges``
    interaction edges in ``segments`` time segments. ``reputation_cache`` and
    ``reputation_cache_mb``: at most that many roots, and megabytes, whose reputation and
    reputed landing are kept between requests (:class:`~tastemaker.graph.meritrank.MeritCache`:
    recomputed when trust edges change or a segment is sealed, caught up with new interaction
    edges at each use, so a cached answer equals a fresh one)."""

    walks: int = Field(1000, ge=1, le=1_000_000)
    walk_length: int = Field(100, ge=1, le=100_000)
    reset: float = Field(0.1, gt=0, lt=1)
    trust_share: float = Field(0.5, ge=0, le=1)
    meritrank: bool = True
    beta: float = Field(0.8, ge=0, le=1)
    gatekeeper: float = Field(0.99, gt=0, le=1)
    epoch_decay: float = Field(0.0, ge=0, lt=1)
    max_edges: int = Field(10_000_000, ge=2)
    segments: int = Field(8, ge=2, le=1024)
    reputation_cache: int = Field(4096, ge=0)
    reputation_cache_mb: float = Field(256.0, ge=0)


class GraphSource(Source):
    kind = "graph"
    Config = GraphConfig
    config: GraphConfig
    store_: GraphStore
    seed_: int
    new_users_: dict[str, int]

    def __init__(self, config: StageConfig | None = None, *, name: str | None = None, **params: Any) -> None:
        super().__init__(config, name=name, **params)
        if name is None:
            self.name = "graph"

    @property
    def settings(self) -> WalkSettings:
        c = self.config
        return WalkSettings(c.walks, c.walk_length, c.reset, c.trust_share, c.epoch_decay)

    @property
    def merit(self) -> MeritSettings:
        return MeritSettings(self.config.beta, self.config.gatekeeper)

    @property
    def _lock(self) -> AbstractContextManager[Any]:
        """One re-entrant lock per source: writers (events) and readers (walks) take turns."""
        lock = self.__dict__.get("_lock_")
        if lock is None:
            lock = self.__dict__.setdefault("_lock_", threading.RLock())
        return lock  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ fitting
    def _fit(self, dataset: Dataset, options: FitOptions) -> None:
        inter = dataset.interactions
        order = np.argsort(inter["timestamp"].to_numpy(), kind="stable")  # oldest first
        store = GraphStore(self.config.max_edges, self.config.segments)
        store.add(inter["user"].to_numpy()[order], inter["item"].to_numpy()[order],
                  inter["timestamp"].to_numpy(dtype=np.float64)[order])
        if dataset.social is not None and len(dataset.social):
            store.add_trust(dataset.social["user"].to_numpy(), dataset.social["friend"].to_numpy())
        self.store_ = store
        self.seed_ = int(options.seed)
        self.new_users_ = {}

    # ------------------------------------------------------------------ real time
    def add_events(self, user_ids: Sequence[str], item_ids: Sequence[str], timestamps: Sequence[float] | None = None) -> int:
        """Append interaction edges now (the next retrieval sees them); events for items the
        pipeline does not know are left out. Returns how many edges were added. Pass the
        user's interactions only: an impression (what was shown) is not an edge."""
        self._check_fitted()
        items = self.context_.items.encode([str(i) for i in item_ids], missing="mark").astype(np.int64)
        known = items >= 0
        with self._lock:
            users = self._user_codes([str(u) for u, ok in zip(user_ids, known, strict=True) if ok])
            times = None if timestamps is None else np.asarray(timestamps, dtype=np.float64)[known]
            self.store_.add(users, items[known], times)
        return int(known.sum())

    def add_trust(self, user_ids: Sequence[str], trusted_ids: Sequence[str]) -> int:
        """Append trust edges (``user_ids[i]`` trusts ``trusted_ids[i]``) now; returns the count."""
        self._check_fitted()
        with self._lock:
            src = self._user_codes([str(u) for u in user_ids])
            dst = self._user_codes([str(u) for u in trusted_ids])
            self.store_.add_trust(src, dst)
        return len(src)

    def _user_codes(self, ids: Sequence[str]) -> np.ndarray:
        """Graph codes of user ids: the context's, else (created on first sight) one past them."""
        codes = self.context_.users.encode(ids, missing="mark").astype(np.int64) if len(ids) else np.zeros(0, np.int64)
        for row in np.flatnonzero(codes < 0):
            codes[row] = self.new_users_.setdefault(ids[row], len(self.context_.users) + len(self.new_users_))
        return codes

    def _root(self, query: Resolved) -> int:
        if query.user >= 0:
            return query.user
        user = query.query.user
        return self.new_users_.get(str(user), -1) if user is not None else -1

    # ------------------------------------------------------------------ retrieval
    def visits(self, query: Resolved) -> Visits:
        """The query's walks: every visited item with its SALSA score (visits per walk)."""
        with self._lock:
            self.store_.refresh()  # a no-op unless edges arrived since the last read
            return self._walk(query)

    def _walk(self, query: Resolved) -> Visits:
        store = self.store_
        root = self._root(query)
        own = store.neighbours("users", root) if root >= 0 and root < store.n_nodes("users") else np.zeros(0, np.int64)
        history = np.concatenate([np.asarray(query.history, dtype=np.int64), own])
        landing = None
        if self.config.meritrank and root >= 0 and store.n_trust and store.trust_degree(np.asarray([root]))[0] > 0:
            landing = self._merit_cache.landing(store, root)
        salt = zlib.crc32(np.asarray(query.history, dtype=np.int64).tobytes())
        rng = np.random.default_rng([self.seed_, root + 1, salt])
        return walk_items(store, root, history, self.settings, rng, landing)

    @property
    def _merit_cache(self) -> MeritCache:
        """The roots' reputations and landings (one per source; it resets itself when handed a
        new store, as after :meth:`set_arrays`, and its seed follows ``seed_``)."""
        cache = self.__dict__.get("_merit_cache_")
        if cache is None or cache.seed != self.seed_:
            c = self.config
            cache = MeritCache(self.settings, self.merit, self.seed_, c.reputation_cache, c.reputation_cache_mb)
            self.__dict__["_merit_cache_"] = cache
        return cache  # type: ignore[no-any-return]

    def retrieve_resolved(self, queries: Sequence[Resolved], k: int) -> list[ItemList]:
        out = []
        with self._lock:
            self.store_.refresh()
            for query in queries:
                out.append(self.rank(query, self.visits(query), k))
        return out

    def rank(self, query: Resolved, found: Visits, k: int) -> ItemList:
        """The top ``k`` of a query's visits, its seen/excluded items left out (and only its
        ``include`` items kept), best first, ties to the lower code (the store must be
        refreshed, as :meth:`retrieve_resolved` does)."""
        codes, scores = found.items, found.scores
        keep = codes < len(self.context_.items)
        blocked = query.blocked
        root = self._root(query)
        if query.query.exclude_seen and root >= 0 and root < self.store_.n_nodes("users"):
            blocked = np.concatenate([blocked, self.store_.neighbours("users", root)])  # events since the fit
        if len(blocked):
            keep &= ~np.isin(codes, blocked)
        if query.allowed is not None:
            keep &= np.isin(codes, query.allowed)
        codes, scores = codes[keep], scores[keep]
        order = np.lexsort((codes, -scores))[: max(k, 0)]
        return self._listed(codes[order], scores[order])

    def explain(self, query: Resolved, codes: np.ndarray) -> list[str]:
        """Social proof: "3 people you trust liked this" (users the root trusts directly),
        "liked by people in your trust network" (users with MeritRank reputation), else
        "liked by people with your taste" (the walk came through shared items)."""
        codes = np.asarray(codes, dtype=np.int64)
        with self._lock:
            store = self.store_
            store.refresh()
            root = self._root(query)
            trusted = np.unique(store.trusted(root)) if root >= 0 and store.n_trust else np.zeros(0, np.int64)
            trusted = trusted[trusted != root]
            owner, raters, _ = store.edges_of("items", codes)
            direct = np.zeros(len(codes), dtype=np.int64)
            if len(trusted) and len(raters):
                mine = np.isin(raters, trusted)
                pairs = np.unique(owner[mine] * (int(raters.max()) + 1) + raters[mine])
                direct = np.bincount(pairs // (int(raters.max()) + 1), minlength=len(codes))
            network = np.zeros(len(codes), dtype=bool)
            if self.config.meritrank and len(trusted):
                reputed = self._merit_cache.reputation(store, root).of(raters) > 0
                network[np.unique(owner[reputed & (raters != root)])] = True
        reasons = []
        for count, near in zip(direct.tolist(), network.tolist(), strict=True):
            if count:
                reasons.append(f"{count} {'person' if count == 1 else 'people'} you trust liked this")
            elif near:
                reasons.append("liked by people in your trust network")
            else:
                reasons.append("liked by people with your taste")
        return reasons

    # ------------------------------------------------------------------ persistence
    def arrays(self) -> dict[str, np.ndarray]:
        state = {f"store_{k}": v for k, v in self.store_.state().items()}
        ids = sorted(self.new_users_, key=self.new_users_.__getitem__)
        state["new_user_ids"] = np.asarray(ids, dtype=str) if ids else np.zeros(0, dtype="<U1")
        state["seed"] = np.asarray([self.seed_], dtype=np.int64)
        return state

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.store_ = GraphStore.from_state({k[len("store_"):]: v for k, v in arrays.items() if k.startswith("store_")})
        self.seed_ = int(arrays["seed"][0])
        self._new_user_ids = [str(u) for u in arrays["new_user_ids"]]
        self.new_users_ = {}

    def bind(self, context: Any) -> None:
        super().bind(context)
        ids = self.__dict__.pop("_new_user_ids", [])
        self.new_users_ = {user: len(context.users) + k for k, user in enumerate(ids)}
