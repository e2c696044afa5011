"""A bounded-memory, time-segmented interaction graph (GraphJet's design, in numpy).

Interaction edges (user, item) arrive in batches and are appended to the *active segment*.
When it holds ``segment_edges`` edges it is sealed, and a new one starts; when ``segments``
segments are live and another is needed, the oldest is dropped. So the store holds the most
recent ``(segments - 1) * segment_edges`` to ``segments * segment_edges`` edges, and its
memory never grows with the flood (Sharma et al., *GraphJet: Real-Time Content
Recommendations at Twitter*, VLDB 2016: a window of recent edges in a few time-ordered
segments, the oldest dropped whole).

Layout, per edge, at capacity (``bytes_per_edge`` computes it):

* two int32 adjacency rings of ``segments * segment_edges`` slots, one per direction (the
  items of each user, the users of each item): 8 bytes per edge; a segment owns one slice of
  each, as a CSR block (rows sorted by node) built once when the segment is indexed;
* the active segment's raw (user, item) log, int32: 8 bytes per active edge, so
  ``8 / segments`` bytes per stored edge;
* per node and segment, one int32 row offset per direction: ``4 * segments`` bytes per user
  and per item (nodes are never evicted; a flood of new node ids grows this part only), plus
  the tail's start and degree per node and direction, int32: 8 bytes per user and per item.

The rings are allocated with ``np.empty``: the operating system commits their pages when the
segments first fill them, so a small graph in a large store costs what it holds.

Edges become visible to readers at once: :meth:`refresh` (called before every read) indexes
the active segment's recent edges. Up to ``tail_edges`` of them are kept as a separately
sorted *tail*, into which a read after a write merges the new edges (a copy of the tail, not
a sort); past it the whole active segment is re-indexed, which amortises to a few sorts per
edge. The tail's rows are found through a per-node start and degree (a lookup, as in a
sealed segment, not a search: a live store always has a tail, and a walk reads it at every
step); a refresh rewrites only the entries of the tail's nodes.

Trust (user -> user) edges are few and change slowly: they are kept apart, unsegmented,
each with the epoch (segment number) it arrived in, for MeritRank's epoch decay.

Readers sample: :meth:`sample` draws one neighbour per node for a whole batch of walkers at
once, each edge with probability proportional to its segment's weight (1 without epoch
decay). Not thread-safe: the graph source serialises writers and readers with a lock.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Side = Literal["users", "items"]
#: The adjacency a walk reads: "users" -> the items of each user; "items" -> the users of each item.
SIDES: tuple[Side, Side] = ("users", "items")
#: The active segment's unindexed edges of one side: (its distinct nodes, sorted; the neighbours,
#: grouped by node; each node's block in ``GraphStore._tail_rows``).
_Tail = tuple[np.ndarray, np.ndarray]


class GraphStore:
    """See the module docstring. ``max_edges`` is rounded up to ``segments * segment_edges``."""

    def __init__(self, max_edges: int = 10_000_000, segments: int = 8, tail_edges: int = 32_768) -> None:
        if segments < 2:
            raise ValueError("a segmented store needs at least 2 segments (one active, one to drop)")
        if max_edges < segments:
            raise ValueError(f"max_edges ({max_edges}) must be at least segments ({segments})")
        self.segments = int(segments)
        self.segment_edges = -(-int(max_edges) // self.segments)
        self.max_edges = self.segment_edges * self.segments
        self.tail_edges = int(tail_edges)
        ring = self.segments * self.segment_edges
        self._adjacency = {"users": np.empty(ring, np.int32), "items": np.empty(ring, np.int32)}
        self._indptr = {side: np.zeros((self.segments, 1), np.int32) for side in SIDES}
        self._count = np.zeros(self.segments, np.int64)
        self._epochs = np.full(self.segments, -1, np.int64)
        self._times = np.full((self.segments, 2), np.nan)  # first/last event time per slot
        self._slots = [0]  # live slots, oldest first; the last is the active one
        self._epochs[0] = 0
        self.epoch = 0  # the active segment's number: segments since the store began
        self._log = {"users": np.empty(self.segment_edges, np.int32), "items": np.empty(self.segment_edges, np.int32)}
        self._active = 0  # edges in the active segment
        self._indexed = 0  # of them, those in its CSR block (the rest are the tail)
        self._tail: dict[Side, _Tail] | None = None
        # per node, where its tail edges start and how many there are (0: none), kept between tails
        self._tail_rows = {side: (np.zeros(0, np.int32), np.zeros(0, np.int32)) for side in SIDES}
        self._live = np.zeros(0, np.int64)  # _parts() as of the last refresh
        self._tail_nodes: dict[Side, np.ndarray] = {}  # the nodes whose _tail_rows are set
        self._tail_base = (-1, -1)  # (epoch, first log position) of the tail those rows describe
        self._tail_end = 0  # the log position the tail was built up to
        # per side, the tail's node of each edge (sorted) and its neighbour: what the next build merges into
        self._tail_sorted = {side: (np.zeros(0, np.int32), np.zeros(0, np.int32)) for side in SIDES}
        self.dropped = 0
        self.version = 0  # bumped on every write: caches key on it
        self._trust = {"src": np.zeros(0, np.int32), "dst": np.zeros(0, np.int32), "epoch": np.zeros(0, np.int32)}
        self._trust_count = 0
        self._trust_index: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._trust_degrees = np.zeros(0, np.int64)  # per user code, with the index (walks read it every hop)
        self._trust_cum: dict[float, np.ndarray] = {}
        self.trust_version = 0

    # ------------------------------------------------------------------ sizes
    @property
    def n_edges(self) -> int:
        """Interaction edges held (sealed segments plus the active one)."""
        return int(self._count[self._slots[:-1]].sum()) + self._active

    @property
    def n_trust(self) -> int:
        return self._trust_count

    def n_nodes(self, side: Side) -> int:
        """Node capacity of one side (user or item codes below it may have edges)."""
        return self._indptr[side].shape[1] - 1

    @property
    def nbytes(self) -> int:
        """Bytes allocated by the store's arrays (the rings at full size)."""
        arrays = [*self._adjacency.values(), *self._indptr.values(), *self._log.values(), *self._trust.values(),
                  self._count, self._epochs, self._times]
        if self._tail is not None:
            arrays += [a for part in self._tail.values() for a in part]
        arrays += [a for rows in (*self._tail_rows.values(), *self._tail_sorted.values()) for a in rows]
        if self._trust_index is not None:
            arrays += [*self._trust_index, self._trust_degrees]
        return int(sum(a.nbytes for a in arrays))

    def bytes_per_edge(self) -> float:
        """Edge-proportional bytes per stored edge at capacity: the two adjacency rings plus the
        active segment's log, over ``max_edges`` (per-node offsets are extra; see the module doc)."""
        return (2 * 4 * self.max_edges + 2 * 4 * self.segment_edges) / self.max_edges

    def segment_info(self) -> list[dict[str, float]]:
        """Live segments, oldest first: epoch, edges, first and last event time."""
        out = []
        for slot in self._slots:
            count = self._active if slot == self._slots[-1] else int(self._count[slot])
            out.append({"epoch": int(self._epochs[slot]), "edges": count,
                        "first_time": float(self._times[slot, 0]), "last_time": float(self._times[slot, 1])})
        return out

    # ------------------------------------------------------------------ writing
    def add(self, users: np.ndarray, items: np.ndarray, times: np.ndarray | None = None) -> None:
        """Append interaction edges (user and item codes, >= 0) in arrival order; ``times``
        (unix seconds) only label the segments' time ranges."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if users.shape != items.shape or users.ndim != 1:
            raise ValueError("users and items must be 1-d arrays of one length")
        if not len(users):
            return
        if users.min() < 0 or items.min() < 0 or max(users.max(), items.max()) >= 2**31 - 1:
            raise ValueError("node codes must be in [0, 2**31 - 1)")
        stamps = None if times is None else np.asarray(times, dtype=np.float64)
        self._grow("users", int(users.max()) + 1)
        self._grow("items", int(items.max()) + 1)
        start = 0
        while start < len(users):
            take = min(self.segment_edges - self._active, len(users) - start)
            end = start + take
            self._log["users"][self._active : self._active + take] = users[start:end]
            self._log["items"][self._active : self._active + take] = items[start:end]
            if stamps is not None:
                span = self._times[self._slots[-1]]
                low, high = float(stamps[start:end].min()), float(stamps[start:end].max())
                span[0] = low if np.isnan(span[0]) else min(span[0], low)
                span[1] = high if np.isnan(span[1]) else max(span[1], high)
            self._active += take
            start = end
            if self._active == self.segment_edges:
                self._seal()
        self._tail = None
        self.version += 1

    def add_trust(self, users: np.ndarray, trusted: np.ndarray) -> None:
        """Append directed trust edges (user trusts ``trusted``), stamped with the current epoch."""
        src = np.asarray(users, dtype=np.int64)
        dst = np.asarray(trusted, dtype=np.int64)
        if src.shape != dst.shape or src.ndim != 1:
            raise ValueError("users and trusted must be 1-d arrays of one length")
        if not len(src):
            return
        if min(src.min(), dst.min()) < 0:
            raise ValueError("user codes must be >= 0")
        self._grow("users", int(max(src.max(), dst.max())) + 1)
        need = self._trust_count + len(src)
        if need > len(self._trust["src"]):
            size = max(need, 2 * len(self._trust["src"]), 1024)
            for key, array in self._trust.items():
                grown = np.zeros(size, np.int32)
                grown[: self._trust_count] = array[: self._trust_count]
                self._trust[key] = grown
        block = slice(self._trust_count, need)
        self._trust["src"][block], self._trust["dst"][block] = src, dst
        self._trust["epoch"][block] = self.epoch
        self._trust_count = need
        self._trust_index = None
        self._trust_cum.clear()
        self.trust_version += 1
        self.version += 1

    def _grow(self, side: Side, nodes: int) -> None:
        """Widen one side's offset table to ``nodes`` (doubling); new nodes have no edges."""
        old = self._indptr[side]
        have = old.shape[1] - 1
        if nodes <= have:
            return
        size = max(nodes, 2 * have, 64)
        grown = np.empty((self.segments, size + 1), np.int32)
        grown[:, : have + 1] = old
        grown[:, have + 1 :] = old[:, have : have + 1]  # a new node's row is empty: start = end = the slot's total
        self._indptr[side] = grown
        self._trust_index = None
        self._tail = None  # its per-node rows must cover the new nodes: the next refresh widens them

    def _seal(self) -> None:
        """Index the full active segment, then start a new one, dropping the oldest if needed."""
        slot = self._slots[-1]
        self._index_active()
        self._count[slot] = self._active
        if len(self._slots) < self.segments:
            fresh = next(s for s in range(self.segments) if s not in self._slots)
        else:
            fresh = self._slots.pop(0)
            self.dropped += int(self._count[fresh])
            self._count[fresh] = 0
            for side in SIDES:
                self._indptr[side][fresh] = 0
        self.epoch += 1
        self._epochs[fresh] = self.epoch
        self._times[fresh] = np.nan
        self._slots.append(fresh)
        self._active = self._indexed = 0
        self._tail = None

    def _index_active(self) -> None:
        """Build the active segment's CSR blocks over all its edges."""
        slot, count = self._slots[-1], self._active
        users, items = self._log["users"][:count], self._log["items"][:count]
        base = slot * self.segment_edges
        for side, (src, dst) in (("users", (users, items)), ("items", (items, users))):
            order = np.argsort(src)  # deterministic for a given input; a row's order is irrelevant to a walk
            self._adjacency[side][base : base + count] = dst[order]
            counts = np.bincount(src, minlength=self.n_nodes(side))
            row = self._indptr[side][slot]
            row[0] = 0
            np.cumsum(counts, out=row[1:])
        self._indexed = count

    def refresh(self) -> None:
        """Make every edge added so far visible to :meth:`sample` (call before reading)."""
        unindexed = self._active - self._indexed
        if unindexed > self.tail_edges:
            self._index_active()
            self._tail = None
        if self._tail is None:
            self._build_tail()
            self._live = self._parts()  # fixed until the next write (which drops the tail)

    def _build_tail(self) -> None:
        """The tail of each side: the log from ``_indexed`` on, grouped by node in arrival order
        (a stable sort). While that start stands the tail only grows, so the edges since the last
        build are merged in (a copy, not a sort: the same arrays a build from scratch gives), and
        the new tail's nodes include the old one's, whose rows they overwrite; else (re-indexed,
        or a segment sealed) it is built afresh and the old rows cleared."""
        base = (self.epoch, self._indexed)
        grown = base == self._tail_base
        begin = self._tail_end if grown else self._indexed
        tail: dict[Side, _Tail] = {}
        new_users = self._log["users"][begin : self._active]
        new_items = self._log["items"][begin : self._active]
        for side, (src, dst) in (("users", (new_users, new_items)), ("items", (new_items, new_users))):
            order = np.argsort(src, kind="stable")
            keys, neighbours = src[order], dst[order]
            if grown:
                old_keys, old_neighbours = self._tail_sorted[side]
                at = np.searchsorted(old_keys, keys, "right")  # after the older edges of the same node
                keys, neighbours = np.insert(old_keys, at, keys), np.insert(old_neighbours, at, neighbours)
            self._tail_sorted[side] = (keys, neighbours)
            first = np.concatenate([[True], keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, bool)
            heads = np.flatnonzero(first)  # where each node's edges begin
            nodes = keys[heads]
            start, degree = self._tail_rows[side]
            if len(start) < self.n_nodes(side):
                start, degree = np.zeros(self.n_nodes(side), np.int32), np.zeros(self.n_nodes(side), np.int32)
                self._tail_rows[side] = (start, degree)
            elif not grown:
                degree[self._tail_nodes.get(side, nodes[:0])] = 0
            start[nodes] = heads
            degree[nodes] = np.diff(np.append(heads, len(keys)))
            self._tail_nodes[side] = nodes
            tail[side] = (nodes, neighbours)
        self._tail = tail
        self._tail_base, self._tail_end = base, self._active

    # ------------------------------------------------------------------ reading
    def _parts(self) -> np.ndarray:
        """Live slots holding indexed edges, oldest first."""
        sealed = [s for s in self._slots[:-1] if self._count[s]]
        return np.asarray(sealed + ([self._slots[-1]] if self._indexed else []), dtype=np.int64)

    def slot_weights(self, epoch_decay: float) -> np.ndarray:
        """Per slot, the weight of its edges: ``(1 - epoch_decay) ** age`` (age in segments)."""
        age = np.maximum(self.epoch - self._epochs, 0)
        return np.where(self._epochs >= 0, (1.0 - epoch_decay) ** age, 0.0)

    def _rows(self, side: Side, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """Where each node's edges lie: (start, degree), one row per indexed part (oldest first)
        and, if there is one, a last row for the tail; the parts; whether there is a tail. A
        node outside the offset table has degree 0 everywhere."""
        assert self._tail is not None, "call refresh() before reading"
        ptr = self._indptr[side]
        width = ptr.shape[1]
        inside = nodes < width - 1
        everywhere = bool(inside.all())
        x = nodes if everywhere else np.where(inside, nodes, 0)
        parts = self._live
        has_tail = len(self._tail[side][0]) > 0
        start = np.empty((len(parts) + has_tail, len(x)), np.int64)
        degree = np.empty_like(start)
        if len(parts):
            # one flat take per bound: cheaper than 2-d fancy indexing (this runs twice per walk step)
            flat = (parts * width)[:, None] + x[None, :]
            begin = np.take(ptr, flat)
            start[: len(parts)] = begin
            np.subtract(np.take(ptr, flat + 1), begin, out=degree[: len(parts)])
        if has_tail:
            tail_start, tail_degree = self._tail_rows[side]
            start[-1], degree[-1] = tail_start[x], tail_degree[x]
        if not everywhere:
            degree[:, ~inside] = 0
        return start, degree, parts, has_tail

    def sample(self, side: Side, nodes: np.ndarray, uniform: np.ndarray, epoch_decay: float = 0.0) -> np.ndarray:
        """One random neighbour of each node (``side="users"``: an item of each user; ``"items"``:
        a user of each item), each edge with probability proportional to its segment's weight;
        ``uniform`` holds one U[0, 1) draw per node. -1 where a node has no edge. Call
        :meth:`refresh` first."""
        nodes = np.asarray(nodes, dtype=np.int64)
        out = np.full(len(nodes), -1, dtype=np.int64)
        if not len(nodes):
            return out
        start, deg, parts, has_tail = self._rows(side, nodes)
        n_parts = deg.shape[0]
        if n_parts == 0:
            return out
        if n_parts == 1:  # one block: uniform over the node's edges there
            total = deg[0]
            part = np.zeros(len(nodes), np.int64)
            found = total > 0
            position = np.where(found, start[0] + (uniform * total).astype(np.int64), 0)
        elif n_parts == 2 and epoch_decay == 0.0:  # one block and the tail (a live store): as below, in fewer steps
            total = deg[0] + deg[1]
            draw = (uniform * total).astype(np.int64)
            later = deg[0] <= draw
            part = later.astype(np.int64)
            found = total > 0
            position = np.where(found, np.where(later, start[1] + draw - deg[0], start[0] + draw), 0)
        else:
            cols = np.arange(len(nodes))
            if epoch_decay == 0.0:  # uniform over the node's edges
                cum = np.cumsum(deg, axis=0)
                total = cum[-1]
                draw = (uniform * total).astype(np.int64)
                part = np.minimum((cum <= draw[None, :]).sum(axis=0), n_parts - 1)
                before = np.where(part > 0, cum[np.maximum(part - 1, 0), cols], 0)
                offset = draw - before
            else:
                weights = self.slot_weights(epoch_decay)
                part_weights = np.concatenate([weights[parts], [1.0]]) if has_tail else weights[parts]
                cum = np.cumsum(deg * part_weights[:, None], axis=0)
                total = cum[-1]
                target = uniform * total
                part = np.minimum((cum <= target[None, :]).sum(axis=0), n_parts - 1)
                before = np.where(part > 0, cum[np.maximum(part - 1, 0), cols], 0.0)
                offset = np.minimum(((target - before) / part_weights[part]).astype(np.int64),
                                    np.maximum(deg[part, cols] - 1, 0))
            found = total > 0
            position = np.where(found, start[part, cols] + offset, 0)
        if has_tail:
            assert self._tail is not None  # _rows checked it
            in_tail = found & (part == n_parts - 1)
            ring = found & ~in_tail
            out[in_tail] = self._tail[side][1][position[in_tail]]
            out[ring] = self._adjacency[side][parts[part[ring]] * self.segment_edges + position[ring]]
        else:
            out[found] = self._adjacency[side][parts[part[found]] * self.segment_edges + position[found]]
        return out

    def edges_of(self, side: Side, nodes: np.ndarray, epoch_decay: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every edge of ``nodes`` (repeats kept): (index into ``nodes``, neighbour, edge weight),
        the weight being the edge's segment weight. Call :meth:`refresh` first."""
        who, neighbour, age = self.edge_ages(side, nodes)
        return who, neighbour, self.age_weights(epoch_decay)[age]

    def age_weights(self, epoch_decay: float) -> np.ndarray:
        """Per age in segments (0: the active one), an edge's weight ``(1 - epoch_decay) ** age``
        (the same numbers as :meth:`slot_weights`, indexed by age instead of slot)."""
        return (1.0 - epoch_decay) ** np.arange(self.segments, dtype=np.int64)

    def edge_ages(self, side: Side, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every edge of ``nodes`` (repeats kept): (index into ``nodes``, neighbour, age in
        segments), oldest segment first, the active segment's tail last. Call :meth:`refresh` first."""
        nodes = np.asarray(nodes, dtype=np.int64)
        start, degree, parts, has_tail = self._rows(side, nodes)
        n_parts = len(parts)
        start[:n_parts] += (parts * self.segment_edges)[:, None]  # ring positions
        ages = np.maximum(self.epoch - self._epochs[parts], 0).tolist() + ([0] if has_tail else [])  # tail: active
        length = degree.ravel()
        positions = _ranges(start.ravel(), length)
        # the edges come row by row (a part, then the next): fill each row's slice from its source
        ends = np.cumsum(degree.sum(axis=1)).tolist()
        assert self._tail is not None  # _rows checked it
        neighbour = np.empty(len(positions), dtype=np.int64)
        age = np.empty(len(positions), dtype=np.int64)
        for row, (begin, end) in enumerate(zip([0, *ends[:-1]], ends, strict=True)):
            source = self._tail[side][1] if row == n_parts else self._adjacency[side]
            neighbour[begin:end] = source[positions[begin:end]]
            age[begin:end] = ages[row]
        who = np.tile(np.arange(len(nodes)), len(ages))
        return np.repeat(who, length), neighbour, age

    def neighbours(self, side: Side, node: int) -> np.ndarray:
        """All neighbours of one node (repeats kept), oldest segment first."""
        return self.edges_of(side, np.asarray([node]))[1]

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Every stored interaction edge as (users, items), oldest segment first (within a
        sealed segment grouped by user, within the active one in arrival order)."""
        users, items = [], []
        for slot in self._slots[:-1]:
            ptr = self._indptr["users"][slot]
            count = int(self._count[slot])
            base = slot * self.segment_edges
            users.append(np.repeat(np.arange(len(ptr) - 1), np.diff(ptr)))
            items.append(self._adjacency["users"][base : base + count].astype(np.int64))
        users.append(self._log["users"][: self._active].astype(np.int64))
        items.append(self._log["items"][: self._active].astype(np.int64))
        return np.concatenate(users), np.concatenate(items)

    @property
    def position(self) -> tuple[int, int]:
        """Where the interaction log stands: (epoch, edges in the active segment). Until the
        epoch moves (a segment sealed, maybe one dropped), the store only grows at the end of
        the active segment, so what was added since is :meth:`appended_since`."""
        return self.epoch, self._active

    def appended_since(self, position: tuple[int, int]) -> tuple[np.ndarray, np.ndarray] | None:
        """The (users, items) of the interaction edges added since ``position`` (all in the active
        segment: age 0), in arrival order; None when a segment was sealed since (ages moved,
        and edges may have been dropped)."""
        epoch, active = position
        if epoch != self.epoch or active > self._active:
            return None
        return (self._log["users"][active : self._active].astype(np.int64),
                self._log["items"][active : self._active].astype(np.int64))

    # ------------------------------------------------------------------ trust
    def trust_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indptr over user codes, trusted users, epochs): the trust edges as CSR."""
        if self._trust_index is None:
            count = self._trust_count
            src, dst, epoch = (self._trust[k][:count] for k in ("src", "dst", "epoch"))
            order = np.argsort(src, kind="stable")
            indptr = np.zeros(self.n_nodes("users") + 1, np.int64)
            self._trust_degrees = np.bincount(src, minlength=self.n_nodes("users")).astype(np.int64)
            np.cumsum(self._trust_degrees, out=indptr[1:])
            self._trust_index = (indptr, dst[order].astype(np.int64), epoch[order].astype(np.int64))
        return self._trust_index

    def trusted(self, user: int) -> np.ndarray:
        """The users ``user`` trusts (repeats kept)."""
        indptr, dst, _ = self.trust_index()
        if user < 0 or user >= len(indptr) - 1:
            return np.zeros(0, np.int64)
        return dst[indptr[user] : indptr[user + 1]]

    def trust_degree(self, users: np.ndarray) -> np.ndarray:
        """How many trust edges each user has (0 for codes outside the store)."""
        self.trust_index()
        degrees = self._trust_degrees
        users = np.asarray(users, dtype=np.int64)
        if not len(users) or (users.min() >= 0 and users.max() < len(degrees)):  # walkers: always
            return degrees[users]
        inside = (users >= 0) & (users < len(degrees))
        return np.where(inside, degrees[np.where(inside, users, 0)], 0)

    def sample_trust(self, users: np.ndarray, uniform: np.ndarray, epoch_decay: float = 0.0,
                     degree: np.ndarray | None = None) -> np.ndarray:
        """One trusted user per user (-1 where none), each trust edge with probability
        proportional to ``(1 - epoch_decay) ** age``. ``degree``: the users' :meth:`trust_degree`,
        when the caller has it."""
        indptr, dst, epochs = self.trust_index()
        users = np.asarray(users, dtype=np.int64)
        degree = self.trust_degree(users) if degree is None else degree
        found = degree > 0
        x = np.where(found, users, 0)
        start = indptr[x]
        out = np.full(len(users), -1, dtype=np.int64)
        if epoch_decay == 0.0:
            pick = start + np.minimum((uniform * degree).astype(np.int64), np.maximum(degree - 1, 0))
        else:
            cum = self._trust_cum.get(epoch_decay)
            if cum is None:
                cum = np.cumsum((1.0 - epoch_decay) ** np.maximum(self.epoch - epochs, 0))
                self._trust_cum[epoch_decay] = cum
            before = np.where(start > 0, cum[np.maximum(start - 1, 0)], 0.0)
            total = cum[np.maximum(start + degree - 1, 0)] - before
            pick = np.searchsorted(cum, before + uniform * total, "right")
            pick = np.clip(pick, start, np.maximum(start + degree - 1, start))
        out[found] = dst[pick[found]]
        return out

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, np.ndarray]:
        """The whole store as named arrays (what :meth:`from_state` restores, exactly)."""
        sealed = self._slots[:-1]
        blocks = {side: [self._adjacency[side][s * self.segment_edges : s * self.segment_edges + int(self._count[s])]
                         for s in sealed] for side in SIDES}
        active = self._slots[-1]
        base = active * self.segment_edges
        state = {
            "settings": np.asarray([self.segments, self.segment_edges, self.tail_edges, self.epoch, self.dropped,
                                    self._active, self._indexed, self.version, self.trust_version], dtype=np.int64),
            "slots": np.asarray(self._slots, dtype=np.int64),
            "count": self._count, "epochs": self._epochs, "times": self._times,
            "log_users": self._log["users"][: self._active], "log_items": self._log["items"][: self._active],
            "trust_src": self._trust["src"][: self._trust_count], "trust_dst": self._trust["dst"][: self._trust_count],
            "trust_epoch": self._trust["epoch"][: self._trust_count],
        }
        for side in SIDES:
            state[f"{side}_indptr"] = self._indptr[side][self._slots]
            state[f"{side}_sealed"] = np.concatenate(blocks[side]) if blocks[side] else np.zeros(0, np.int32)
            state[f"{side}_active"] = self._adjacency[side][base : base + self._indexed]
        return state

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> GraphStore:
        segments, segment_edges, tail_edges, epoch, dropped, active, indexed, version, trust_version = (
            int(v) for v in state["settings"])
        store = cls(segments * segment_edges, segments, tail_edges)
        store.epoch, store.dropped, store.version, store.trust_version = epoch, dropped, version, trust_version
        store._slots = [int(s) for s in state["slots"]]
        store._count = np.asarray(state["count"], dtype=np.int64).copy()
        store._epochs = np.asarray(state["epochs"], dtype=np.int64).copy()
        store._times = np.asarray(state["times"], dtype=np.float64).copy()
        for side in SIDES:
            rows = np.asarray(state[f"{side}_indptr"], dtype=np.int32)
            table = np.zeros((segments, rows.shape[1]), np.int32)
            table[store._slots] = rows
            store._indptr[side] = table
            offset = 0
            sealed = state[f"{side}_sealed"]
            for slot in store._slots[:-1]:
                count = int(store._count[slot])
                store._adjacency[side][slot * segment_edges : slot * segment_edges + count] = sealed[offset : offset + count]
                offset += count
            base = store._slots[-1] * segment_edges
            store._adjacency[side][base : base + indexed] = state[f"{side}_active"]
        store._active, store._indexed = active, indexed
        store._log["users"][:active] = state["log_users"]
        store._log["items"][:active] = state["log_items"]
        count = len(state["trust_src"])
        store._trust = {"src": np.asarray(state["trust_src"], np.int32).copy(), "dst": np.asarray(state["trust_dst"], np.int32).copy(),
                        "epoch": np.asarray(state["trust_epoch"], np.int32).copy()}
        store._trust_count = count
        return store


def _ranges(start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + n) for s, n in zip(start, length)])``, vectorised."""
    total = int(length.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(start - np.concatenate([[0], np.cumsum(length)[:-1]]), length)
    return offsets + np.arange(total, dtype=np.int64)
