"""TF-IDF + truncated SVD (latent semantic analysis): a text encoder with no extra dependency.

``fit(texts)`` learns, from a corpus:

* a vocabulary: lower-cased word tokens of 2+ characters (``\\b\\w\\w+\\b``) kept when they occur
  in at least ``min_df`` documents and at most a ``max_df`` share of them, the
  ``max_features`` most frequent first (ties broken alphabetically);
* smoothed IDF weights ``idf(t) = ln((1 + n) / (1 + df(t))) + 1``, with sublinear term
  frequency ``1 + ln(tf)``, rows L2-normalised (the scikit-learn ``TfidfVectorizer`` defaults);
* a projection onto the top ``dimension`` right singular vectors of that matrix
  (``scipy.sparse.linalg.svds``, PROPACK, with a seeded start vector; a dense SVD for small
  matrices),
  each with its sign fixed so that its largest-magnitude entry is positive.

``encode`` applies the frozen vocabulary, IDF and projection to any text and L2-normalises the
result; a text with no known word gets an all-zero row. The fitted state saves to one ``.npz``
(strings and numbers only, no pickle), and its hash is part of ``encoder_id``, so the cache
never serves a vector from a different fit.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from tastemaker.content.encoders import CachedTextEncoder, check_texts
from tastemaker.errors import ArtifactError, NotFittedError

_TOKEN = re.compile(r"\b\w\w+\b")
_FORMAT = "tastemaker-tfidf-svd"
_DENSE_SVD_MAX = 4_000_000  # up to this many matrix cells, a dense SVD is exact and fast enough


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens of two or more characters."""
    return _TOKEN.findall(text.lower())


