"""Item -> pieces: which rows of one embedding table make up an item's vector.

Singh et al. 2023 ("Better Generalization with Semantic IDs: A Case Study in Ranking for
Recommendations") replace random item-ID embeddings by embeddings of *pieces* of the item's
semantic ID (SID, see :mod:`~tastemaker.content.semantic_ids`), and compare, at an equal
embedding-table budget:

* ``"hash"``: the random-hashing baseline. An item is one row, ``blake2b(item id) % table_size``;
  items that collide share a row for no reason, and a new item's row says nothing about it.
* ``"sid-ngram"``: the SID ``(c_1, ..., c_L, e)`` (``e`` = the collision-breaking entry) is cut
  into its contiguous ``ngram``-grams; the key ``(position, codes)`` of each is hashed to a row
  (``ngram=1`` is the paper's unigram-SID, ``ngram=2`` its bigram-SID). Items with similar content
  share SID codes, so they share pieces: collisions are meaningful, and a new item's pieces have
  been trained on its neighbours.
* ``"sid-spm"``: SentencePiece (a unigram language model, Kudo 2018) learns a vocabulary of at
  most ``table_size`` pieces over the catalog's SIDs, each SID written as a string of ``L + 1``
  characters (code ``c`` at position ``l`` is one character of its own). Frequent prefixes become
  long pieces, rare items split into short ones; the paper finds this beats hand-made n-grams.
  The candidate pieces ("seeds") are what SentencePiece itself seeds with: every substring that
  occurs in at least two SIDs, scored frequency x length. We compute them (sentencepiece 0.2.3's
  own seed search finds almost none among multi-byte characters: it then learns single codes
  only). So a piece is always shared by two or more items, never private to one: items are told
  apart by their combination of pieces, and the vocabulary may stay below ``table_size``.

An item's vector is the SUM of its pieces' rows (``nn.EmbeddingBag(mode="sum")`` over the CSR
``indptr``/``indices`` that :meth:`ItemTokenizer.transform` returns).

**Equal budget.** A plain item-ID table has one row per item (``n_items`` rows). To compare the
modes with it, give every mode ``table_size = n_items`` (what the models do by default).

New items get pieces by the same rules without refitting: ``"hash"`` from their id, the SID modes
from their SID. In ``"sid-spm"`` a code never seen at its position in fit (e.g. a collision
entry larger than any fitted one) has no character in the vocabulary; it is left out, and the
rest of the SID is segmented around it (an item with no known code gets no pieces: a zero vector).

The fitted state is plain arrays (:meth:`ItemTokenizer.to_arrays`), the SentencePiece model as
its serialized proto (uint8); no pickle. Only numpy is needed, and ``sentencepiece`` for
``"sid-spm"`` (the ``sid`` extra), imported when used.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Self, get_args

import numpy as np

from tastemaker.errors import MissingExtraError, NotFittedError

TokenMode = Literal["hash", "sid-ngram", "sid-spm"]
MODES: tuple[str, ...] = get_args(TokenMode)

# SID characters for SentencePiece: (position l, code c) -> chr(_FIRST_CHAR + offset_l + c). CJK
# ideographs up to the surrogates are ordinary letters to SentencePiece (no whitespace, digits
# or normalisation rules apply with the settings below).
_FIRST_CHAR = 0x4E00
_LAST_CHAR = 0xD7FF


def stable_row(key: str, table_size: int) -> int:
    """The row of ``key`` in a table of ``table_size`` rows: blake2b (8 bytes, little-endian)
    modulo ``table_size``. Stable across processes and machines, unlike Python's salted ``hash``."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % table_size


