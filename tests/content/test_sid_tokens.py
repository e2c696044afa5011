"""ItemTokenizer: known answers for the three modes (hashed ids, SID n-grams, SentencePiece
over SIDs), pieces for new items, round trips and bad input."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest

from tastemaker.content.sid_tokens import ItemTokenizer, as_sid_matrix, stable_row
from tastemaker.errors import MissingExtraError, NotFittedError


def _pieces(indptr: np.ndarray, indices: np.ndarray) -> list[list[int]]:
    return [indices[indptr[i] : indptr[i + 1]].tolist() for i in range(len(indptr) - 1)]


@pytest.fixture(scope="module")
def prefix_catalog() -> tuple[list[str], np.ndarray]:
    """200 items whose SIDs (a, b, c, 0) share prefixes: 4 first codes x 5 second x 10 third."""
    sids = np.array([(a, b, c, 0) for a in range(4) for b in range(5) for c in range(10)], dtype=np.int64)
    return [f"item{i}" for i in range(len(sids))], sids


@pytest.fixture(scope="module")
def spm(prefix_catalog: tuple[list[str], np.ndarray]) -> ItemTokenizer:
    pytest.importorskip("sentencepiece")
    ids, sids = prefix_catalog
    return ItemTokenizer("sid-spm", 64).fit(ids, sids)


# ---------------------------------------------------------------------- hash
def test_stable_row_known_answers() -> None:
    # blake2b with an 8-byte digest, read little-endian, from coreutils: printf 'item:i0' | b2sum -l 64
    assert stable_row("item:i0", 1000) == 9703978196570049558 % 1000 == 558
    assert stable_row("item:i1", 1000) == 594
    assert stable_row("item:movie-42", 97) == 90


def test_hash_mode_gives_fixed_rows_in_every_process() -> None:
    tokenizer = ItemTokenizer("hash", 1000).fit(["i0", "i1"])
    indptr, indices = tokenizer.transform(["i0", "i1", "movie-42"])  # a new id needs no refit
    assert indptr.tolist() == [0, 1, 2, 3] and indices.tolist() == [558, 594, 275]
    # Python's own hash() is salted per process; the rows must not be
    code = "from tastemaker.content.sid_tokens import ItemTokenizer as T; print(T('hash', 1000).fit([]).transform(['i0', 'i1'])[1].tolist())"
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "[558, 594]"


# ---------------------------------------------------------------------- n-grams
def test_bigram_pieces_are_shared_exactly_where_sids_share_pairs() -> None:
    sids = np.array([[1, 2, 3, 0], [1, 2, 4, 0], [5, 2, 3, 0]])
    size = 2**20  # no accidental hash collisions among these nine keys (checked below)
    tokenizer = ItemTokenizer("sid-ngram", size, ngram=2).fit(["a", "b", "c"], sids)
    assert tokenizer.ngram_keys(sids[0]) == ["2:0:1,2", "2:1:2,3", "2:2:3,0"]
    a, b, c = _pieces(*tokenizer.transform(["a", "b", "c"], sids))
    assert a == [stable_row(k, size) for k in ("2:0:1,2", "2:1:2,3", "2:2:3,0")]
    assert len(set(a + b + c)) == 6  # 9 keys, 3 of them repeated: (0: 1,2) and (1: 2,3), (2: 3,0)
    assert set(a) & set(b) == {stable_row("2:0:1,2", size)}  # the shared prefix pair
    assert set(a) & set(c) == {stable_row("2:1:2,3", size), stable_row("2:2:3,0", size)}
    assert not set(b) & set(c)  # same code 2 at position 1, but in different pairs


def test_unigram_pieces_are_per_position_codes() -> None:
    sids = np.array([[1, 2, 3, 0], [1, 2, 4, 0]])
    tokenizer = ItemTokenizer("sid-ngram", 2**20, ngram=1).fit(["a", "b"], sids)
    a, b = _pieces(*tokenizer.transform(["a", "b"], sids))
    assert len(a) == 4 and len(set(a) & set(b)) == 3  # all but position 2
    # the same code at another position is another piece
    (c,) = _pieces(*tokenizer.transform(["c"], np.array([[2, 1, 3, 0]])))
    assert not set(c[:2]) & set(a[:2])


def test_table_size_bounds_every_row() -> None:
    sids = np.arange(40).reshape(10, 4) % 7
    for mode in ("hash", "sid-ngram"):
        tokenizer = ItemTokenizer(mode, 5).fit([str(i) for i in range(10)], sids)  # type: ignore[arg-type]
        _, indices = tokenizer.transform([str(i) for i in range(10)], sids)
        assert indices.min() >= 0 and indices.max() < 5


# ---------------------------------------------------------------------- SentencePiece
def test_spm_segments_every_sid_into_pieces_of_its_string(spm: ItemTokenizer, prefix_catalog) -> None:
    ids, sids = prefix_catalog
    assert spm.vocabulary_size <= 64
    strings = spm.sid_strings(sids)
    assert len(set(strings)) == len(sids) and all(len(s) == 4 for s in strings)
    pieces = _pieces(*spm.transform(ids, sids))
    for string, rows in zip(strings, pieces, strict=True):
        assert rows and all(0 < r < spm.vocabulary_size for r in rows)  # row 0: the unused unknown piece
        assert "".join(spm.piece_text(r) for r in rows) == string
    # frequent prefixes become long pieces: each (a, b) pair starts 10 SIDs
    lengths = [len(spm.piece_text(rows[0])) for rows in pieces]
    assert np.mean(lengths) > 1.5, lengths


def test_spm_new_item_reuses_the_pieces_of_a_shared_prefix(spm: ItemTokenizer, prefix_catalog) -> None:
    ids, sids = prefix_catalog
    known = _pieces(*spm.transform(ids, sids))
    # a known item (a, b, 3, 0) whose first piece spans its prefix but not its collision entry
    k = next(i for i in range(len(sids)) if sids[i, 2] == 3 and 2 <= len(spm.piece_text(known[i][0])) <= 3)
    a, b = sids[k, :2]
    # collision entry 7 was never seen in fit: it is left out, the prefix still segments as before
    (new,) = _pieces(*spm.transform(["new"], np.array([[a, b, 3, 7]])))
    assert new[0] == known[k][0]
    assert "".join(spm.piece_text(r) for r in new) == spm.sid_strings(sids[[k]])[0][:3]
    # an unseen code mid-SID splits the string: the pieces on either side are still found
    (split,) = _pieces(*spm.transform(["new2"], np.array([[a, 9, 3, 0]])))
    assert "".join(spm.piece_text(r) for r in split) == "".join(spm.sid_strings(np.array([[a, 0, 3, 0]]))[0][i] for i in (0, 2, 3))


def test_spm_table_too_small_for_the_alphabet_is_refused(prefix_catalog) -> None:
    pytest.importorskip("sentencepiece")
    ids, sids = prefix_catalog  # 4 + 5 + 10 + 1 = 20 characters
    with pytest.raises(ValueError, match="needs table_size >= 21"):
        ItemTokenizer("sid-spm", 20).fit(ids, sids)
    small = ItemTokenizer("sid-spm", 21).fit(ids, sids)  # room for the characters alone
    assert small.vocabulary_size <= 21


def test_spm_without_sentencepiece_names_the_extra(monkeypatch: pytest.MonkeyPatch, prefix_catalog) -> None:
    ids, sids = prefix_catalog
    monkeypatch.setitem(sys.modules, "sentencepiece", None)  # the package is not installed
    with pytest.raises(MissingExtraError, match=r"tastemaker\[sid\]"):
        ItemTokenizer("sid-spm", 64).fit(ids, sids)


# ---------------------------------------------------------------------- persistence
@pytest.mark.parametrize("mode", ["hash", "sid-ngram", "sid-spm"])
def test_arrays_round_trip_gives_the_same_pieces(mode: str, prefix_catalog) -> None:
    if mode == "sid-spm":
        pytest.importorskip("sentencepiece")
    ids, sids = prefix_catalog
    tokenizer = ItemTokenizer(mode, 64, ngram=3).fit(ids, sids)  # type: ignore[arg-type]
    buffer = io.BytesIO()
    np.savez(buffer, **tokenizer.to_arrays("tok."))
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as data:  # plain arrays, no pickle
        loaded = ItemTokenizer.from_arrays({k: data[k] for k in data.files}, "tok.")
    assert (loaded.mode, loaded.table_size, loaded.ngram) == (mode, 64, 3)
    new_sids = np.array([[0, 1, 2, 5], [3, 4, 9, 0]])
    for items, table in ((ids, sids), (["x", "y"], new_sids)):
        for got, want in zip(loaded.transform(items, table), tokenizer.transform(items, table), strict=True):
            np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------- bad input
def test_bad_input_is_refused_with_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown tokenizer mode"):
        ItemTokenizer("words", 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="table_size must be >= 1"):
        ItemTokenizer("hash", 0)
    with pytest.raises(ValueError, match="ngram must be >= 1"):
        ItemTokenizer("sid-ngram", 10, ngram=0)
    with pytest.raises(ValueError, match="needs a semantic ID table"):
        ItemTokenizer("sid-ngram", 10).fit(["a"])
    with pytest.raises(ValueError, match="ragged"):
        ItemTokenizer("sid-ngram", 10).fit(["a", "b"], [(1, 2), (1, 2, 3)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-negative"):
        ItemTokenizer("sid-ngram", 10).fit(["a"], np.array([[1, -2]]))
    with pytest.raises(ValueError, match="2 semantic IDs for 1 items"):
        ItemTokenizer("sid-ngram", 10).fit(["a"], np.array([[1, 2], [3, 4]]))
    with pytest.raises(ValueError, match="longer than the semantic IDs"):
        ItemTokenizer("sid-ngram", 10, ngram=3).fit(["a"], np.array([[1, 2]]))
    with pytest.raises(NotFittedError):
        ItemTokenizer("hash", 10).transform(["a"])
    fitted = ItemTokenizer("sid-ngram", 10).fit(["a"], np.array([[1, 2, 0]]))
    with pytest.raises(ValueError, match="fitted on 3"):
        fitted.transform(["b"], np.array([[1, 2]]))
    with pytest.raises(ValueError, match="needs the items' semantic IDs"):
        fitted.transform(["b"])
    assert as_sid_matrix([(1, 2), np.array([3, 4])]).tolist() == [[1, 2], [3, 4]]
