"""Personalized SALSA: Monte-Carlo random walks from one user over the interaction graph
(and the trust graph), every walk of a query stepped together in numpy.

The walk (GraphJet's personalized SALSA, with Web3Recommend's trusted surfer):

* it starts at the *root*: the user, with the items of their history and the users they trust;
* at a user it follows a trust edge with probability ``trust_share`` when the user trusts
  anyone (always, when the user has no items), else an interaction edge to one of the user's
  items (the item is *visited*), then an interaction edge from that item to one of its users
  (the *landing*; MeritRank restricts it to reputed users, :mod:`tastemaker.graph.meritrank`);
* every hop is one edge; after each hop the walk stops with probability ``reset`` (α, also
  MeritRank's transitivity decay), and after ``walk_length`` hops at the latest; the next walk
  starts again at the root;
* edges are drawn with probability proportional to ``(1 - epoch_decay) ** age``, the age in
  segments of the store (MeritRank's epoch decay; 0 by default: every edge in the window counts
  the same).

An item's score is its expected number of visits per walk, estimated from ``walks`` walks.
:func:`exact_item_visits` computes the same expectation exactly, by iterating the walk's
transition matrix: tests check that the estimate converges to it.

Vectorisation: each walk's length is drawn up front (geometric, capped); a loop iteration
moves every live walk one user-to-user step (a trust hop, or item visit + landing), so the
loop runs about as many times as the longest walk has steps (~35 at α = 0.1 and 1,000
walks), each iteration a fixed number of numpy calls over the walks still alive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from tastemaker.graph.store import GraphStore

#: ``landing(items, uniform) -> users``: the user each walk lands on from each item (-1: none).
Landing = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class WalkSettings:
    """Web3Recommend's defaults: 1,000 walks, at most 100 hops, stop probability 0.1."""

    walks: int = 1000
    walk_length: int = 100
    reset: float = 0.1
    trust_share: float = 0.5
    epoch_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.walks < 1 or self.walk_length < 1:
            raise ValueError("walks and walk_length must be >= 1")
        if not 0.0 < self.reset < 1.0:
            raise ValueError(f"reset must be in (0, 1), got {self.reset}")
        if not 0.0 <= self.trust_share <= 1.0 or not 0.0 <= self.epoch_decay < 1.0:
            raise ValueError("trust_share must be in [0, 1] and epoch_decay in [0, 1)")


@dataclass(frozen=True)
class Visits:
    """The items a query's walks visited, their expected visits per walk (the SALSA score),
    and how many of the walks had anywhere to go from the root."""

    items: np.ndarray
    scores: np.ndarray
    walks: int

    @classmethod
    def empty(cls, walks: int = 0) -> Visits:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.float64), walks)


def walk_items(
    store: GraphStore,
    root_user: int,
    root_items: np.ndarray,
    settings: WalkSettings,
    rng: np.random.Generator,
    landing: Landing | None = None,
) -> Visits:
    """Run ``settings.walks`` walks from the root (``root_user``, -1 for an anonymous history,
    with ``root_items``, the history's item codes) and count the item visits. ``landing``
    replaces the uniform choice of an item's user (MeritRank). Call ``store.refresh()`` first."""
    decay = settings.epoch_decay
    count = settings.walks
    root_items = np.unique(np.asarray(root_items, dtype=np.int64))
    root_trust = int(store.trust_degree(np.asarray([root_user]))[0]) if root_user >= 0 and store.n_trust else 0
    if not len(root_items) and not root_trust:
        return Visits.empty(count)
    budget = np.minimum(rng.geometric(settings.reset, count), settings.walk_length).astype(np.int64)
    # the first step leaves the root: its own trust edges or its history (which may hold items
    # that are not in the store yet, the query's new ones)
    if root_trust and len(root_items):
        trusting = rng.random(count) < settings.trust_share
    else:
        trusting = np.full(count, bool(root_trust))
    uniform = rng.random(count)
    users = np.full(count, -1, dtype=np.int64)
    if trusting.any():
        users[trusting] = store.sample_trust(np.full(int(trusting.sum()), root_user), uniform[trusting], decay)
    visited: list[np.ndarray] = []
    tasting = ~trusting
    if tasting.any():
        items = root_items[np.minimum((uniform[tasting] * len(root_items)).astype(np.int64), len(root_items) - 1)]
        visited.append(items)
        users[tasting] = _land(store, items, rng, decay, landing, budget[tasting] > 1)
    budget -= np.where(tasting, 2, 1)
    alive = (budget > 0) & (users >= 0)
    users, budget = users[alive], budget[alive]
    while len(users):
        users, budget = _step(store, users, budget, settings, rng, landing, visited)
    if not visited:
        return Visits.empty(count)
    items, visits = np.unique(np.concatenate(visited), return_counts=True)
    return Visits(items, visits / count, count)


def _land(store: GraphStore, items: np.ndarray, rng: np.random.Generator, decay: float, landing: Landing | None,
          going_on: np.ndarray) -> np.ndarray:
    """The user each walk lands on from its item (only for walks with a hop left; -1 else)."""
    out = np.full(len(items), -1, dtype=np.int64)
    if going_on.any():
        uniform = rng.random(int(going_on.sum()))
        chosen = items[going_on]
        out[going_on] = landing(chosen, uniform) if landing is not None else store.sample("items", chosen, uniform, decay)
    return out


