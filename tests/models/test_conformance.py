"""Every classical model passes the shipped conformance suite."""

from tastemaker.models.ease import EASE
from tastemaker.models.itemknn import ItemKNN
from tastemaker.models.mf import ALS, BPR
from tastemaker.models.popularity import MostPopular
from tastemaker.testing.conformance import RecommenderConformance


class TestMostPopular(RecommenderConformance):
    collaborative = False

    def make_model(self):
        return MostPopular()


class TestItemKNNCosine(RecommenderConformance):
    def make_model(self):
        return ItemKNN(k=20)


class TestItemKNNBM25(RecommenderConformance):
    def make_model(self):
        return ItemKNN(k=20, weighting="bm25", similarity="dot")


class TestEASE(RecommenderConformance):
    def make_model(self):
        return EASE(reg=10.0)


class TestALS(RecommenderConformance):
    def make_model(self):
        return ALS(embedding_size=8, reg=1.0, alpha=10.0, epochs=30)


class TestBPR(RecommenderConformance):
    def make_model(self):
        return BPR(embedding_size=8, learning_rate=0.05, epochs=200)
