"""MeritRank: the gatekeeper statistic on hand-made walks, reputation converging to the exact
trust-walk visits, connectivity decay behind a gatekeeper, epoch decay, the reputed landing (and
the walk through it converging to the exact weighted visits), and the cache of both: a cached
landing caught up with new edges equals one built now."""

from __future__ import annotations

import numpy as np
import pytest

from tastemaker.graph.meritrank import (
    MeritCache,
    MeritSettings,
    ReputedLanding,
    gatekeeper_shares,
    reputation,
    trust_walks,
)
from tastemaker.graph.salsa import WalkSettings, exact_item_visits, walk_items
from tastemaker.graph.store import GraphStore

R, A, B, C, D = 0, 1, 2, 3, 4


def test_gatekeeper_shares_known_answer() -> None:
    paths = np.array([[R, A, B, -1], [R, A, C, A], [R, D, C, -1], [R, R, D, -1]])
    nodes, reached, share = gatekeeper_shares(paths, R)
    assert nodes.tolist() == [A, B, C, D] and reached.tolist() == [2, 1, 2, 2]
    # B: every walk reaching it saw A first; C: A first in one of two, D in the other; a
    # revisit (A after C) does not make C a predecessor of A's first visit; the root never gates
    np.testing.assert_allclose(share, [0.0, 1.0, 0.5, 0.0])


def _trust(edges: list[tuple[int, int]], users: int) -> GraphStore:
    store = GraphStore(max_edges=16, segments=2)
    src, dst = zip(*edges, strict=True)
    store.add_trust(np.array(src), np.array(dst))
    store.add(np.array([users - 1]), np.array([0]))  # node capacity for every user
    return store


def _exact_trust_visits(store: GraphStore, root: int, settings: WalkSettings) -> np.ndarray:
    indptr, trusted, _ = store.trust_index()
    n = len(indptr) - 1
    moves = np.zeros((n, n))
    for user in range(n):
        row = trusted[indptr[user] : indptr[user + 1]]
        for other in row:
            moves[user, other] += 1.0 / len(row)
    state, total = np.eye(n)[root], np.zeros(n)
    for hop in range(1, settings.walk_length + 1):
        state = state @ moves
        total += (1 - settings.reset) ** (hop - 1) * state
    return total


def test_reputation_is_the_trust_walk_visit_share() -> None:
    # a triangle around the root, and C reachable only through B (so B gates it)
    store = _trust([(R, A), (R, B), (A, B), (B, A), (A, R), (B, C), (C, R)], users=5)
    settings = WalkSettings(walks=100_000, walk_length=60)
    rep = reputation(store, R, settings, MeritSettings(), np.random.default_rng(1))
    exact = _exact_trust_visits(store, R, settings)
    exact[R] = 0.0
    assert rep.users.tolist() == [A, B, C] and rep.gated.tolist() == [False, False, True]
    assert rep.gate_share[2] == 1.0 and rep.gate_share[:2].max() < 0.9
    np.testing.assert_allclose(rep.visit_share, exact[[A, B, C]] / exact.sum(), atol=0.004)
    np.testing.assert_allclose(rep.scores, rep.visit_share * [1.0, 1.0, 0.2])


def test_a_region_behind_a_gatekeeper_is_decayed() -> None:
    honest = [(R, A), (A, R), (R, B), (B, R), (A, B), (B, A)]
    sybils = [5, 6, 7, 8]
    region = [(s, t) for s in sybils for t in sybils if s != t]
    store = _trust(honest + [(A, 5)] + region, users=9)  # one attack edge, from A
    rep = reputation(store, R, WalkSettings(walks=4_000), MeritSettings(), np.random.default_rng(2))
    assert set(rep.users[rep.gated].tolist()) == set(sybils)
    assert not rep.gated[np.isin(rep.users, [A, B])].any()
    np.testing.assert_allclose(rep.of(np.array(sybils)), 0.2 * rep.visit_share[np.isin(rep.users, sybils)])
    # beta = 0 turns the decay off; a threshold of 1 is never exceeded
    assert np.allclose(reputation(store, R, WalkSettings(walks=4_000), MeritSettings(beta=0.0), np.random.default_rng(2)).scores,
                       rep.visit_share)
    assert not reputation(store, R, WalkSettings(walks=4_000), MeritSettings(gatekeeper=1.0), np.random.default_rng(2)).gated.any()


