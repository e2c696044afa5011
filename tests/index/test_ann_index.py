"""FAISS HNSW and IVF: the conformance and recall suite, over-fetch fallback, build_index."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from tastemaker.errors import ArtifactError, MissingExtraError
from tastemaker.index import (
    EXACT_BELOW,
    ExactIndex,
    FaissHNSWIndex,
    FaissIVFIndex,
    ItemIndex,
    build_index,
    load_index,
)
from tastemaker.index import ann
from tastemaker.testing.index import VectorIndexConformance, clustered_vectors, recall_at_k

pytestmark = pytest.mark.skipif(importlib.util.find_spec("faiss") is None, reason="needs the ann extra (faiss-cpu)")


def test_importing_the_package_does_not_import_faiss() -> None:
    code = "import sys, tastemaker.index; print('faiss' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_missing_faiss_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)
    ann._faiss.cache_clear()
    try:
        with pytest.raises(MissingExtraError, match=r"tastemaker\[ann\]"):
            FaissHNSWIndex(4).add([1], np.ones((1, 4), dtype=np.float32))
    finally:
        ann._faiss.cache_clear()


class TestFaissHNSWIndex(VectorIndexConformance):
    gaussian_recall_floor = 0.8

    def make_index(self, dim: int) -> FaissHNSWIndex:
        return FaissHNSWIndex(dim)


class TestFaissIVFIndex(VectorIndexConformance):
    def make_index(self, dim: int) -> FaissIVFIndex:
        return FaissIVFIndex(dim)


def test_overfetch_cap_falls_back_to_exact() -> None:
    """With max_fetch far below the exclusions, every query comes up short and is answered
    exhaustively: the result equals exact search."""
    items, queries = clustered_vectors(3000, 20, 16, seed=0)
    ids = np.arange(3000) * 3
    hnsw = FaissHNSWIndex(16, max_fetch=20)
    hnsw.add(ids, items)
    exact = build_index(ids, items, kind="exact")
    top, _ = exact.search(queries, 300)
    exclude = [top[q, :200] for q in range(len(queries))]
    found, scores = hnsw.search(queries, 10, exclude=exclude)
    truth, truth_scores = exact.search(queries, 10, exclude=exclude)
    np.testing.assert_array_equal(found, truth)
    np.testing.assert_allclose(scores, truth_scores, rtol=1e-5)


def test_mostly_unavailable_catalogue() -> None:
    items, queries = clustered_vectors(2000, 10, 16, seed=1)
    ids = np.arange(2000)
    hnsw = build_index(ids, items, kind="hnsw")
    exact = build_index(ids, items, kind="exact")
    for index in (hnsw, exact):
        index.set_available(ids[:1990], False)
    found, _ = hnsw.search(queries, 20)
    assert (found[:, 10:] == -1).all()
    np.testing.assert_array_equal(np.sort(found[:, :10], axis=1), np.tile(ids[1990:], (10, 1)))
    assert recall_at_k(found, exact.search(queries, 20)[0]) == 1.0


def test_ef_search_and_threads_are_settings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    items, queries = clustered_vectors(1000, 5, 16, seed=2)
    index = build_index(np.arange(1000), items, kind="hnsw", M=16, ef_search=32, threads=2)
    assert index.params() == {"M": 16, "ef_construction": 200, "ef_search": 32, "threads": 2, "max_fetch": 512}
    index.ef_search = 64
    index.save(tmp_path / "hnsw")
    assert load_index(tmp_path / "hnsw").params()["ef_search"] == 64
    with pytest.raises(ValueError, match="threads"):
        FaissHNSWIndex(16, threads=0)


def test_ivf_defaults_follow_the_catalogue_size() -> None:
    items, _ = clustered_vectors(4000, 1, 16, seed=3)
    index = build_index(np.arange(4000), items, kind="ivf")
    assert index.nlist == FaissIVFIndex.default_nlist(4000) == 102
    assert index.nprobe == 32
    with pytest.raises(ValueError, match="nlist"):
        FaissIVFIndex(16, nlist=50).add(np.arange(10), items[:10])


def test_build_index_picks_exact_below_the_threshold() -> None:
    items, _ = clustered_vectors(500, 1, 8, seed=4)
    assert isinstance(build_index(np.arange(500), items), ExactIndex)
    assert isinstance(build_index(np.arange(500), items, exact_below=100), FaissHNSWIndex)
    assert isinstance(build_index(np.arange(500), items, kind="ivf"), FaissIVFIndex)
    assert EXACT_BELOW == 20_000
    for kind in ("exact", "hnsw", "ivf"):
        assert isinstance(build_index(np.arange(500), items, kind=kind), ItemIndex)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown index kind"):
        build_index(np.arange(500), items, kind="annoy")  # type: ignore[arg-type]


def test_load_checks_the_kind_and_the_faiss_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    items, _ = clustered_vectors(500, 1, 8, seed=5)
    build_index(np.arange(500), items, kind="hnsw").save(tmp_path / "hnsw")
    with pytest.raises(ArtifactError, match="expected 'ivf'"):
        FaissIVFIndex.load(tmp_path / "hnsw")
    (tmp_path / "hnsw" / "index.faiss").write_bytes(b"not an index")
    with pytest.raises(ArtifactError, match="index.faiss"):
        load_index(tmp_path / "hnsw")
