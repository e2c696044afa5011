"""Every shipped reranker passes the reranker conformance suite (tastemaker.testing.pipeline)."""

from __future__ import annotations

from tastemaker.rerank import CalibrationReranker, FilterReranker, MMRReranker, PopularityReranker
from tastemaker.testing.pipeline import RerankerConformance


class TestFilter(RerankerConformance):
    def make_reranker(self):  # type: ignore[no-untyped-def]
        return FilterReranker(exclude_categories=["odd"])


class TestMMR(RerankerConformance):
    def make_reranker(self):  # type: ignore[no-untyped-def]
        return MMRReranker(weight=0.5)


class TestCalibration(RerankerConformance):
    def make_reranker(self):  # type: ignore[no-untyped-def]
        return CalibrationReranker(weight=0.5, half_life=5.0)


class TestBinaryXQuAD(RerankerConformance):
    def make_reranker(self):  # type: ignore[no-untyped-def]
        return PopularityReranker(weight=0.5)


class TestSmoothXQuAD(RerankerConformance):
    def make_reranker(self):  # type: ignore[no-untyped-def]
        return PopularityReranker(weight=0.5, variant="smooth", head_share=0.3)
