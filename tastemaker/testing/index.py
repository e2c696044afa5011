"""The vector-index conformance and recall suite, plus the synthetic vectors it uses.

Use it as a pytest mixin; an index's whole test is a few lines::

    class TestHNSW(VectorIndexConformance):
        def make_index(self, dim):
            return FaissHNSWIndex(dim)

It checks the ``VectorIndex`` contract and the serving extras every tastemaker index has
(``exclude``, ``remove``, ``set_available``, ``save``/``load``): padding, batch == single,
non-contiguous int64 ids, exact exclusions, adds after the build, bad input, and recall@10
against ``ExactIndex`` of at least ``recall_floor`` on clustered vectors. On i.i.d. Gaussian
vectors, the hardest case for graph and cell indexes, it records the recall
(``record_property``) and checks only ``gaussian_recall_floor``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tastemaker.index.exact import ExactIndex
from tastemaker.protocols import VectorIndex


# ---------------------------------------------------------------------------- synthetic vectors
def clustered_vectors(
    n_items: int, n_queries: int, dim: int = 64, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(items, queries) with the structure of learned embeddings.

    Items gather around ``n_items / 100`` topic centres whose sizes follow a power law (a few
    large genres, many niches), and their norms are log-normal (popular items have larger
    factors). Each query mixes two topics with random weights, like a user with two tastes."""
    rng = np.random.default_rng(seed)
    n_topics = max(8, n_items // 100)
    centres = rng.standard_normal((n_topics, dim)) / np.sqrt(dim)
    weights = 1.0 / np.arange(1, n_topics + 1) ** 0.8
    weights /= weights.sum()
    topic = rng.choice(n_topics, size=n_items, p=weights)
    items = centres[topic] + 0.5 * rng.standard_normal((n_items, dim)) / np.sqrt(dim)
    items *= rng.lognormal(0.0, 0.3, size=(n_items, 1))
    tastes = rng.choice(n_topics, size=(n_queries, 2), p=weights)
    mix = rng.dirichlet([1.0, 1.0], size=n_queries)
    queries = mix[:, :1] * centres[tastes[:, 0]] + mix[:, 1:] * centres[tastes[:, 1]]
    queries += 0.3 * rng.standard_normal((n_queries, dim)) / np.sqrt(dim)
    return items.astype(np.float32), queries.astype(np.float32)


def gaussian_vectors(n_items: int, n_queries: int, dim: int = 64, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(items, queries) drawn i.i.d. from N(0, I): no structure at all, the worst case."""
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((n_items, dim)).astype(np.float32),
        rng.standard_normal((n_queries, dim)).astype(np.float32),
    )


def recall_at_k(found: npt.ArrayLike, truth: npt.ArrayLike) -> float:
    """Mean over queries of |found ∩ truth| / |truth|, ignoring -1 padding in ``truth``."""
    found, truth = np.asarray(found), np.asarray(truth)
    recalls = []
    for got, want in zip(found, truth, strict=True):
        want = want[want >= 0]
        if len(want):
            recalls.append(len(np.intersect1d(got, want)) / len(want))
    return float(np.mean(recalls)) if recalls else 1.0


def _sparse_ids(n: int, seed: int = 0) -> np.ndarray:
    """``n`` distinct, shuffled, non-contiguous int64 ids above 2**40."""
    rng = np.random.default_rng(seed)
    ids = 2**40 + np.cumsum(rng.integers(1, 1000, size=n))
    return rng.permutation(ids).astype(np.int64)


# ---------------------------------------------------------------------------- the suite
class VectorIndexConformance:
    """Generic behaviour every vector index must have. Override ``make_index``."""

    dim = 32
    gaussian_dim = 64
    recall_floor = 0.95
    gaussian_recall_floor = 0.0
    n_recall_items = 5000
    n_recall_queries = 200

    def make_index(self, dim: int) -> Any:
        """A new, empty index for vectors of ``dim`` dimensions."""
        raise NotImplementedError

    def load_index(self, index: Any, path: Path) -> Any:
        """Read back what ``index.save(path)`` wrote."""
        return type(index).load(path)

    def build(self, ids: np.ndarray, vectors: np.ndarray) -> Any:
        index = self.make_index(vectors.shape[1])
        index.add(ids, vectors)
        return index

    # ------------------------------------------------------------------ fixtures
    @pytest.fixture(scope="class")
    @classmethod
    def clustered(cls) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        items, queries = clustered_vectors(cls.n_recall_items, cls.n_recall_queries, cls.dim, seed=1)
        return _sparse_ids(len(items), seed=1), items, queries

    @pytest.fixture(scope="class")
    @classmethod
    def built(cls, clustered: tuple[np.ndarray, np.ndarray, np.ndarray]) -> Any:
        ids, items, _ = clustered
        return cls().build(ids, items)

    @pytest.fixture(scope="class")
    @classmethod
    def reference(cls, clustered: tuple[np.ndarray, np.ndarray, np.ndarray]) -> ExactIndex:
        ids, items, _ = clustered
        exact = ExactIndex(items.shape[1])
        exact.add(ids, items)
        return exact

    def small(self, n: int = 300, seed: int = 2) -> tuple[np.ndarray, np.ndarray, Any]:
        """A fresh index of ``n`` clustered items (ids, vectors, index) for tests that change it."""
        items, _ = clustered_vectors(n, 1, self.dim, seed=seed)
        ids = _sparse_ids(n, seed=seed)
        return ids, items, self.build(ids, items)

    # ------------------------------------------------------------------ contract
    def test_is_a_vector_index(self) -> None:
        assert isinstance(self.make_index(self.dim), VectorIndex)

    def test_empty_index_pads(self) -> None:
        index = self.make_index(self.dim)
        assert len(index) == 0
        ids, scores = index.search(np.ones((3, self.dim), dtype=np.float32), 5)
        assert ids.shape == scores.shape == (3, 5)
        assert ids.dtype == np.int64 and scores.dtype == np.float32
        assert (ids == -1).all() and np.isneginf(scores).all()

    def test_k_larger_than_the_index_pads(self) -> None:
        items, queries = clustered_vectors(7, 4, self.dim, seed=3)
        index = self.build(np.arange(100, 107), items)
        ids, scores = index.search(queries, 10)
        assert ids.shape == (4, 10)
        for row, row_scores in zip(ids, scores, strict=True):
            assert sorted(row[:7]) == list(range(100, 107))
            assert (row[7:] == -1).all() and np.isneginf(row_scores[7:]).all()
            assert (np.diff(row_scores[:7]) <= 0).all()

    def test_k_zero_and_no_queries(self, built: Any) -> None:
        ids, scores = built.search(np.ones((2, self.dim), dtype=np.float32), 0)
        assert ids.shape == scores.shape == (2, 0)
        ids, scores = built.search(np.empty((0, self.dim), dtype=np.float32), 5)
        assert ids.shape == scores.shape == (0, 5)

    def test_scores_are_inner_products_best_first(self, built: Any, clustered: tuple[np.ndarray, ...]) -> None:
        ids, items, queries = clustered
        vector_of = dict(zip(ids.tolist(), items, strict=True))
        found, scores = built.search(queries[:20], 10)
        for query, row, row_scores in zip(queries[:20], found, scores, strict=True):
            assert (np.diff(row_scores) <= 0).all()
            expected = [float(vector_of[i] @ query) for i in row]
            np.testing.assert_allclose(row_scores, expected, rtol=1e-4, atol=1e-5)

    def test_single_query_equals_batch(self, built: Any, clustered: tuple[np.ndarray, ...]) -> None:
        queries = clustered[2][:20]
        batch_ids, batch_scores = built.search(queries, 10)
        for position in range(len(queries)):
            ids, scores = built.search(queries[position : position + 1], 10)
            np.testing.assert_array_equal(ids[0], batch_ids[position])
            np.testing.assert_allclose(scores[0], batch_scores[position], rtol=1e-5, atol=1e-6)

    def test_ids_are_preserved(self) -> None:
        """Known answer: with unit-norm items, each item's own vector finds that item first."""
        items, _ = clustered_vectors(300, 1, self.dim, seed=4)
        items /= np.linalg.norm(items, axis=1, keepdims=True)
        ids = _sparse_ids(300, seed=4)
        index = self.build(ids, items)
        found, scores = index.search(items, 3)
        assert set(found.ravel().tolist()) <= set(ids.tolist())
        np.testing.assert_array_equal(found[:, 0], ids)
        np.testing.assert_allclose(scores[:, 0], 1.0, rtol=1e-5)

    # ------------------------------------------------------------------ exclusions and masks
    def test_exclusion_is_exact(self, built: Any, reference: ExactIndex, clustered: tuple[np.ndarray, ...]) -> None:
        ids, _, queries = clustered
        queries = queries[:50]
        rng = np.random.default_rng(5)
        top, _ = reference.search(queries, 20)
        # each query excludes some of its true top 20, random items and ids not in the index
        exclude = [
            np.concatenate([top[q, rng.permutation(20)[: q % 20]], rng.choice(ids, 30), [7, 2**62]])
            for q in range(len(queries))
        ]
        found, scores = built.search(queries, 10, exclude=exclude)
        truth, _ = reference.search(queries, 10, exclude=exclude)
        for row, excluded in zip(found, exclude, strict=True):
            assert (row >= 0).all(), "an exclusion cost a result slot"
            assert not set(row.tolist()) & set(excluded.tolist())
            assert len(set(row.tolist())) == 10
        assert recall_at_k(found, truth) >= self.recall_floor

    def test_excluding_all_but_three(self) -> None:
        ids, items, index = self.small(n=200, seed=6)
        queries = np.asarray(clustered_vectors(200, 3, self.dim, seed=6)[1])
        keep = ids[[5, 50, 150]]
        exclude = [np.setdiff1d(ids, keep)] * len(queries)
        found, scores = index.search(queries, 10, exclude=exclude)
        for row, row_scores in zip(found, scores, strict=True):
            assert sorted(row[:3].tolist()) == sorted(keep.tolist())
            assert (row[3:] == -1).all() and np.isneginf(row_scores[3:]).all()

    def test_empty_exclusions_change_nothing(self, built: Any, clustered: tuple[np.ndarray, ...]) -> None:
        queries = clustered[2][:10]
        plain = built.search(queries, 10)
        excluded = built.search(queries, 10, exclude=[np.empty(0, dtype=np.int64)] * len(queries))
        np.testing.assert_array_equal(plain[0], excluded[0])
        np.testing.assert_array_equal(plain[1], excluded[1])

    def test_remove(self) -> None:
        ids, items, index = self.small(seed=7)
        query = items[:1] * 10
        first = index.search(query, 5)[0][0]
        index.remove(first[:2])
        assert len(index) == len(ids) - 2
        after = index.search(query, 5)[0][0]
        assert not set(after.tolist()) & set(first[:2].tolist())
        np.testing.assert_array_equal(after[:3], first[2:])
        with pytest.raises(ValueError, match="not in the index"):
            index.remove(first[:1])
        # a removed id may come back, with a new vector
        index.add(first[:1], -items[:1] * 100)
        found = index.search(-query, 1)[0]
        assert found[0, 0] == first[0]

    def test_set_available_hides_and_shows(self) -> None:
        ids, items, index = self.small(seed=8)
        query = items[:1] * 10
        first = index.search(query, 5)[0][0]
        index.set_available(first[:3], False)
        assert len(index) == len(ids)
        hidden = index.search(query, 5)[0][0]
        assert not set(hidden.tolist()) & set(first[:3].tolist())
        index.set_available(first[:3], True)
        np.testing.assert_array_equal(index.search(query, 5)[0][0], first)
        with pytest.raises(ValueError, match="not in the index"):
            index.set_available([123], False)

    # ------------------------------------------------------------------ updates and persistence
    def test_add_after_build_is_found_at_once(self) -> None:
        ids, items, index = self.small(seed=9)
        query = items[:1]
        new_ids = np.array([2**50, 2**50 + 3], dtype=np.int64)
        new_vectors = np.vstack([query * 100, query * 50]).astype(np.float32)
        index.add(new_ids, new_vectors)
        assert len(index) == len(ids) + 2
        found, _ = index.search(query, 3)
        np.testing.assert_array_equal(found[0, :2], new_ids)
        index.add([2**51], query * 200)
        assert index.search(query, 1)[0][0, 0] == 2**51

    def test_save_load_round_trip(self, tmp_path: Path) -> None:
        ids, items, index = self.small(seed=10)
        index.remove(ids[:5])
        index.set_available(ids[5:10], False)
        queries = clustered_vectors(300, 20, self.dim, seed=11)[1]
        exclude = [ids[10 + q : 20 + q] for q in range(len(queries))]
        index.save(tmp_path / "index")
        loaded = self.load_index(index, tmp_path / "index")
        assert len(loaded) == len(index)
        for args in ((queries, 10), (queries, 10, exclude), (queries, 400)):
            expected, got = index.search(*args), loaded.search(*args)
            np.testing.assert_array_equal(got[0], expected[0])
            np.testing.assert_array_equal(got[1], expected[1])
        loaded.add([2**52], queries[:1] * 100)
        assert loaded.search(queries[:1], 1)[0][0, 0] == 2**52

    def test_empty_index_round_trip(self, tmp_path: Path) -> None:
        index = self.make_index(self.dim)
        index.save(tmp_path / "empty")
        loaded = self.load_index(index, tmp_path / "empty")
        assert len(loaded) == 0
        assert (loaded.search(np.ones((1, self.dim), dtype=np.float32), 3)[0] == -1).all()

    # ------------------------------------------------------------------ bad input
    def test_bad_input_names_the_problem(self) -> None:
        ids, items, index = self.small(n=100, seed=12)
        query = np.ones((1, self.dim), dtype=np.float32)
        nan = items[:2].copy()
        nan[1, 3] = np.nan
        cases: list[tuple[str, Any]] = [
            ("dimension", lambda: index.add([1, 2], items[:2, :-1])),
            ("dimension", lambda: index.search(query[:, :-1], 5)),
            ("NaN", lambda: index.add([1, 2], nan)),
            ("NaN", lambda: index.search(nan, 5)),
            ("duplicate", lambda: index.add([1, 1], items[:2])),
            ("already in the index", lambda: index.add(ids[:1], items[:1])),
            ("differ in length", lambda: index.add([1, 2, 3], items[:2])),
            ("non-negative", lambda: index.add([-1, 2], items[:2])),
            ("integers", lambda: index.add([1.5, 2.5], items[:2])),
            ("2-D", lambda: index.search(query[0], 5)),
            ("k must be", lambda: index.search(query, -1)),
            ("exclude", lambda: index.search(query, 5, exclude=[[1], [2]])),
        ]
        for problem, call in cases:
            with pytest.raises(ValueError, match=problem):
                call()
            assert len(index) == len(ids), f"a rejected call ({problem}) changed the index"

    # ------------------------------------------------------------------ recall
    def test_recall_on_clustered_vectors(
        self, built: Any, reference: ExactIndex, clustered: tuple[np.ndarray, ...], record_property: Any
    ) -> None:
        queries = clustered[2]
        recall = recall_at_k(built.search(queries, 10)[0], reference.search(queries, 10)[0])
        record_property("recall@10 clustered", recall)
        print(f"{type(built).__name__}: recall@10 on clustered vectors = {recall:.4f}")
        assert recall >= self.recall_floor

    def test_recall_on_gaussian_vectors(self, record_property: Any) -> None:
        items, queries = gaussian_vectors(self.n_recall_items, self.n_recall_queries, self.gaussian_dim, seed=13)
        ids = _sparse_ids(len(items), seed=13)
        exact = ExactIndex(self.gaussian_dim)
        exact.add(ids, items)
        index = self.build(ids, items)
        recall = recall_at_k(index.search(queries, 10)[0], exact.search(queries, 10)[0])
        record_property("recall@10 gaussian", recall)
        print(f"{type(index).__name__}: recall@10 on Gaussian vectors = {recall:.4f}")
        assert recall >= self.gaussian_recall_floor