def test_the_regions_total_reputation_does_not_grow_with_its_size() -> None:
    totals = []
    for size in (5, 50, 500):
        sybils = list(range(10, 10 + size))
        ring = [(s, sybils[(k + 1) % size]) for k, s in enumerate(sybils)] + [(s, sybils[(k + 7) % size]) for k, s in enumerate(sybils)]
        honest = [(R, A), (A, R), (R, B), (B, R), (A, B), (B, A), (B, C), (C, R)]
        store = _trust(honest + [(A, 10)] + ring, users=10 + size)
        rep = reputation(store, R, WalkSettings(walks=20_000), MeritSettings(), np.random.default_rng(3))
        totals.append(rep.of(np.array(sybils)).sum())
    assert max(totals) < 1.3 * min(totals)  # bounded by the one attack edge, not by the region's size


def test_epoch_decay_fades_old_trust() -> None:
    store = GraphStore(max_edges=4, segments=2)
    store.add_trust(np.array([R]), np.array([A]))
    store.add(np.array([0, 1]), np.array([0, 0]))  # seal: a new epoch
    store.add_trust(np.array([R]), np.array([B]))
    fresh = reputation(store, R, WalkSettings(walks=20_000, reset=0.5), MeritSettings(), np.random.default_rng(4))
    walks = trust_walks(store, R, WalkSettings(walks=20_000, epoch_decay=0.8, reset=0.5), np.random.default_rng(4))
    assert abs(fresh.of(np.array([A]))[0] - 0.5) < 0.02
    assert abs((walks[:, 1] == A).mean() - 0.2 / 1.2) < 0.01  # the old edge counts 1 - 0.8


def test_reputed_landing_samples_in_proportion_to_reputation() -> None:
    store = GraphStore(max_edges=32, segments=2)
    store.add(np.array([1, 2, 3, 4, 0]), np.array([7, 7, 7, 7, 8]))  # item 7 rated by 1..4
    store.add_trust(np.array([0, 0]), np.array([1, 2]))
    store.refresh()
    rep = reputation(store, 0, WalkSettings(walks=2_000, reset=0.999), MeritSettings(), np.random.default_rng(0))
    assert rep.users.tolist() == [1, 2]
    landing = ReputedLanding(store, rep)
    uniform = np.random.default_rng(1).random(50_000)
    landed = landing(np.full(len(uniform), 7), uniform)
    assert set(np.unique(landed).tolist()) == {1, 2}  # 3 and 4 have no reputation: never landed on
    assert abs((landed == 1).mean() - rep.scores[0] / rep.scores.sum()) < 0.01
    assert landing(np.array([8, 9]), np.array([0.3, 0.3])).tolist() == [0, -1]  # the root itself; nobody
    np.testing.assert_allclose(landing.weights(5)[[1, 2, 0]], [*rep.scores, rep.scores.max()])


def _live_store(seed: int, segments: int = 3, tail_edges: int = 50) -> GraphStore:
    """60 users and 40 items with trust among the users, one segment sealed, and a tail."""
    rng = np.random.default_rng(seed)
    store = GraphStore(max_edges=1_500, segments=segments, tail_edges=tail_edges)
    store.add(rng.integers(0, 60, 600), rng.integers(0, 40, 600))
    store.add_trust(rng.integers(0, 60, 150), rng.integers(0, 60, 150))
    store.refresh()
    store.add(rng.integers(0, 60, 30), rng.integers(0, 40, 30))
    store.refresh()
    return store


