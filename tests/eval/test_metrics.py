"""Top-K metrics against values computed by hand (the arithmetic is in the comments)."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from tastemaker.eval.metrics import (
    accuracy_per_user,
    average_popularity,
    bootstrap_ci,
    coverage,
    gini,
    hits_matrix,
    intra_list_diversity,
    novelty,
    summarize,
    truth_from_pairs,
)

N_ITEMS = 10
# three users, K = 5, -1 = empty slot
TOPK = np.array(
    [
        [3, 1, 4, -1, -1],  # relevant {1, 4, 9}: hits at ranks 2 and 3
        [0, 2, 5, 6, 9],  # relevant {0, 9}: hits at ranks 1 and 5
        [5, 6, -1, -1, -1],  # relevant {8}: no hit. Its -1 slots have the key 2*10-1 = 19,
        # the key of (user 1, item 9): a relevant pair, which must not count as a hit.
    ]
)
TRUTH = sp.csr_matrix(
    (np.ones(6), ([0, 0, 0, 1, 1, 2], [1, 4, 9, 0, 9, 8])), shape=(3, N_ITEMS)
)
L2, L3, L6 = math.log2(2), math.log2(3), math.log2(6)  # log2(rank + 1) for ranks 1, 2, 5


def test_hits_matrix_ignores_padding():
    hits = hits_matrix(TOPK, TRUTH)
    assert hits.tolist() == [
        [False, True, True, False, False],
        [True, False, False, False, True],
        [False, False, False, False, False],
    ]


def test_accuracy_at_5():
    m = accuracy_per_user(TOPK, TRUTH, 5)
    assert set(m) == {"hr@5", "recall@5", "ndcg@5", "mrr@5", "map@5"}
    np.testing.assert_allclose(m["hr@5"], [1, 1, 0])
    np.testing.assert_allclose(m["recall@5"], [2 / 3, 2 / 2, 0])
    # user 0: DCG = 1/log2(3) + 1/log2(4); ideal for 3 relevant = 1 + 1/log2(3) + 1/log2(4)
    ndcg0 = (1 / L3 + 0.5) / (1 + 1 / L3 + 0.5)  # = 1.13093 / 2.13093 = 0.53072
    # user 1: DCG = 1 + 1/log2(6); ideal for 2 relevant = 1 + 1/log2(3)
    ndcg1 = (1 + 1 / L6) / (1 + 1 / L3)  # = 1.38685 / 1.63093 = 0.85034
    np.testing.assert_allclose(m["ndcg@5"], [ndcg0, ndcg1, 0])
    np.testing.assert_allclose(m["ndcg@5"], [0.53072, 0.85034, 0], atol=1e-5)
    np.testing.assert_allclose(m["mrr@5"], [1 / 2, 1, 0])
    # user 0: precision@2 = 1/2, precision@3 = 2/3 -> (1/2 + 2/3) / min(3, 5) = 7/18
    # user 1: precision@1 = 1, precision@5 = 2/5 -> (1 + 2/5) / min(2, 5) = 0.7
    np.testing.assert_allclose(m["map@5"], [7 / 18, 0.7, 0])


def test_accuracy_at_2_cuts_the_list():
    m = accuracy_per_user(TOPK, TRUTH, 2)
    # user 0 top-2 = [3, 1]: hit at rank 2; user 1 top-2 = [0, 2]: hit at rank 1
    np.testing.assert_allclose(m["hr@2"], [1, 1, 0])
    np.testing.assert_allclose(m["recall@2"], [1 / 3, 1 / 2, 0])
    # ideal DCG at K=2 is capped at two hits: 1 + 1/log2(3)
    np.testing.assert_allclose(m["ndcg@2"], [(1 / L3) / (1 + 1 / L3), 1 / (1 + 1 / L3), 0])
    np.testing.assert_allclose(m["mrr@2"], [0.5, 1, 0])
    # map: user 0 (1/2) / min(3, 2) = 1/4; user 1 (1/1) / min(2, 2) = 1/2
    np.testing.assert_allclose(m["map@2"], [0.25, 0.5, 0])


def test_single_relevant_item_leave_one_out():
    topk = np.array([[7, 8, 9], [9, 8, 7], [1, 2, 3]])
    truth = sp.csr_matrix((np.ones(3), ([0, 1, 2], [9, 9, 9])), shape=(3, 10))
    m = accuracy_per_user(topk, truth, 3)
    # rank 3, rank 1, missing
    np.testing.assert_allclose(m["ndcg@3"], [1 / math.log2(4), 1, 0])
    np.testing.assert_allclose(m["mrr@3"], [1 / 3, 1, 0])
    np.testing.assert_allclose(m["map@3"], [1 / 3, 1, 0])  # equals mrr with one relevant item
    np.testing.assert_allclose(m["hr@3"], m["recall@3"])


def test_user_without_relevant_items_is_an_error():
    truth = sp.csr_matrix((1, N_ITEMS))
    with pytest.raises(ValueError, match="relevant"):
        accuracy_per_user(np.array([[1, 2]]), truth, 2)


def test_coverage():
    # items recommended: {0, 1, 2, 3, 4, 5, 6, 9} -> 8 of 10
    assert coverage(TOPK, N_ITEMS) == pytest.approx(0.8)
    assert coverage(np.full((2, 3), -1), N_ITEMS) == 0.0
    assert coverage(TOPK, 0) == 0.0


def test_novelty():
    popularity = np.array([4, 1, 0])
    # -log2(4/4) = 0, -log2(1/4) = 2 -> mean 1
    assert novelty(np.array([[0, 1]]), popularity, n_users=4) == pytest.approx(1.0)
    # an item nobody had counts as popularity 1: -log2(1/4) = 2; the -1 slot is ignored
    assert novelty(np.array([[2, -1]]), popularity, n_users=4) == pytest.approx(2.0)
    assert novelty(np.array([[-1]]), popularity, n_users=4) == 0.0


def test_average_popularity():
    popularity = np.array([4, 1])
    # (4 + 1 + 4) / 3, padding ignored
    assert average_popularity(np.array([[0, 1], [0, -1]]), popularity) == pytest.approx(3.0)
    assert average_popularity(np.array([[-1, -1]]), popularity) == 0.0


def test_gini():
    # every item recommended equally often -> 0
    assert gini(np.array([[0, 1], [2, 3]]), 4) == pytest.approx(0.0)
    # everything on one item of n -> (n - 1) / n
    assert gini(np.array([[0], [0], [0]]), 4) == pytest.approx(3 / 4)
    assert gini(np.array([[5]]), 10) == pytest.approx(9 / 10)
    # counts [1, 3] over two items: mean |xi - xj| over all 4 ordered pairs = 1,
    # Gini = 1 / (2 * mean 2) = 0.25
    assert gini(np.array([[0, 1], [1, -1], [1, -1]]), 2) == pytest.approx(0.25)
    assert gini(np.full((2, 2), -1), 4) == 0.0


def test_intra_list_diversity():
    topk = np.array([[0, 1, 2]])
    # orthogonal features: every pair at cosine 0 -> distance 1
    assert intra_list_diversity(topk, sp.identity(3, format="csr")) == pytest.approx(1.0)
    # identical features: cosine 1 -> distance 0 (the norm does not matter)
    same = sp.csr_matrix(np.array([[1.0, 2.0], [2.0, 4.0], [0.5, 1.0]]))
    assert intra_list_diversity(topk, same) == pytest.approx(0.0)
    # items 0 and 1 identical, 2 orthogonal: pairs (0,1)=0, (0,2)=1, (1,2)=1 -> 2/3
    mixed = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0]])
    assert intra_list_diversity(topk, mixed) == pytest.approx(2 / 3)
    # second list [0, 2, -1] has one pair at distance 1; a one-item list is skipped
    lists = np.array([[0, 1, 2], [0, 2, -1], [1, -1, -1]])
    assert intra_list_diversity(lists, mixed) == pytest.approx((2 / 3 + 1) / 2)
    # batching does not change the result
    assert intra_list_diversity(lists, mixed, batch=1) == pytest.approx((2 / 3 + 1) / 2)
    assert intra_list_diversity(np.array([[0, -1]]), mixed) == 0.0


def test_truth_from_pairs():
    users, truth = truth_from_pairs(np.array([5, 2, 5, 5]), np.array([1, 3, 4, 1]), 6)
    assert users.tolist() == [2, 5]
    assert truth.shape == (2, 6)
    # row 0 = user 2: {3}; row 1 = user 5: {1, 4} (the repeated pair counts once as relevant)
    assert truth[0].indices.tolist() == [3]
    assert sorted(truth[1].indices.tolist()) == [1, 4]
    m = accuracy_per_user(np.array([[3, 0], [0, 1]]), truth, 2)
    np.testing.assert_allclose(m["recall@2"], [1.0, 0.5])


def test_bootstrap_ci():
    rng = np.random.default_rng(3)
    small = rng.random(30)
    large = rng.random(3000)
    low, high = bootstrap_ci(small, seed=0)
    assert low <= small.mean() <= high
    low_l, high_l = bootstrap_ci(large, seed=0)
    assert low_l <= large.mean() <= high_l
    # the width shrinks like 1/sqrt(n): 100x the data -> about 10x narrower
    assert (high_l - low_l) < (high - low) / 4
    # seeded: the same seed gives the same interval, another seed another one
    assert bootstrap_ci(small, seed=0) == (low, high)
    assert bootstrap_ci(small, seed=1) != (low, high)
    # a constant has a zero-width interval at the constant
    assert bootstrap_ci(np.full(10, 0.25)) == (0.25, 0.25)
    assert all(math.isnan(v) for v in bootstrap_ci(np.array([])))


def test_summarize_keys_and_values():
    popularity = np.array([5, 4, 3, 2, 1, 1, 1, 1, 1, 1])
    features = sp.identity(N_ITEMS, format="csr")
    means, per_user = summarize(
        TOPK, TRUTH, (2, 5), item_popularity=popularity, n_users=5, item_features=features
    )
    expected = set()
    for k in (2, 5):
        expected |= {f"{m}@{k}" for m in ("hr", "recall", "ndcg", "mrr", "map")}
        expected |= {f"{m}@{k}" for m in ("coverage", "novelty", "arp", "gini", "diversity")}
    assert set(means) == expected
    assert set(per_user) == {f"{m}@{k}" for m in ("hr", "recall", "ndcg", "mrr", "map") for k in (2, 5)}
    assert means["hr@5"] == pytest.approx(2 / 3)
    assert means["mrr@5"] == pytest.approx((0.5 + 1) / 3)
    # top-2 lists: {3, 1}, {0, 2}, {5, 6} -> 6 items of 10
    assert means["coverage@2"] == pytest.approx(0.6)
    assert means["diversity@5"] == pytest.approx(1.0)
    # without features there is no diversity key
    means, _ = summarize(TOPK, TRUTH, (5,), item_popularity=popularity, n_users=5)
    assert "diversity@5" not in means


def test_pessimistic_ranks_lose_every_tie_and_nan():
    from tastemaker.eval.metrics import pessimistic_ranks

    scores = np.array([[0.5, 0.9, 0.5, np.nan, -np.inf, 0.1]])
    rows = np.zeros(5, dtype=np.int64)
    # item 0 (0.5): items 0, 1, 2 score >= 0.5 and item 3 is NaN -> rank 4; item 1 (0.9):
    # itself and the NaN -> 2; item 5 (0.1): five; item 3 (NaN) and item 4 (-inf, not a
    # candidate) are never found
    assert pessimistic_ranks(scores, rows, np.array([0, 1, 5, 3, 4])).tolist() == [4, 2, 5, np.inf, np.inf]
    # constant scores: the target is last among the candidates, whatever its code
    assert pessimistic_ranks(np.zeros((1, 50)), np.array([0]), np.array([0])).tolist() == [50]


def test_accuracy_from_ranks_known_values():
    from tastemaker.eval.metrics import accuracy_from_ranks

    truth = sp.csr_matrix((np.ones(3), ([0, 0, 1], [0, 1, 7])), shape=(2, N_ITEMS))
    ranks = np.array([4.0, 2.0, np.inf])  # user 0: ranks 4 and 2; user 1: never found
    at5 = accuracy_from_ranks(ranks, truth, 5)
    np.testing.assert_allclose(at5["ndcg@5"], [(1 / math.log2(5) + 1 / L3) / (1 + 1 / L3), 0])
    np.testing.assert_allclose(at5["hr@5"], [1, 0])
    np.testing.assert_allclose(at5["recall@5"], [1, 0])
    np.testing.assert_allclose(at5["mrr@5"], [1 / 2, 0])
    at3 = accuracy_from_ranks(ranks, truth, 3)
    np.testing.assert_allclose(at3["ndcg@3"], [(1 / L3) / (1 + 1 / L3), 0])
    np.testing.assert_allclose(at3["recall@3"], [1 / 2, 0])
