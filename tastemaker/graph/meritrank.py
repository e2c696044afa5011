"""MeritRank reputation from one user's point of view, and the reputed landing it gives the walk.

MeritRank (Nasrulin, Ishmaev and Pouwelse, *MeritRank: Sybil Tolerant Reputation for
Merit-based Tokenomics*, 2022), as Web3Recommend runs it (``../shared/reference/papers.md``,
stage 1): ``walks`` random walks from the root over the *trust* graph,

* **transitivity decay α**: every hop stops the walk with probability α (``reset``), so
  reputation fades with distance and a walk that enters a Sybil region leaves it (or ends)
  within ~1/α hops, however many Sybils it holds;
* **connectivity decay β**: a node ``v`` whose walks nearly all pass one other node ``u``
  first (the share of the walks reaching ``v`` in which ``u`` came before it is above
  ``gatekeeper``, 0.99) sits behind a gatekeeper, the typical place of a Sybil region behind
  its attack edges: its reputation is multiplied by ``1 - β`` (β = 0.8);
* **epoch decay**: a trust edge counts ``(1 - epoch_decay) ** age`` (age in the graph store's
  segments), so old trust fades unless it is renewed.

``reputation(v) = visits(v) / all visits (root excluded) * (1 - β [v is gated])``.

How it enters the recommendation walk (Web3Recommend's stage 2): a walk that visits an item
lands only on users with reputation (and the root), with probability proportional to it
(:class:`ReputedLanding`). A Sybil region is reached only through its attack edges, so its
total reputation, and with it the share of landings its members get however many there are,
is bounded by what those edges carry, decayed by α and β. Users outside the root's trust
walks are not landed on: that is the relevance the trust costs (``benchmarks/graph.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tastemaker.graph.salsa import WalkSettings
from tastemaker.graph.store import GraphStore


@dataclass(frozen=True)
class MeritSettings:
    """Web3Recommend's defaults: β = 0.8, gatekeeper threshold 0.99 (α is the walk's ``reset``)."""

    beta: float = 0.8
    gatekeeper: float = 0.99

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta <= 1.0 or not 0.0 < self.gatekeeper <= 1.0:
            raise ValueError("beta must be in [0, 1] and gatekeeper in (0, 1]")


@dataclass(frozen=True)
class Reputation:
    """The root's view: reputed user codes (sorted), their visit share, the largest share of
    their walks one other node gated, whether that made them decayed, and the reputation."""

    root: int
    users: np.ndarray
    visit_share: np.ndarray
    gate_share: np.ndarray
    gated: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    def of(self, users: np.ndarray) -> np.ndarray:
        """Reputation of each user code (0 for users the walks never reached)."""
        users = np.asarray(users, dtype=np.int64)
        if not len(self.users):
            return np.zeros(len(users))
        where = np.minimum(np.searchsorted(self.users, users), len(self.users) - 1)
        return np.where(self.users[where] == users, self.scores[where], 0.0)


def trust_walks(store: GraphStore, root: int, settings: WalkSettings, rng: np.random.Generator) -> np.ndarray:
    """``settings.walks`` walks from ``root`` over the trust graph: (walks, walk_length + 1)
    user codes, column 0 the root, -1 once a walk has ended (stopped, or a user trusting no one)."""
    count, length = settings.walks, settings.walk_length
    paths = np.full((count, length + 1), -1, dtype=np.int64)
    paths[:, 0] = root
    budget = np.minimum(rng.geometric(settings.reset, count), length)
    rows = np.arange(count)
    current = np.full(count, root, dtype=np.int64)
    for hop in range(1, length + 1):
        alive = budget[rows] >= hop
        rows, current = rows[alive], current[alive]
        if not len(rows):
            break
        current = store.sample_trust(current, rng.random(len(rows)), settings.epoch_decay)
        paths[rows, hop] = current
        moved = current >= 0
        rows, current = rows[moved], current[moved]
    return paths


def gatekeeper_shares(paths: np.ndarray, root: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every node the walks reached (root excluded): (nodes, walks reaching it, the largest
    share of those walks in which one other non-root node was visited before it).

    Exact and vectorised: each walk's distinct nodes in first-visit order give one (node,
    earlier node) pair per predecessor; pairs are counted over all walks. At α = 0.1 a walk
    has ~10 hops, so ~50 pairs: ~50k pairs for 1,000 walks."""
    count, width = paths.shape
    node = paths.ravel()
    walk = np.repeat(np.arange(count, dtype=np.int64), width)
    keep = (node >= 0) & (node != root)
    node, walk = node[keep], walk[keep]
    if not len(node):
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0)
    span = int(node.max()) + 1
    _, first = np.unique(walk * span + node, return_index=True)
    first.sort()  # first visits, back in (walk, hop) order
    node, walk = node[first], walk[first]
    reached_nodes, reached = np.unique(node, return_counts=True)
    start = np.searchsorted(walk, walk, "left")
    rank = np.arange(len(walk)) - start  # predecessors of each first visit in its walk
    share = np.zeros(len(reached_nodes))
    total = int(rank.sum())
    if total:
        later = np.repeat(node, rank)
        earlier = node[np.repeat(start, rank) + np.arange(total) - np.repeat(np.cumsum(rank) - rank, rank)]
        pairs, counts = np.unique(later * span + earlier, return_counts=True)
        owner = pairs // span
        heads = np.flatnonzero(np.concatenate([[True], owner[1:] != owner[:-1]]))
        most = np.maximum.reduceat(counts, heads)
        rows = np.searchsorted(reached_nodes, owner[heads])
        share[rows] = most / reached[rows]
    return reached_nodes, reached, share


