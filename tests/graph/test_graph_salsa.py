"""Personalized SALSA: known answers on tiny graphs, where the walk's expected visits can be
computed exactly, the Monte-Carlo estimate converging to them, and seeded determinism."""

from __future__ import annotations

import numpy as np
import pytest

from tastemaker.graph.salsa import Visits, WalkSettings, exact_item_visits, walk_items
from tastemaker.graph.store import GraphStore

A, B = 0, 1


def _triangle() -> GraphStore:
    """u0-A, u1-A, u1-B: from the root u0 (history {A}) a walk visits A, lands on u0 or u1,
    and visits an item again: from A the next item is A w.p. 3/4 and B w.p. 1/4, from B it
    is A or B w.p. 1/2 each."""
    store = GraphStore(max_edges=16, segments=2)
    store.add(np.array([0, 1, 1]), np.array([A, A, B]))
    store.refresh()
    return store


def _closed_form(reset: float) -> np.ndarray:
    # items are visited at hops 1, 3, 5, ...; the walk survives two hops w.p. (1 - reset)^2,
    # so the expected visits are e_A (I - q M)^-1 with q = (1 - reset)^2 (walk_length -> inf)
    moves = np.array([[0.75, 0.25], [0.5, 0.5]])
    q = (1 - reset) ** 2
    return np.linalg.solve((np.eye(2) - q * moves).T, np.array([1.0, 0.0]))


def _estimate(store: GraphStore, root: int, history: list[int], settings: WalkSettings, seed: int) -> np.ndarray:
    found = walk_items(store, root, np.asarray(history), settings, np.random.default_rng(seed))
    dense = np.zeros(store.n_nodes("items"))
    dense[found.items] = found.scores
    return dense


@pytest.mark.parametrize("reset", [0.1, 0.3])
def test_exact_visits_match_the_closed_form(reset: float) -> None:
    settings = WalkSettings(walk_length=400, reset=reset)
    np.testing.assert_allclose(exact_item_visits(_triangle(), 0, np.array([A]), settings)[:2], _closed_form(reset), rtol=1e-9)


def test_monte_carlo_converges_to_the_exact_scores() -> None:
    store = _triangle()
    truth = _closed_form(0.1)
    errors = []
    for walks in (1_000, 10_000, 200_000):
        estimate = _estimate(store, 0, [A], WalkSettings(walks=walks), seed=5)[:2]
        errors.append(np.abs(estimate - truth).max())
    assert errors[-1] < 0.02 * truth.max() and errors[-1] < errors[0]
    # the ranking Web3Recommend's defaults (1,000 walks) give is already the exact one
    default = _estimate(store, 0, [A], WalkSettings(), seed=5)[:2]
    assert np.argsort(-default).tolist() == np.argsort(-truth).tolist()


def _random_graph(seed: int) -> GraphStore:
    """12 users, 9 items, a few trust edges, over three segments (so epoch decay applies)."""
    rng = np.random.default_rng(seed)
    store = GraphStore(max_edges=60, segments=4, tail_edges=5)
    for _ in range(3):
        store.add(rng.integers(0, 12, 15), rng.integers(0, 9, 15))
        store.add_trust(rng.integers(0, 12, 4), rng.integers(0, 12, 4))
    store.add(rng.integers(0, 12, 7), rng.integers(0, 9, 7))  # the tail
    store.refresh()
    return store


@pytest.mark.parametrize(("trust_share", "epoch_decay"), [(0.0, 0.0), (0.5, 0.0), (0.5, 0.6), (1.0, 0.3)])
def test_the_walk_estimates_the_exact_visits_with_trust_and_epochs(trust_share: float, epoch_decay: float) -> None:
    store = _random_graph(1)
    settings = WalkSettings(walks=200_000, walk_length=40, reset=0.15, trust_share=trust_share, epoch_decay=epoch_decay)
    for root, history in ((3, [1, 2, 8]), (-1, [0, 5])):
        truth = exact_item_visits(store, root, np.asarray(history), settings)
        estimate = _estimate(store, root, history, settings, seed=11)
        assert truth.sum() > 0.5
        np.testing.assert_allclose(estimate, truth, atol=0.012 * max(1.0, truth.max()))


def test_landing_weights_match_the_exact_weighted_walk() -> None:
    store = _random_graph(2)
    weights = np.random.default_rng(0).random(store.n_nodes("users"))
    weights[[2, 5]] = 0.0

    counts = np.zeros((store.n_nodes("items"), store.n_nodes("users")))
    raters, users, _ = store.edges_of("items", np.arange(store.n_nodes("items")))
    np.add.at(counts, (raters, users), 1.0)
    cumulative = np.cumsum(counts * weights[None, :], axis=1)  # per item, over its users' weights

    def landing(items: np.ndarray, uniform: np.ndarray) -> np.ndarray:
        # the test's own weighted landing: inversion over a dense item x user table
        rows = cumulative[items]
        picked = (rows <= (uniform * rows[:, -1])[:, None]).sum(axis=1)
        return np.where(rows[:, -1] > 0, np.minimum(picked, rows.shape[1] - 1), -1)

    settings = WalkSettings(walks=200_000, walk_length=30, reset=0.2, trust_share=0.3)
    truth = exact_item_visits(store, 4, np.array([0, 3]), settings, user_weights=weights)
    found = walk_items(store, 4, np.array([0, 3]), settings, np.random.default_rng(3), landing=landing)
    estimate = np.zeros(len(truth))
    estimate[found.items] = found.scores
    np.testing.assert_allclose(estimate, truth, atol=0.012 * max(1.0, truth.max()))


def test_seeded_walks_are_deterministic() -> None:
    store = _random_graph(3)
    settings = WalkSettings(trust_share=0.5)
    runs = [walk_items(store, 2, np.array([1, 4]), settings, np.random.default_rng(seed)) for seed in (9, 9, 10)]
    np.testing.assert_array_equal(runs[0].items, runs[1].items)
    np.testing.assert_array_equal(runs[0].scores, runs[1].scores)
    assert not np.array_equal(runs[0].scores, runs[2].scores) or not np.array_equal(runs[0].items, runs[2].items)


def test_a_root_with_nowhere_to_go_visits_nothing() -> None:
    store = _triangle()
    empty = walk_items(store, 7, np.zeros(0, np.int64), WalkSettings(), np.random.default_rng(0))
    assert isinstance(empty, Visits) and len(empty.items) == 0
    # a history item the store has no edges for: visited once, then nowhere to land
    single = walk_items(store, -1, np.array([5]), WalkSettings(walks=100), np.random.default_rng(0))
    assert single.items.tolist() == [5] and single.scores.tolist() == [1.0]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="reset"):
        WalkSettings(reset=0.0)
    with pytest.raises(ValueError, match="walks"):
        WalkSettings(walks=0)
