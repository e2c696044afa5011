"""Every shipped stage passes its conformance suite (tastemaker.testing.pipeline)."""

from __future__ import annotations

from tastemaker.pipeline import FreshSource, FusionRanker, GreedyExplorer, ModelSource, PopularitySource, TransitionsSource
from tastemaker.testing.pipeline import ExplorerConformance, RankerConformance, SourceConformance


class TestEASESource(SourceConformance):
    def make_source(self):  # type: ignore[no-untyped-def]
        return ModelSource(model="ease", params={"reg": 1.0})


class TestALSSourceThroughTheIndex(SourceConformance):
    def make_source(self):  # type: ignore[no-untyped-def]
        return ModelSource(model="als", params={"embedding_size": 8, "epochs": 5}, index="exact")


class TestItemKNNSource(SourceConformance):
    def make_source(self):  # type: ignore[no-untyped-def]
        return ModelSource(model="itemknn", params={"k": 5})


class TestGlobalPopularity(SourceConformance):
    answers_unknown = True

    def make_source(self):  # type: ignore[no-untyped-def]
        return PopularitySource()


class TestTrendingPopularity(SourceConformance):
    answers_unknown = True

    def make_source(self):  # type: ignore[no-untyped-def]
        return PopularitySource(mode="trending", half_life_days=0.001)


class TestCategoryPopularity(SourceConformance):
    def make_source(self):  # type: ignore[no-untyped-def]
        return PopularitySource(mode="category")


class TestFreshSource(SourceConformance):
    answers_anonymous = False  # the checkerboard has no creation times: nothing is fresh

    def make_source(self):  # type: ignore[no-untyped-def]
        return FreshSource()


class TestTransitionsSource(SourceConformance):
    def make_source(self):  # type: ignore[no-untyped-def]
        return TransitionsSource()


class TestReciprocalRankFusion(RankerConformance):
    def make_ranker(self):  # type: ignore[no-untyped-def]
        return FusionRanker()


class TestWeightedFusion(RankerConformance):
    def make_ranker(self):  # type: ignore[no-untyped-def]
        return FusionRanker(method="weighted", weights={"ease": 2.0})


class TestGreedyExplorer(ExplorerConformance):
    def make_explorer(self):  # type: ignore[no-untyped-def]
        return GreedyExplorer()