def as_sid_matrix(sid_rows: Any, n_rows: int | None = None) -> np.ndarray:
    """SIDs (a matrix, or a sequence of equal-length int tuples) as an int64 (n, length) matrix.

    Raises ``ValueError`` for ragged or empty rows, negative codes, or (given ``n_rows``) the
    wrong number of rows."""
    if isinstance(sid_rows, np.ndarray) and sid_rows.ndim == 2:
        matrix = sid_rows
    else:
        rows = [np.asarray(r).reshape(-1) if r is not None else np.zeros(0) for r in sid_rows]
        lengths = {len(r) for r in rows}
        if len(lengths) > 1 or 0 in lengths:
            raise ValueError(f"semantic IDs must all have one non-zero length; got lengths {sorted(lengths)} (ragged rows)")
        matrix = np.stack(rows) if rows else np.zeros((0, 0), dtype=np.int64)
    if matrix.size and not np.issubdtype(matrix.dtype, np.integer):
        if not np.array_equal(matrix, np.round(matrix)):
            raise ValueError("semantic IDs must be integer codes")
    matrix = matrix.astype(np.int64)
    if matrix.ndim != 2 or (len(matrix) and matrix.shape[1] == 0):
        raise ValueError(f"semantic IDs must be an (items, length) matrix, got shape {matrix.shape}")
    if (matrix < 0).any():
        raise ValueError("semantic IDs must be non-negative codes")
    if n_rows is not None and len(matrix) != n_rows:
        raise ValueError(f"got {len(matrix)} semantic IDs for {n_rows} items")
    return matrix


def _import_sentencepiece() -> Any:
    try:
        import sentencepiece
    except ImportError as exc:
        raise MissingExtraError("sentencepiece", "sid") from exc
    return sentencepiece


def _seed_pieces(strings: list[str]) -> list[tuple[str, int]]:
    """SentencePiece's unigram seeds: every character, and every longer substring found in at
    least two strings, scored frequency x length (in first-seen order, for determinism)."""
    counts: Counter[str] = Counter()
    for text in strings:
        counts.update(text[i:j] for i in range(len(text)) for j in range(i + 1, len(text) + 1))
    return [(piece, count * len(piece)) for piece, count in counts.items() if len(piece) == 1 or count >= 2]


