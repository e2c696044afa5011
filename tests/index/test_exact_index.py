"""ExactIndex: the conformance suite plus the reference's own guarantees."""

from __future__ import annotations

import numpy as np
import pytest

from tastemaker.errors import ArtifactError
from tastemaker.index import ExactIndex, build_index, load_index
from tastemaker.index.exact import IdMap
from tastemaker.testing.index import VectorIndexConformance, clustered_vectors


class TestExactIndex(VectorIndexConformance):
    recall_floor = 1.0
    gaussian_recall_floor = 1.0

    def make_index(self, dim: int) -> ExactIndex:
        return ExactIndex(dim)


def test_known_answer() -> None:
    index = ExactIndex()
    index.add([10, 20, 30], np.array([[1, 0], [0, 1], [2, 2]], dtype=np.float32))
    ids, scores = index.search(np.array([[1, 0], [0, 3]], dtype=np.float32), 2)
    np.testing.assert_array_equal(ids, [[30, 10], [30, 20]])
    np.testing.assert_array_equal(scores, [[2, 1], [6, 3]])
    ids, _ = index.search(np.array([[1, 0]], dtype=np.float32), 2, exclude=[np.array([30])])
    np.testing.assert_array_equal(ids, [[10, 20]])


def test_memory_bounded_batches_give_the_same_answer() -> None:
    items, queries = clustered_vectors(2000, 100, 16, seed=0)
    whole = build_index(np.arange(2000), items, kind="exact")
    blocked = ExactIndex(16, batch_bytes=12 * 2000 * 3)  # three queries per block
    blocked.add(np.arange(2000), items)
    exclude = [np.arange(q, q + 50) for q in range(100)]
    for args in ((queries, 10), (queries, 10, exclude)):
        np.testing.assert_array_equal(whole.search(*args)[0], blocked.search(*args)[0])
        np.testing.assert_allclose(whole.search(*args)[1], blocked.search(*args)[1], rtol=1e-5)


def test_ties_break_by_storage_order() -> None:
    index = ExactIndex(2)
    index.add([5, 3, 9], np.ones((3, 2), dtype=np.float32))
    np.testing.assert_array_equal(index.search(np.ones((1, 2), dtype=np.float32), 3)[0], [[5, 3, 9]])


def test_one_at_a_time_adds() -> None:
    items, _ = clustered_vectors(100, 1, 8, seed=1)
    index = ExactIndex()
    for position, vector in enumerate(items):
        index.add([position], vector[None, :])
    assert len(index) == 100
    np.testing.assert_array_equal(index.vectors, items)
    np.testing.assert_array_equal(index.ids, np.arange(100))


def test_id_map() -> None:
    id_map = IdMap()
    id_map.insert(np.array([50, 10, 30]), np.array([0, 1, 2]))
    id_map.insert(np.array([20]), np.array([3]))
    np.testing.assert_array_equal(id_map.rows(np.array([10, 20, 30, 40, 50, 99, -1])), [1, 3, 2, -1, 0, -1, -1])
    id_map.delete(np.array([30, 50]))
    np.testing.assert_array_equal(id_map.rows(np.array([10, 20, 30, 50])), [1, 3, -1, -1])
    assert len(id_map) == 2


def test_load_refuses_a_foreign_directory(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ArtifactError, match="not a saved index"):
        load_index(tmp_path)
    index = build_index(np.arange(3), np.eye(3, dtype=np.float32), kind="exact")
    index.save(tmp_path / "exact")
    (tmp_path / "exact" / "vectors.npy").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="vectors.npy"):
        load_index(tmp_path / "exact")
