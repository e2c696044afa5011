"""Every classical model passes the shipped conformance suite."""

from tastemaker.models.ease import EASE
from tastemaker.models.itemknn import ItemKNN
from tastemaker.models.mf import ALS, BPR
from tastemaker.models.popularity import MostPopular
from tastemaker.testing.conformance import RecommenderConformance


# fold_in_exact: these models' known-user scores are a function of the training history
# alone (ALS: its user vectors are the exact fold-in solve), so folding that history in must
# give the same scores. BPR's SGD-trained vectors are not the optimum its fold-in solves for:
# it gets the suite's rank-agreement floors.


class TestMostPopular(RecommenderConformance):
    collaborative = False
    fold_in_exact = True

    def make_model(self):
        return MostPopular()


class TestItemKNNCosine(RecommenderConformance):
    fold_in_exact = True

    def make_model(self):
        return ItemKNN(k=20)


class TestItemKNNBM25(RecommenderConformance):
    fold_in_exact = True

    def make_model(self):
        return ItemKNN(k=20, weighting="bm25", similarity="dot")


class TestEASE(RecommenderConformance):
    fold_in_exact = True

    def make_model(self):
        return EASE(reg=10.0)


class TestALS(RecommenderConformance):
    fold_in_exact = True

    def make_model(self):
        return ALS(embedding_size=8, reg=1.0, alpha=10.0, epochs=30)


class TestBPR(RecommenderConformance):
    def make_model(self):
        return BPR(embedding_size=8, learning_rate=0.05, epochs=200)


def test_ties_at_the_cut_go_to_the_lower_code() -> None:
    """argpartition cuts a tied group anywhere; the top-k must take the lowest codes of it."""
    import numpy as np

    from tastemaker.models.base import _top_n, top_k_unordered

    rng = np.random.default_rng(0)
    scores = np.zeros((50, 400), dtype=np.float32)
    scores[:, 7] = 2.0  # one clear winner, then 399 tied items
    for row in scores:
        row[rng.choice(400, 3, replace=False)] = -1.0
    part = top_k_unordered(scores, 5)
    assert all(sorted(p) == sorted([7, *[c for c in range(400) if c != 7 and scores[r, c] == 0][:4]]) for r, p in enumerate(part))
    codes, _ = _top_n(scores[0], 5, np.array([0], dtype=np.int64), None)
    assert codes.tolist() == [7, *[c for c in range(1, 400) if c != 7 and scores[0, c] == 0][:4]]