class TfidfSvdEncoder(CachedTextEncoder):
    """TF-IDF + truncated SVD fitted on a corpus (see the module doc).

    The cache and the progress bar are off by default here: encoding is fast (tens of thousands
    of texts per second), cheaper than a cache look-up.
    """

    def __init__(
        self,
        dimension: int = 256,
        *,
        min_df: int = 2,
        max_df: float = 1.0,
        max_features: int = 100_000,
        seed: int = 0,
        cache_dir: str | Path | None = None,
        cache: bool = False,
        batch_size: int = 4096,
        progress: bool | None = False,
    ) -> None:
        super().__init__(cache_dir=cache_dir, cache=cache, batch_size=batch_size, progress=progress)
        if dimension < 1 or min_df < 1 or not 0 < max_df <= 1 or max_features < 1:
            raise ValueError("need dimension >= 1, min_df >= 1, 0 < max_df <= 1 and max_features >= 1")
        self.requested_dimension = dimension
        self.min_df = min_df
        self.max_df = max_df
        self.max_features = max_features
        self.seed = seed
        self.vocabulary_: np.ndarray | None = None  # str tokens, column order
        self.idf_: np.ndarray | None = None  # float64, one per token
        self.components_: np.ndarray | None = None  # float32 (dimension, n_tokens)
        self._columns: dict[str, int] = {}
        self._id: str | None = None

    # ------------------------------------------------------------------ contract
    @property
    def fitted(self) -> bool:
        return self.components_ is not None

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError("TfidfSvdEncoder is not fitted: call fit(corpus) or TfidfSvdEncoder.load(path)")

    @property
    def dimension(self) -> int:
        """The output dimension (the requested one, capped by the corpus rank at fit)."""
        return int(self.components_.shape[0]) if self.components_ is not None else self.requested_dimension

    @property
    def encoder_id(self) -> str:
        self._check_fitted()
        if self._id is None:
            digest = hashlib.sha256()
            digest.update("\n".join(self.vocabulary_.tolist()).encode())  # type: ignore[union-attr]
            digest.update(np.ascontiguousarray(self.idf_).tobytes())
            digest.update(np.ascontiguousarray(self.components_).tobytes())
            self._id = f"tfidf-svd-{self.dimension}-{digest.hexdigest()[:12]}"
        return self._id

    def _embed(self, texts: list[str]) -> np.ndarray:
        self._check_fitted()
        assert self.components_ is not None
        projected: np.ndarray = np.asarray(self._tfidf(texts) @ self.components_.T, dtype=np.float32)
        return projected

    # ------------------------------------------------------------------ fitting
    def fit(self, texts: Sequence[str]) -> TfidfSvdEncoder:
        """Learn the vocabulary, IDF and projection from ``texts``; returns self."""
        corpus = check_texts(texts)
        tokenized = [tokenize(t) for t in corpus]
        n_docs = len(corpus)
        df: Counter[str] = Counter()
        for tokens in tokenized:
            df.update(set(tokens))
        max_count = self.max_df * n_docs
        kept = [(count, token) for token, count in df.items() if self.min_df <= count <= max_count]
        kept.sort(key=lambda pair: (-pair[0], pair[1]))
        kept = kept[: self.max_features]
        if len(kept) < 2 or n_docs < 2:
            raise ValueError(
                f"TF-IDF needs at least 2 documents and 2 words occurring in >= min_df={self.min_df} of them; "
                f"got {n_docs} documents and {len(kept)} such words"
            )
        vocabulary = sorted(token for _, token in kept)
        self.vocabulary_ = np.asarray(vocabulary, dtype=str)
        self._columns = {token: col for col, token in enumerate(vocabulary)}
        counts = np.array([df[t] for t in vocabulary], dtype=np.float64)
        self.idf_ = np.log((1.0 + n_docs) / (1.0 + counts)) + 1.0
        self.components_ = None
        self._id = None
        matrix = self._tfidf_tokens(tokenized)
        self.components_ = self._projection(matrix)
        return self

    def _projection(self, matrix: sp.csr_matrix) -> np.ndarray:
        rank = min(matrix.shape) - 1
        k = min(self.requested_dimension, rank)
        if matrix.shape[0] * matrix.shape[1] <= _DENSE_SVD_MAX:
            _, values, vt = np.linalg.svd(matrix.toarray(), full_matrices=False)
        else:
            # PROPACK: exact top-k, and much faster than ARPACK for k in the hundreds.
            start = np.random.default_rng(self.seed).standard_normal(matrix.shape[0])
            _, values, vt = svds(matrix, k=k, v0=start, solver="propack")
        order = np.argsort(-values, kind="stable")[:k]
        vt = vt[order]
        signs = np.sign(vt[np.arange(len(vt)), np.argmax(np.abs(vt), axis=1)])
        signs[signs == 0] = 1.0
        components: np.ndarray = (vt * signs[:, None]).astype(np.float32)
        return components

    def _tfidf(self, texts: list[str]) -> sp.csr_matrix:
        return self._tfidf_tokens([tokenize(t) for t in texts])

    def _tfidf_tokens(self, tokenized: list[list[str]]) -> sp.csr_matrix:
        columns = self._columns
        indptr = [0]
        indices: list[int] = []
        data: list[float] = []
        for tokens in tokenized:
            counts = Counter(columns[t] for t in tokens if t in columns)
            indices.extend(counts.keys())
            data.extend(counts.values())
            indptr.append(len(indices))
        matrix = sp.csr_matrix(
            (np.asarray(data, dtype=np.float64), np.asarray(indices, dtype=np.int64), np.asarray(indptr, dtype=np.int64)),
            shape=(len(tokenized), len(columns)),
        )
        matrix.data = 1.0 + np.log(matrix.data)  # sublinear tf
        matrix = matrix.multiply(self.idf_[None, :]).tocsr()  # type: ignore[index]
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
        scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        return sp.diags(scale) @ matrix

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the fitted state to one ``.npz`` file (no pickle)."""
        self._check_fitted()
        assert self.vocabulary_ is not None and self.idf_ is not None and self.components_ is not None
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        config = {
            "format": _FORMAT, "version": 1, "dimension": self.requested_dimension, "min_df": self.min_df,
            "max_df": self.max_df, "max_features": self.max_features, "seed": self.seed,
        }
        with path.open("wb") as fh:
            np.savez(
                fh, config=np.asarray(json.dumps(config)), vocabulary=np.asarray("\n".join(self.vocabulary_.tolist())),
                idf=self.idf_,
                components=self.components_,
            )
        return path

    @classmethod
    def load(cls, path: str | Path, **options: Any) -> TfidfSvdEncoder:
        """Read a file written by :meth:`save`; ``options`` (cache, cache_dir, ...) go to the constructor."""
        path = Path(path).expanduser()
        try:
            with np.load(path, allow_pickle=False) as arrays:
                config = json.loads(str(arrays["config"]))
                vocabulary = np.asarray(str(arrays["vocabulary"]).split("\n"), dtype=str)
                idf, components = arrays["idf"], arrays["components"]
        except (OSError, KeyError, ValueError) as exc:
            raise ArtifactError(f"{path} is not a saved TfidfSvdEncoder: {exc}") from exc
        if config.get("format") != _FORMAT or config.get("version") != 1:
            raise ArtifactError(f"{path}: not a {_FORMAT} version 1 file")
        if components.shape[1] != len(vocabulary) or len(idf) != len(vocabulary):
            raise ArtifactError(f"{path}: array shapes disagree (corrupted file)")
        encoder = cls(
            config["dimension"], min_df=config["min_df"], max_df=config["max_df"],
            max_features=config["max_features"], seed=config["seed"], **options,
        )
        encoder.vocabulary_ = vocabulary
        encoder.idf_ = idf
        encoder.components_ = components
        encoder._columns = {token: col for col, token in enumerate(vocabulary.tolist())}
        return encoder