class ItemTokenizer:
    """Maps items to pieces: rows of one table of ``table_size`` rows (see the module doc).

    ``ItemTokenizer(mode, table_size, ngram=2)`` stores the settings; :meth:`fit` learns what the
    mode needs (nothing for ``"hash"``, the SID length for ``"sid-ngram"``, the SentencePiece
    model for ``"sid-spm"``); :meth:`transform` gives any items (fitted or new) their pieces.
    """

    def __init__(self, mode: TokenMode, table_size: int, *, ngram: int = 2) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown tokenizer mode {mode!r}; choose one of {list(MODES)}")
        if int(table_size) < 1:
            raise ValueError(f"table_size must be >= 1, got {table_size}")
        if int(ngram) < 1:
            raise ValueError(f"ngram must be >= 1, got {ngram}")
        self.mode: TokenMode = mode
        self.table_size = int(table_size)
        self.ngram = int(ngram)

    def __repr__(self) -> str:
        return f"ItemTokenizer({self.mode!r}, table_size={self.table_size}, ngram={self.ngram})"

    # ------------------------------------------------------------------ fitting
    @property
    def needs_sids(self) -> bool:
        """True for the SID modes (``fit``/``transform`` need each item's semantic ID)."""
        return self.mode != "hash"

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "sid_length_")

    def fit(self, item_ids: Sequence[str] | np.ndarray, sid_table: np.ndarray | None = None) -> Self:
        """Learn the pieces of the catalog ``item_ids`` (external ids) with SIDs ``sid_table``
        (one row per item; required by the SID modes, ignored by ``"hash"``); returns self."""
        n = len(item_ids)
        if not self.needs_sids:
            self.sid_length_ = 0
            return self
        if sid_table is None:
            raise ValueError(f"tokenizer mode {self.mode!r} needs a semantic ID table (one SID per item)")
        sids = as_sid_matrix(sid_table, n)
        if not len(sids):
            raise ValueError("cannot fit a tokenizer on an empty catalog")
        length = sids.shape[1]
        if self.mode == "sid-ngram" and self.ngram > length:
            raise ValueError(f"ngram={self.ngram} is longer than the semantic IDs ({length} entries)")
        if self.mode == "sid-spm":
            self._fit_spm(sids)
        self.sid_length_ = length
        return self

    def _fit_spm(self, sids: np.ndarray) -> None:
        spm = _import_sentencepiece()
        widths = sids.max(axis=0) + 1  # codes seen at each position
        offsets = np.concatenate([[0], np.cumsum(widths)[:-1]])
        if int(widths.sum()) > _LAST_CHAR - _FIRST_CHAR + 1:
            raise ValueError(
                f"semantic IDs span {int(widths.sum())} (position, code) pairs, more than the "
                f"{_LAST_CHAR - _FIRST_CHAR + 1} characters sid-spm can write"
            )
        self.widths_ = widths.astype(np.int64)
        self.offsets_ = offsets.astype(np.int64)
        strings = self.sid_strings(sids)
        alphabet = len(set("".join(strings)))
        # SentencePiece keeps every character as a piece, plus the unknown piece (row 0).
        if alphabet + 1 > self.table_size:
            raise ValueError(
                f"sid-spm needs table_size >= {alphabet + 1} (one row per distinct (position, code) of the SIDs, "
                f"plus one), got {self.table_size}"
            )
        writer = io.BytesIO()
        with tempfile.TemporaryDirectory(prefix="tastemaker-spm-") as folder:
            seeds = Path(folder) / "seeds.tsv"  # SentencePiece reads seeds from a file only
            seeds.write_text("".join(f"{piece}\t{score}\n" for piece, score in _seed_pieces(strings)), encoding="utf-8")
            self._train_spm(spm, strings, str(seeds), sids.shape[1], writer)
        self.spm_model_ = np.frombuffer(writer.getvalue(), dtype=np.uint8).copy()
        self._load_processor()

    def _train_spm(self, spm: Any, strings: list[str], seeds: str, length: int, writer: io.BytesIO) -> None:
        spm.SentencePieceTrainer.Train(
            sentence_iterator=iter(strings),
            model_writer=writer,
            seed_sentencepieces_file=seeds,
            model_type="unigram",
            vocab_size=self.table_size,
            hard_vocab_limit=False,  # a small catalog may not have table_size pieces to offer
            character_coverage=1.0,
            max_sentencepiece_length=length,
            split_by_whitespace=False,
            split_by_unicode_script=False,
            split_by_number=False,
            add_dummy_prefix=False,
            remove_extra_whitespaces=False,
            normalization_rule_name="identity",
            unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
            num_threads=1,  # deterministic
            minloglevel=2,
        )

    def _load_processor(self) -> None:
        spm = _import_sentencepiece()
        self._processor = spm.SentencePieceProcessor(model_proto=self.spm_model_.tobytes())
        if self._processor.get_piece_size() > self.table_size:  # never, with hard_vocab_limit=False
            raise ValueError(f"SentencePiece made {self._processor.get_piece_size()} pieces for a table of {self.table_size}")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError("ItemTokenizer is not fitted: call fit(item_ids, sid_table) or from_arrays(...)")

    # ------------------------------------------------------------------ pieces
    @property
    def vocabulary_size(self) -> int:
        """Rows that can be used: the SentencePiece vocabulary in ``"sid-spm"`` (<= table_size,
        row 0 being SentencePiece's unknown piece, which no item uses), else ``table_size``."""
        self._check_fitted()
        return int(self._processor.get_piece_size()) if self.mode == "sid-spm" else self.table_size

    def transform(self, item_ids: Sequence[str] | np.ndarray, sid_rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Pieces of each item as CSR ``(indptr, indices)`` (int64): item ``k``'s rows are
        ``indices[indptr[k]:indptr[k + 1]]``, each in ``[0, table_size)``. ``sid_rows`` (one SID
        per item, the fitted length) is required by the SID modes."""
        self._check_fitted()
        n = len(item_ids)
        if self.mode == "hash":
            rows = [[stable_row(f"item:{item}", self.table_size)] for item in item_ids]
        else:
            if sid_rows is None:
                raise ValueError(f"tokenizer mode {self.mode!r} needs the items' semantic IDs")
            sids = as_sid_matrix(sid_rows, n)
            if n and sids.shape[1] != self.sid_length_:
                raise ValueError(f"semantic IDs have {sids.shape[1]} entries; this tokenizer was fitted on {self.sid_length_}")
            rows = self._ngram_rows(sids) if self.mode == "sid-ngram" else self._spm_rows(sids)
        indptr = np.zeros(n + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([len(r) for r in rows])
        indices = np.fromiter((row for item in rows for row in item), dtype=np.int64, count=int(indptr[-1]))
        return indptr, indices

    def ngram_keys(self, sid: Sequence[int]) -> list[str]:
        """The ``"sid-ngram"`` keys of one SID: ``"<n>:<position>:<c>,<c>..."`` for each position."""
        n = self.ngram
        codes = [int(c) for c in sid]
        return [f"{n}:{p}:" + ",".join(map(str, codes[p : p + n])) for p in range(len(codes) - n + 1)]

    def _ngram_rows(self, sids: np.ndarray) -> list[list[int]]:
        return [[stable_row(key, self.table_size) for key in self.ngram_keys(sid)] for sid in sids.tolist()]

    def sid_strings(self, sid_rows: np.ndarray) -> list[str]:
        """``"sid-spm"``: each SID as the string SentencePiece segments; a code not seen at its
        position in fit is a space (never part of a piece: the string is segmented around it)."""
        if not hasattr(self, "widths_"):
            raise NotFittedError("sid_strings needs a fitted sid-spm tokenizer")
        sids = as_sid_matrix(sid_rows)
        known = sids < self.widths_[None, :]
        chars = np.where(known, _FIRST_CHAR + self.offsets_[None, :] + np.minimum(sids, self.widths_ - 1), ord(" "))
        return ["".join(map(chr, row)) for row in chars.tolist()]

    def _spm_rows(self, sids: np.ndarray) -> list[list[int]]:
        strings = self.sid_strings(sids)
        runs = [s.split(" ") for s in strings]
        flat = [r for parts in runs for r in parts if r]
        encoded = iter(self._processor.encode(flat, out_type=int) if flat else [])
        unknown = self._processor.unk_id()
        rows: list[list[int]] = []
        for parts in runs:
            pieces = [p for run in parts if run for p in next(encoded)]
            rows.append([p for p in pieces if p != unknown])
        return rows

    def piece_text(self, row: int) -> str:
        """``"sid-spm"``: the SID characters a row stands for (see :meth:`sid_strings`)."""
        self._check_fitted()
        if self.mode != "sid-spm":
            raise ValueError("piece_text is only defined for mode 'sid-spm'")
        text: str = self._processor.id_to_piece(int(row))
        return text

    # ------------------------------------------------------------------ persistence
    def to_arrays(self, prefix: str = "tokenizer.") -> dict[str, np.ndarray]:
        """The fitted state as named arrays (strings, ints, and the SentencePiece proto as uint8)."""
        self._check_fitted()
        arrays = {
            f"{prefix}mode": np.asarray(self.mode),
            f"{prefix}sizes": np.asarray([self.table_size, self.ngram, self.sid_length_], dtype=np.int64),
        }
        if self.mode == "sid-spm":
            arrays.update({f"{prefix}widths": self.widths_, f"{prefix}spm_model": self.spm_model_})
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "tokenizer.") -> ItemTokenizer:
        """Restore a tokenizer written by :meth:`to_arrays`."""
        try:
            mode = str(arrays[f"{prefix}mode"])
            table_size, ngram, sid_length = (int(v) for v in arrays[f"{prefix}sizes"])
        except KeyError as exc:
            raise ValueError(f"no tokenizer arrays under prefix {prefix!r}") from exc
        tokenizer = cls(mode, table_size, ngram=ngram)  # type: ignore[arg-type]
        tokenizer.sid_length_ = sid_length
        if mode == "sid-spm":
            tokenizer.widths_ = np.asarray(arrays[f"{prefix}widths"], dtype=np.int64)
            tokenizer.offsets_ = np.concatenate([[0], np.cumsum(tokenizer.widths_)[:-1]]).astype(np.int64)
            tokenizer.spm_model_ = np.asarray(arrays[f"{prefix}spm_model"], dtype=np.uint8)
            tokenizer._load_processor()
        return tokenizer
