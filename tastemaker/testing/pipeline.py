"""Conformance suites for the pipeline's stage contracts (pytest mixins, like the model one).

    class TestPopularity(SourceConformance):
        def make_source(self):
            return PopularitySource()

Each suite fits its stage inside a small pipeline on the checkerboard (:func:`checkerboard`,
two taste groups) and checks the contract of :mod:`tastemaker.protocols`: what may and may
not come back, batch equals single, determinism, and a save/load round trip of the whole
pipeline giving the same lists.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from tastemaker.pipeline.base import Explorer, Ranker, Reranker, Source
from tastemaker.pipeline.pipeline import Pipeline
from tastemaker.pipeline.sources import ModelSource, PopularitySource
from tastemaker.testing.synthetic import checkerboard
from tastemaker.types import FitOptions, ItemList, Query

OPTIONS = FitOptions(seed=7, threads=1, progress=False)
QUERIES = [Query(user="u0"), Query(user="u3"), Query(history=["i2", "i4"]), Query(user="u5", exclude=["i1", "i7"]),
           Query(user="u2", include=["i1", "i2", "i3", "i9", "i10"]), Query(user="nobody")]


def _same(a: ItemList, b: ItemList) -> None:
    assert a.item_ids.tolist() == b.item_ids.tolist()
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)


class _StageSuite:
    @pytest.fixture(scope="class")
    @classmethod
    def data(cls):  # type: ignore[no-untyped-def]
        return checkerboard()

    def make_pipeline(self) -> Pipeline:
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, data):  # type: ignore[no-untyped-def]
        return cls().make_pipeline().fit(data, OPTIONS)

    def test_round_trip(self, fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        loaded = Pipeline.load(fitted.save(tmp_path / "pipe"))
        for a, b in zip(fitted.recommend(QUERIES, n=8), loaded.recommend(QUERIES, n=8), strict=True):
            _same(a, b)
            assert a.sources == b.sources and a.reasons == b.reasons

    def test_batch_equals_single_and_is_deterministic(self, fitted) -> None:  # type: ignore[no-untyped-def]
        batch = fitted.recommend(QUERIES, n=8)
        for query, items in zip(QUERIES, batch, strict=True):
            _same(fitted.recommend([query], n=8)[0], items)
        for a, b in zip(batch, fitted.recommend(QUERIES, n=8), strict=True):
            _same(a, b)

    def test_pipeline_rules(self, fitted, data) -> None:  # type: ignore[no-untyped-def]
        for query, items in zip(QUERIES, fitted.recommend(QUERIES, n=8), strict=True):
            ids = items.item_ids.tolist()
            assert len(ids) == len(set(ids)) <= 8
            assert len(items.sources) == len(items.reasons) == len(ids) and all(items.reasons)
            seen = set(fitted.context_.items.decode(fitted.context_.resolve([query])[0].history))
            assert not seen & set(ids) and not set(query.exclude) & set(ids)
            if query.include is not None:
                assert set(ids) <= set(query.include)


class SourceConformance(_StageSuite):
    """A source alone must honour exclusions, ``include`` and ``k``, name itself, and agree
    between batch and single queries. ``answers_anonymous``: it retrieves for a history-only
    query; ``answers_unknown``: for an unknown user without history (popularity does)."""

    answers_anonymous: ClassVar[bool] = True
    answers_unknown: ClassVar[bool] = False

    def make_source(self) -> Source:
        raise NotImplementedError

    def make_pipeline(self) -> Pipeline:
        return Pipeline([self.make_source()])

    def test_is_a_source(self) -> None:
        from tastemaker.protocols import Source as SourceProtocol

        assert isinstance(self.make_source(), SourceProtocol)

    def test_retrieve_follows_the_contract(self, fitted) -> None:  # type: ignore[no-untyped-def]
        source = fitted.sources[0]
        for k in (1, 5, 30):
            lists = source.retrieve(QUERIES, k)
            assert len(lists) == len(QUERIES)
            for query, items, resolved in zip(QUERIES, lists, fitted.context_.resolve(QUERIES), strict=True):
                codes = items.item_codes.tolist()
                assert len(codes) <= k and len(set(codes)) == len(codes)
                assert not set(codes) & set(resolved.blocked.tolist())
                if resolved.allowed is not None:
                    assert set(codes) <= set(resolved.allowed.tolist())
                assert items.item_ids.tolist() == fitted.context_.items.decode(items.item_codes).tolist()
                assert set(items.sources) <= {source.name}
                assert np.all(np.diff(items.scores) <= 1e-6), "best first"
                assert len(source.explain(resolved, items.item_codes)) == len(codes)
        anonymous, unknown = source.retrieve([QUERIES[2], QUERIES[5]], 5)
        assert (len(anonymous) > 0) == self.answers_anonymous
        assert (len(unknown) > 0) == self.answers_unknown


class RankerConformance(_StageSuite):
    """A ranker orders every candidate it is given, drops none, scores best first."""

    def make_ranker(self) -> Ranker:
        raise NotImplementedError

    def make_pipeline(self) -> Pipeline:
        return Pipeline([ModelSource(model="ease", params={"reg": 1.0}), ModelSource(model="itemknn", params={"k": 5}),
                         PopularitySource()], ranker=self.make_ranker())

    def test_ranks_every_candidate(self, fitted) -> None:  # type: ignore[no-untyped-def]
        resolved = fitted.context_.resolve(QUERIES)
        merged = fitted._candidates(resolved, fitted.sources, fitted.fallback)
        ranked = fitted.ranker.rank(QUERIES, merged)
        for before, after in zip(merged, ranked, strict=True):
            assert sorted(after.item_codes.tolist()) == sorted(before.item_codes.tolist())
            assert np.all(np.diff(after.scores) <= 1e-6)
            assert set(after.source_ranks) == set(before.source_ranks)


class RerankerConformance(_StageSuite):
    """A reranker returns at most ``n`` items, all from its input, none twice, and says why
    when it moved one (``sources``/``reasons``)."""

    def make_reranker(self) -> Reranker:
        raise NotImplementedError

    def make_pipeline(self) -> Pipeline:
        return Pipeline([ModelSource(model="ease", params={"reg": 1.0}), PopularitySource()], rerankers=[self.make_reranker()])

    def test_rerank_follows_the_contract(self, fitted) -> None:  # type: ignore[no-untyped-def]
        resolved = fitted.context_.resolve(QUERIES)
        ranked = fitted.ranker.rank(QUERIES, fitted._candidates(resolved, fitted.sources, fitted.fallback))
        reranker = fitted.rerankers[0]
        for query, items in zip(QUERIES, ranked, strict=True):
            for n in (1, 4, 50):
                out = reranker.rerank(query, items, n)
                codes = out.item_codes.tolist()
                assert len(codes) <= n and len(set(codes)) == len(codes)
                assert set(codes) <= set(items.item_codes.tolist())
                assert len(out.sources) == len(codes)
                again = reranker.rerank(query, items, n)
                assert again.item_codes.tolist() == codes


class ExplorerConformance(_StageSuite):
    """An explorer shows at most ``k`` of the ranked items, none twice, each with a
    propensity in (0, 1]."""

    def make_explorer(self) -> Explorer:
        raise NotImplementedError

    def make_pipeline(self) -> Pipeline:
        return Pipeline([ModelSource(model="ease", params={"reg": 1.0}), PopularitySource()], explorer=self.make_explorer())

    def test_select_follows_the_contract(self, fitted) -> None:  # type: ignore[no-untyped-def]
        for slate, query in zip(fitted.slates(QUERIES, n=6), QUERIES, strict=True):
            codes = slate.items.item_codes.tolist()
            assert len(codes) <= 6 and len(set(codes)) == len(codes)
            assert len(slate.propensities) == len(codes)
            assert np.all((slate.propensities > 0) & (slate.propensities <= 1))
            assert slate.policy and isinstance(slate.policy_version, str)
