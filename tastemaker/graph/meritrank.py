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

The reputation (1,000 trust walks and their gatekeeper statistic) and the landing (an index
of the reputed users' edges) cost more than the walk they serve, and change only with the
trust graph: :class:`MeritCache` keeps both per root between requests, and a cached landing
takes in the interaction edges added since (:meth:`ReputedLanding.catch_up`), so what a root
is recommended never depends on whether its entry was cached.
"""

from __future__ import annotations

from collections import OrderedDict
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
    nodes, _, reached, share = _walk_statistics(paths, root)
    return nodes, reached, share


def _walk_statistics(paths: np.ndarray, root: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`gatekeeper_shares` plus each node's visits (revisits counted): (nodes, visits,
    walks reaching it, gatekeeper share)."""
    count, width = paths.shape
    flat = np.flatnonzero((paths >= 0) & (paths != root))  # every visit, in (walk, hop) order
    if not len(flat):
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, np.zeros(0)
    # nodes relabelled 0 .. n-1 (in code order): the pair keys below stay small enough for int32
    nodes, local = np.unique(paths.ravel()[flat], return_inverse=True)
    n = len(nodes)
    visits = np.bincount(local, minlength=n)
    walk = flat // width
    _, first = np.unique(walk * n + local, return_index=True)
    first.sort()  # first visits, back in (walk, hop) order
    local, walk = local[first], walk[first]
    reached = np.bincount(local, minlength=n)
    start = np.searchsorted(walk, walk, "left")
    rank = np.arange(len(walk)) - start  # predecessors of each first visit in its walk
    share = np.zeros(n)
    total = int(rank.sum())
    if total:
        # node codes are below 2**31, so n * n < 2**62; int32 keys, when they fit, sort ~3x faster
        small = local.astype(np.int32 if n * n < 2**31 else np.int64)
        later = np.repeat(small, rank)
        # the predecessors of first visit i are the first visits start[i] .. i - 1 of its walk
        earlier = small[np.arange(total) - np.repeat(np.cumsum(rank) - rank - start, rank)]
        pairs = np.sort(later * n + earlier)
        runs = np.flatnonzero(np.concatenate([[True], pairs[1:] != pairs[:-1]]))
        counts = np.diff(np.append(runs, len(pairs)))
        owner = pairs[runs] // n
        heads = np.flatnonzero(np.concatenate([[True], owner[1:] != owner[:-1]]))
        rows = owner[heads].astype(np.int64)
        share[rows] = np.maximum.reduceat(counts, heads) / reached[rows]
    return nodes, visits, reached, share


def reputation(
    store: GraphStore, root: int, settings: WalkSettings, merit: MeritSettings, rng: np.random.Generator
) -> Reputation:
    """The root's MeritRank reputation of the users its trust walks reach (module docstring)."""
    paths = trust_walks(store, root, settings, rng)
    # column 0 is the root, so the nodes the statistics count are exactly the visited users
    users, visits, _, gate_share = _walk_statistics(paths, root)
    if not len(users):
        empty = np.zeros(0, np.int64)
        return Reputation(root, empty, np.zeros(0), np.zeros(0), np.zeros(0, bool), np.zeros(0))
    share_of_visits = visits / visits.sum()
    gated = gate_share > merit.gatekeeper
    scores = share_of_visits * np.where(gated, 1.0 - merit.beta, 1.0)
    return Reputation(root, users, share_of_visits, gate_share, gated, scores)


class ReputedLanding:
    """The walk's landing under MeritRank: from an item, one of its users who has reputation in
    the root's view (or the root itself, weighted as the most reputed), with probability
    proportional to reputation times the edge's epoch weight. Built from the reputed users'
    edges (tens of thousands: they are the root's trust neighbourhood).

    The edges are kept as one sorted int64 key each, ``(item * reputed + user) * ages + age``
    (``user``: the index among the reputed users; ``ages``: the store's segments under epoch
    decay, else 1, as every age then weighs the same), with the running sum of their weights
    (from a leading 0: an item's edges ``low .. high - 1`` weigh ``cumulative[high] -
    cumulative[low]``), and the distinct items with where their keys start (one search per landing finds an
    item's edges). Equal keys are equal edges, so the order is canonical: it depends on the
    set of edges alone, not on the sort or on how the store holds them. That is what lets
    :meth:`catch_up` merge the edges added since into a cached landing and get exactly the
    arrays a landing built now would have."""

    def __init__(self, store: GraphStore, reputation: Reputation, epoch_decay: float = 0.0) -> None:
        users, weights = reputation.users, reputation.scores
        top = float(weights.max()) if len(weights) else 1.0
        if reputation.root >= 0:
            users = np.concatenate([users, [reputation.root]])
            weights = np.concatenate([weights, [top]])
        self.root = reputation.root
        self._reputed, self._weights = users, weights
        self._sorted = reputation.users  # sorted codes (the root, last in _reputed, is apart)
        self._ages = store.segments if epoch_decay > 0 else 1
        self._age_weights = store.age_weights(epoch_decay)
        if len(users) * self._ages >= 2**32:  # item codes are below 2**31: keys must stay below 2**63
            raise ValueError(f"a landing over {len(users)} reputed users and {self._ages} segments overflows its "
                             "int64 keys: use fewer walks or fewer segments")
        self._stride = len(users) * self._ages  # keys per item
        self._positive = bool((weights > 0).all())  # the usual case (beta < 1): no edge to leave out
        owner, items, age = store.edge_ages("users", users)
        self._index(np.sort(self._encode(items, owner, age)))
        self.position = store.position

    def _index(self, keys: np.ndarray) -> None:
        """Take ``keys`` (sorted) as the landing's edges: their running weights, and the items."""
        self._keys = keys
        owner = keys % len(self._reputed) if self._ages == 1 else (keys // self._ages) % len(self._reputed)
        weights = self._weights[owner]
        if self._ages > 1:  # without epoch decay every age weighs 1: skipping the product changes no bit
            weights = weights * self._age_weights[keys % self._ages]
        self._cumulative = np.empty(len(keys) + 1)
        self._cumulative[0] = 0.0
        np.cumsum(weights, out=self._cumulative[1:])
        item = keys // self._stride
        heads = np.flatnonzero(np.concatenate([[True], item[1:] != item[:-1]])) if len(keys) else item
        self._items = item[heads]
        self._starts = np.append(heads, len(keys))

    def _encode(self, items: np.ndarray, owner: np.ndarray, age: np.ndarray) -> np.ndarray:
        """The keys of the edges that carry weight (see the class docstring)."""
        if self._ages == 1:  # no epoch decay: every age weighs 1
            keys = items * len(self._reputed) + owner
            return keys if self._positive else keys[self._weights[owner] > 0]
        keep = self._weights[owner] * self._age_weights[age] > 0
        return (items[keep] * len(self._reputed) + owner[keep]) * self._ages + age[keep]

    def catch_up(self, store: GraphStore) -> bool:
        """Take in the interaction edges added to ``store`` since this landing was built (or last
        caught up), so that it equals a landing built now; False when it cannot (a segment was
        sealed since: build a new one)."""
        added = store.appended_since(self.position)
        if added is None:
            return False
        self.position = store.position
        users, items = added
        if not len(users):
            return True
        # sorted by user: a search with sorted needles is ~4x faster, and the order is not kept
        # (the new keys are sorted below); codes are below 2**31, so a pair fits one int64
        pairs = np.sort((users << 32) | items)
        users, items = pairs >> 32, pairs & 0xFFFFFFFF
        where = np.minimum(np.searchsorted(self._sorted, users), max(len(self._sorted) - 1, 0))
        reputed = (self._sorted[where] == users) if len(self._sorted) else np.zeros(len(users), bool)
        owner = np.where(reputed, where, -1)
        if self.root >= 0:
            owner[users == self.root] = len(self._reputed) - 1
        mine = owner >= 0
        if not mine.any():
            return True
        fresh = np.sort(self._encode(items[mine], owner[mine], np.zeros(int(mine.sum()), np.int64)))
        self._index(np.insert(self._keys, np.searchsorted(self._keys, fresh), fresh))
        return True

    @property
    def nbytes(self) -> int:
        arrays = (self._keys, self._cumulative, self._items, self._starts, self._reputed, self._weights)
        return int(sum(a.nbytes for a in arrays))

    def __len__(self) -> int:
        """Edges the landing can land through."""
        return len(self._keys)

    def __call__(self, items: np.ndarray, uniform: np.ndarray) -> np.ndarray:
        items = np.asarray(items, dtype=np.int64)
        out = np.full(len(items), -1, dtype=np.int64)
        if not len(self._items):
            return out
        where = np.minimum(np.searchsorted(self._items, items), len(self._items) - 1)
        found = self._items[where] == items
        low = self._starts[where]
        high = np.where(found, self._starts[where + 1], low)
        before = self._cumulative[low]
        total = self._cumulative[high] - before  # 0 for an item with no reputed user
        pick = np.searchsorted(self._cumulative, before + uniform * total, "right") - 1
        pick = np.clip(pick, low, np.maximum(high - 1, low))
        out[found] = self._reputed[(self._keys[pick[found]] // self._ages) % len(self._reputed)]
        return out

    def weights(self, n_users: int) -> np.ndarray:
        """Per user code, the landing weight before epoch decay (for
        :func:`tastemaker.graph.salsa.exact_item_visits`)."""
        dense = np.zeros(n_users)
        inside = self._reputed < n_users
        dense[self._reputed[inside]] = self._weights[inside]
        return dense


@dataclass
class _Cached:
    stamp: tuple[int, int]  # (trust version, epoch) the reputation was computed at
    reputation: Reputation
    landing: ReputedLanding | None = None

    @property
    def nbytes(self) -> int:
        rep = self.reputation
        arrays = (rep.users, rep.visit_share, rep.gate_share, rep.gated, rep.scores)
        return sum(a.nbytes for a in arrays) + (self.landing.nbytes if self.landing is not None else 0)


class MeritCache:
    """Each root's reputation and reputed landing, kept between requests: the reputation until
    the trust graph changes (``GraphStore.trust_version``) or a segment is sealed (the epoch:
    ages, and with them the epoch decay, move); the landing as long as its reputation, taking
    in the interaction edges added since at each use (:meth:`ReputedLanding.catch_up`). So a
    cached answer is the answer computed afresh, and the next request sees every event.

    At most ``roots`` roots and ``megabytes`` of arrays (a landing at 1M edges with 10 trust
    edges per user is ~1 MB), least recently used out; ``roots = 0`` keeps nothing. A root's
    reputation walks are seeded from ``seed`` and the root alone. Bound to one store: handed
    another, it starts empty. Not thread-safe (the graph source holds its lock)."""

    def __init__(self, settings: WalkSettings, merit: MeritSettings, seed: int, roots: int = 4096,
                 megabytes: float = 256.0) -> None:
        self.settings, self.merit, self.seed = settings, merit, int(seed)
        self.roots, self.max_bytes = int(roots), int(megabytes * 2**20)
        self._entries: OrderedDict[int, _Cached] = OrderedDict()
        self._store: GraphStore | None = None
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self.nbytes = 0

    def reputation(self, store: GraphStore, root: int) -> Reputation:
        """The root's reputation in ``store`` now (computed, or cached and still valid)."""
        return self._entry(store, root).reputation

    def landing(self, store: GraphStore, root: int) -> ReputedLanding | None:
        """The root's reputed landing in ``store`` now (refreshed: call ``store.refresh()``
        first); None when the root's trust walks reach no one."""
        entry = self._entry(store, root)
        if not len(entry.reputation):
            return None
        before = entry.nbytes
        if entry.landing is None or not entry.landing.catch_up(store):
            entry.landing = ReputedLanding(store, entry.reputation, self.settings.epoch_decay)
        if root in self._entries:
            self.nbytes += entry.nbytes - before
            self._evict()
        return entry.landing

    def _entry(self, store: GraphStore, root: int) -> _Cached:
        if store is not self._store:
            self.clear()
            self._store = store
        stamp = (store.trust_version, store.epoch)
        entry = self._entries.get(root)
        if entry is not None and entry.stamp == stamp:
            self._entries.move_to_end(root)
            return entry
        if entry is not None:
            self.nbytes -= entry.nbytes
            del self._entries[root]
        rng = np.random.default_rng([self.seed, 1, root + 1])
        entry = _Cached(stamp, reputation(store, root, self.settings, self.merit, rng))
        if self.roots > 0:
            self._entries[root] = entry
            self.nbytes += entry.nbytes
            self._evict()
        return entry

    def _evict(self) -> None:
        while self._entries and (len(self._entries) > self.roots or self.nbytes > self.max_bytes):
            _, old = self._entries.popitem(last=False)
            self.nbytes -= old.nbytes