def reputation(
    store: GraphStore, root: int, settings: WalkSettings, merit: MeritSettings, rng: np.random.Generator
) -> Reputation:
    """The root's MeritRank reputation of the users its trust walks reach (module docstring)."""
    paths = trust_walks(store, root, settings, rng)
    visits = paths[:, 1:].ravel()
    visits = visits[(visits >= 0) & (visits != root)]
    if not len(visits):
        empty = np.zeros(0, np.int64)
        return Reputation(root, empty, np.zeros(0), np.zeros(0), np.zeros(0, bool), np.zeros(0))
    users, counts = np.unique(visits, return_counts=True)
    share_of_visits = counts / counts.sum()
    nodes, _, gate = gatekeeper_shares(paths, root)
    gate_share = gate[np.searchsorted(nodes, users)]
    gated = gate_share > merit.gatekeeper
    scores = share_of_visits * np.where(gated, 1.0 - merit.beta, 1.0)
    return Reputation(root, users, share_of_visits, gate_share, gated, scores)


class ReputedLanding:
    """The walk's landing under MeritRank: from an item, one of its users who has reputation in
    the root's view (or the root itself, weighted as the most reputed), with probability
    proportional to reputation times the edge's epoch weight. Built per query from the
    reputed users' edges (a few thousand: they are the root's trust neighbourhood)."""

    def __init__(self, store: GraphStore, reputation: Reputation, epoch_decay: float = 0.0) -> None:
        users, weights = reputation.users, reputation.scores
        top = float(weights.max()) if len(weights) else 1.0
        if reputation.root >= 0:
            users = np.concatenate([users, [reputation.root]])
            weights = np.concatenate([weights, [top]])
        self._reputed, self._weights = users, weights
        owner, items, edge_weight = store.edges_of("users", users, epoch_decay)
        weight = weights[owner] * edge_weight
        keep = weight > 0
        order = np.argsort(items[keep])  # quicksort: 3x faster than stable here, and deterministic
        self.items = items[keep][order]
        self.users = users[owner[keep][order]]
        self.cumulative = np.cumsum(weight[keep][order])

    def __call__(self, items: np.ndarray, uniform: np.ndarray) -> np.ndarray:
        low = np.searchsorted(self.items, items, "left")
        high = np.searchsorted(self.items, items, "right")
        found = high > low
        before = np.where(low > 0, self.cumulative[np.maximum(low - 1, 0)], 0.0)
        total = np.where(found, self.cumulative[np.maximum(high - 1, 0)] - before, 0.0)
        pick = np.searchsorted(self.cumulative, before + uniform * total, "right")
        pick = np.clip(pick, low, np.maximum(high - 1, low))
        out = np.full(len(items), -1, dtype=np.int64)
        out[found] = self.users[pick[found]]
        return out

    def weights(self, n_users: int) -> np.ndarray:
        """Per user code, the landing weight before epoch decay (for
        :func:`tastemaker.graph.salsa.exact_item_visits`)."""
        dense = np.zeros(n_users)
        inside = self._reputed < n_users
        dense[self._reputed[inside]] = self._weights[inside]
        return dense