@pytest.mark.parametrize("epoch_decay", [0.0, 0.5])
def test_the_merit_walk_estimates_the_exact_reputed_visits(epoch_decay: float) -> None:
    store = _live_store(8)
    rep = reputation(store, 3, WalkSettings(walks=5_000), MeritSettings(), np.random.default_rng(0))
    landing = ReputedLanding(store, rep, epoch_decay)
    settings = WalkSettings(walks=200_000, walk_length=40, reset=0.15, trust_share=0.5, epoch_decay=epoch_decay)
    history = store.neighbours("users", 3)
    truth = exact_item_visits(store, 3, history, settings, user_weights=landing.weights(store.n_nodes("users")))
    found = walk_items(store, 3, history, settings, np.random.default_rng(1), landing)
    estimate = np.zeros(len(truth))
    estimate[found.items] = found.scores
    assert truth.sum() > 0.5
    np.testing.assert_allclose(estimate, truth, atol=0.012 * max(1.0, truth.max()))


def test_a_landing_depends_on_the_edges_not_on_how_the_store_holds_them() -> None:
    indexed, tailed = _live_store(9, tail_edges=10), _live_store(9, tail_edges=10_000)
    assert indexed._tail is not None and tailed._tail is not None
    assert len(tailed._tail["users"][1]) > len(indexed._tail["users"][1])  # other blocks, other row orders
    rep = reputation(indexed, 4, WalkSettings(walks=500), MeritSettings(), np.random.default_rng(2))
    a, b = ReputedLanding(indexed, rep, 0.3), ReputedLanding(tailed, rep, 0.3)
    np.testing.assert_array_equal(a._keys, b._keys)
    np.testing.assert_array_equal(a._cumulative, b._cumulative)


@pytest.mark.parametrize("epoch_decay", [0.0, 0.4])
def test_a_cached_landing_equals_one_built_now(epoch_decay: float) -> None:
    store = _live_store(10)
    settings, merit = WalkSettings(walks=300, epoch_decay=epoch_decay), MeritSettings()
    cache = MeritCache(settings, merit, seed=7)
    rng = np.random.default_rng(11)
    kept = rebuilt = 0
    last: dict[int, ReputedLanding | None] = {}
    for step in range(14):
        for root in (0, 5, 17):
            cached = cache.landing(store, root)
            fresh_rep = reputation(store, root, settings, merit, np.random.default_rng([7, 1, root + 1]))
            np.testing.assert_array_equal(cache.reputation(store, root).scores, fresh_rep.scores)
            assert cached is not None and len(fresh_rep)
            fresh = ReputedLanding(store, fresh_rep, epoch_decay)
            np.testing.assert_array_equal(cached._keys, fresh._keys)
            np.testing.assert_array_equal(cached._cumulative, fresh._cumulative)
            items, uniform = rng.integers(0, 45, 400), rng.random(400)
            np.testing.assert_array_equal(cached(items, uniform), fresh(items, uniform))
            kept += cached is last.get(root)
            rebuilt += cached is not last.get(root)
            last[root] = cached
        # new edges by anyone (new users and items too): every few steps a segment is sealed
        store.add(rng.integers(0, 65, 90), rng.integers(0, 45, 90))
        if step == 6:
            store.add_trust(np.array([0, 5, 17]), np.array([40, 41, 42]))
        store.refresh()
    assert store.epoch >= 3
    assert kept >= 18 and rebuilt >= 9  # caught up between seals; rebuilt after each seal and the trust edges


def test_the_merit_cache_is_bounded_and_bound_to_one_store() -> None:
    store = _live_store(12)
    settings, merit = WalkSettings(walks=200), MeritSettings()
    cache = MeritCache(settings, merit, seed=1, roots=2)
    for root in (0, 1, 2):
        cache.landing(store, root)
    assert len(cache) == 2 and cache.nbytes > 0
    tiny = MeritCache(settings, merit, seed=1, megabytes=cache.nbytes / 2**20 / 4)  # less than one root's worth
    assert tiny.landing(store, 0) is not None and len(tiny) == 0 and tiny.nbytes == 0
    nothing = MeritCache(settings, merit, seed=1, roots=0)
    assert nothing.landing(store, 0) is not None and len(nothing) == 0 and nothing.nbytes == 0
    cache.landing(_live_store(13), 0)  # another store: the old roots are gone
    assert len(cache) == 1


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        MeritSettings(beta=1.5)
    with pytest.raises(ValueError):
        MeritSettings(gatekeeper=0.0)