def _step(
    store: GraphStore, users: np.ndarray, budget: np.ndarray, settings: WalkSettings, rng: np.random.Generator,
    landing: Landing | None, visited: list[np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Move every live walk one step from its user; returns the walks still alive."""
    decay = settings.epoch_decay
    n = len(users)
    trust_degree = store.trust_degree(users) if store.n_trust else None
    if trust_degree is not None and settings.trust_share > 0:
        trusting = (trust_degree > 0) & (rng.random(n) < settings.trust_share)
    else:
        trusting = np.zeros(n, dtype=bool)
    taste_rows = np.flatnonzero(~trusting)
    items = store.sample("users", users[taste_rows], rng.random(len(taste_rows)), decay)
    has_item = items >= 0
    if trust_degree is not None:  # a user with no items follows a trust edge (if any)
        stuck = taste_rows[~has_item]
        trusting[stuck[trust_degree[stuck] > 0]] = True
    following = np.full(n, -1, dtype=np.int64)  # -1: nowhere to go, the walk ends
    if trusting.any():
        assert trust_degree is not None  # a walk follows trust only where there is some
        following[trusting] = store.sample_trust(users[trusting], rng.random(int(trusting.sum())), decay,
                                                 trust_degree[trusting])
    taste_rows, items = taste_rows[has_item], items[has_item]
    budget = budget - 1  # a trust hop; an item visit and its landing are two
    if len(items):
        visited.append(items)
        following[taste_rows] = _land(store, items, rng, decay, landing, budget[taste_rows] > 0)
        budget[taste_rows] -= 1
    alive = (budget > 0) & (following >= 0)
    return following[alive], budget[alive]


# ---------------------------------------------------------------------- the exact answer
def exact_item_visits(
    store: GraphStore,
    root_user: int,
    root_items: np.ndarray,
    settings: WalkSettings,
    user_weights: np.ndarray | None = None,
) -> np.ndarray:
    """The expected visits per walk of every item (length: the store's item capacity), by
    iterating the walk's transition matrix: ``sum_t (1 - reset) ** (t - 1) * (e_root P^t)``
    over hops t = 1 .. walk_length, restricted to items. ``user_weights`` (per user code)
    makes an item's landing proportional to them (what a MeritRank landing samples). For
    tests and small graphs: it builds the whole (users + items + root) matrix."""
    store.refresh()
    decay = settings.epoch_decay
    n_users, n_items = store.n_nodes("users"), store.n_nodes("items")
    root, user0, item0 = 0, 1, 1 + n_users
    size = 1 + n_users + n_items
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []

    def add(r: np.ndarray, c: np.ndarray, v: np.ndarray) -> None:
        rows.append(np.asarray(r, np.int64))
        cols.append(np.asarray(c, np.int64))
        vals.append(np.asarray(v, np.float64))

    all_users = np.arange(n_users)
    owner, item, weight = store.edges_of("users", all_users, decay)
    item_mass = np.bincount(owner, weights=weight, minlength=n_users)
    indptr, trusted, epochs = store.trust_index()
    trust_weight = (1.0 - decay) ** np.maximum(store.epoch - epochs, 0)
    truster = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    trust_mass = np.bincount(truster, weights=trust_weight, minlength=n_users)
    share = np.where(trust_mass > 0, np.where(item_mass > 0, settings.trust_share, 1.0), 0.0)
    add(user0 + owner, item0 + item, (1 - share[owner]) * weight / np.maximum(item_mass[owner], 1e-300))
    add(user0 + truster, user0 + trusted, share[truster] * trust_weight / np.maximum(trust_mass[truster], 1e-300))
    raters, rated, rate_weight = store.edges_of("items", np.arange(n_items), decay)
    if user_weights is not None:
        padded = np.zeros(n_users)
        padded[: len(user_weights)] = user_weights[:n_users]
        rate_weight = rate_weight * padded[rated]
    landing_mass = np.bincount(raters, weights=rate_weight, minlength=n_items)
    add(item0 + raters, user0 + rated, rate_weight / np.maximum(landing_mass[raters], 1e-300))
    # the root: its history items uniformly, its own trust edges as the user's
    own = np.unique(np.asarray(root_items, dtype=np.int64))
    root_trust = trust_mass[root_user] if root_user >= 0 else 0.0
    root_share = (settings.trust_share if len(own) else 1.0) if root_trust > 0 else 0.0
    if len(own):
        add(np.zeros(len(own)), item0 + own, np.full(len(own), (1 - root_share) / len(own)))
    if root_trust > 0:
        mine = truster == root_user
        add(np.zeros(int(mine.sum())), user0 + trusted[mine], root_share * trust_weight[mine] / root_trust)
    matrix = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(size, size))
    state = np.zeros(size)
    state[root] = 1.0
    total = np.zeros(size)
    for hop in range(1, settings.walk_length + 1):
        state = matrix.T @ state
        total += (1 - settings.reset) ** (hop - 1) * state
    return total[item0:]
