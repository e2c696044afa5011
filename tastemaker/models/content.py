"""Content-only retrieval: the user is the recency-weighted mean of the text vectors of what
they interacted with, and every item is scored by cosine to it.

This is the baseline of "Short-Form Video Recommendations with Multimodal Embeddings"
(Dzhoha et al., Zalando 2025; papers.md section 4): items are embedded by a frozen content
encoder, a user is a weighted average of the embeddings of their recent items, and retrieval
is a similarity search. Here the encoder is a text encoder (MiniLM by default) over each item's
description, and the weight of the item ``age`` steps before the most recent one is
``decay ** age`` over the last ``max_length`` items. There is no training: ``fit`` only
encodes the catalog, so an item with no events is as recommendable as any other, and
:meth:`ContentRetrieval.add_items` makes new items scorable at once.

The module also holds :class:`ItemText`, the frozen item text vectors a content model keeps
(shared with :mod:`tastemaker.models.neural.hllm`): vectors from the catalog's ``text_vector``
column where present, else from the configured encoder; ``encoder="tfidf"`` fits a TF-IDF + SVD
encoder on the catalog texts at fit time and saves it in the artifact, so new items are
encoded in the same space after a reload.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field, field_validator

from tastemaker.content.encoders import TextEncoder, l2_normalise
from tastemaker.content.features import item_texts, stored_vectors, text_vectors
from tastemaker.data.dataset import Dataset
from tastemaker.errors import DataError
from tastemaker.models.base import ModelConfig, ScoringBatch, VectorRecommender
from tastemaker.tuning import Float
from tastemaker.types import FitOptions

_TFIDF_NAMES = {"tfidf", "tfidf-svd"}
_ENCODER_PREFIX = "encoder."


# ---------------------------------------------------------------------- item text vectors
@dataclass
class ItemText:
    """Frozen text vectors of a model's items, and the means to encode more.

    ``vectors`` is (n_items, dim) float32, rows L2-normalised (all-zero for an item the encoder
    has nothing for); ``encoder_name`` is the configured name; ``fitted`` the TF-IDF encoder
    fitted on the catalog (None for a named pre-trained encoder, which is re-created on demand).
    """

    vectors: np.ndarray
    encoder_name: str
    fitted: TextEncoder | None = None

    @property
    def dimension(self) -> int:
        return int(self.vectors.shape[1])

    @classmethod
    def fit(cls, catalog: pd.DataFrame, encoder: str, options: FitOptions) -> ItemText:
        """Vectors for every catalog row: its ``text_vector`` when it has one, else its text
        encoded by ``encoder`` (a TF-IDF encoder is first fitted on all the catalog's texts).
        Vectors of different lengths, or a column whose length differs from the encoder's
        output, are a :class:`DataError`."""
        _, present = stored_vectors(catalog)  # raises on ragged rows
        fitted: TextEncoder | None = None
        if not present.all() and encoder.lower() in _TFIDF_NAMES:
            from tastemaker.content.tfidf import TfidfSvdEncoder

            try:
                fitted = TfidfSvdEncoder().fit(item_texts(catalog))
            except ValueError as exc:
                raise DataError(f"encoder={encoder!r} cannot be fitted on this catalog's texts: {exc}") from exc
        elif not present.all():
            fitted = _named_encoder(encoder, options)
        vectors = text_vectors(catalog, fitted if fitted is not None else encoder)
        keep = fitted if _is_tfidf(fitted) else None  # a pre-trained model is re-created by name
        return cls(l2_normalise(vectors), encoder, keep)

    def encode_new(self, frame: pd.DataFrame) -> np.ndarray:
        """L2-normalised vectors for new catalog rows (their ``text_vector``, else encoded), of
        this model's dimension; a different dimension is a :class:`DataError`."""
        stored, present = stored_vectors(frame)
        if present.all():
            vectors = stored
        else:
            encoder = self.fitted
            if encoder is None and self.encoder_name.lower() in _TFIDF_NAMES:
                raise DataError(
                    "this model was fitted on stored text vectors only, so its TF-IDF encoder was never "
                    "fitted: give new items a 'text_vector' column"
                )
            vectors = text_vectors(frame, encoder if encoder is not None else _named_encoder(self.encoder_name, None))
        if vectors.shape[1] != self.dimension:
            raise DataError(
                f"new items have {vectors.shape[1]}-d text vectors but the model was fitted on {self.dimension}-d "
                f"ones: encode them with the model's encoder ({self.encoder_name!r})"
            )
        return l2_normalise(vectors)

    def extend(self, vectors: np.ndarray) -> None:
        self.vectors = np.concatenate([self.vectors, vectors.astype(np.float32)])

    # ------------------------------------------------------------------ persistence
    def arrays(self) -> dict[str, np.ndarray]:
        """``text`` and, for a fitted TF-IDF encoder, its saved file's arrays (``encoder.*``)."""
        out = {"text": self.vectors}
        if self.fitted is not None:
            with tempfile.TemporaryDirectory() as tmp:
                path = self.fitted.save(Path(tmp) / "encoder.npz")  # type: ignore[attr-defined]
                with np.load(path, allow_pickle=False) as npz:
                    out.update({_ENCODER_PREFIX + k: npz[k] for k in npz.files})
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], encoder_name: str) -> ItemText:
        fitted = None
        saved = {k.removeprefix(_ENCODER_PREFIX): v for k, v in arrays.items() if k.startswith(_ENCODER_PREFIX)}
        if saved:
            from tastemaker.content.tfidf import TfidfSvdEncoder

            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "encoder.npz"
                np.savez(path, **saved)  # type: ignore[arg-type]
                fitted = TfidfSvdEncoder.load(path)
        return cls(np.asarray(arrays["text"], dtype=np.float32), encoder_name, fitted)


def _is_tfidf(encoder: Any) -> bool:
    from tastemaker.content.tfidf import TfidfSvdEncoder

    return isinstance(encoder, TfidfSvdEncoder)


def _named_encoder(name: str, options: FitOptions | None) -> TextEncoder:
    """A pre-trained encoder by name; sentence-transformers ones get the fit's threads and device."""
    from tastemaker.content.encoders import get_encoder

    if name.lower() in _TFIDF_NAMES or name.endswith(".npz"):
        return get_encoder(name)
    if options is None:
        return get_encoder(name)
    return get_encoder(name, threads=options.threads, device=options.device)


def batch_sequences(batch: ScoringBatch) -> list[np.ndarray]:
    """The batch's time-ordered sequences, or its history rows as they are when it has none."""
    if batch.sequences is not None:
        return batch.sequences
    h = batch.history
    return [h.indices[h.indptr[i] : h.indptr[i + 1]] for i in range(len(batch))]


# ---------------------------------------------------------------------- the model
class ContentRetrievalConfig(ModelConfig):
    """``encoder``: the text encoder for rows without a ``text_vector`` (``"minilm"``,
    ``"tfidf"``, or a sentence-transformers name/path); ``decay``: the weight of each step back
    in the history; ``max_length``: how many of the latest items make the user vector."""

    encoder: str = "minilm"
    decay: float = Field(0.9, gt=0, le=1)
    max_length: int = Field(50, ge=1)

    @field_validator("encoder")
    @classmethod
    def _named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("encoder must name a text encoder")
        return value


class ContentRetrieval(VectorRecommender):
    """Cosine between each item's text vector and the recency-weighted mean of the user's
    latest item vectors (see the module docstring). Serves through a vector index."""

    Config = ContentRetrievalConfig
    search_space = {"decay": Float(0.1, 1.0)}
    name = "content"
    sequential = True  # the order sets the recency weights
    config: ContentRetrievalConfig

    text_: ItemText

    def _fit(self, dataset: Dataset, options: FitOptions) -> None:
        self.text_ = ItemText.fit(dataset.catalog, self.config.encoder, options)

    def item_vectors(self) -> np.ndarray:
        """(n_items, dim) L2-normalised text vectors (read-only view), e.g. for an ANN index."""
        self._check_fitted()
        view = self.text_.vectors.view()
        view.flags.writeable = False
        return view

    def user_vectors(self, batch: ScoringBatch) -> np.ndarray:
        """(len(batch), dim) L2-normalised query vectors: Σ decay**age · item vector over the
        latest ``max_length`` items (age 0 = the most recent; a repeated item counts each
        time); zeros for an empty history."""
        self._check_fitted()
        sequences = [np.asarray(s[-self.config.max_length :], dtype=np.int64) for s in batch_sequences(batch)]
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        rows = np.repeat(np.arange(len(sequences)), lengths)
        ends = np.repeat(np.cumsum(lengths), lengths)
        age = ends - 1 - np.arange(int(lengths.sum()))
        weights = self.config.decay ** age.astype(np.float64)
        items = np.concatenate([*sequences, np.zeros(0, np.int64)])
        mixing = sp.csr_matrix((weights, (rows, items)), shape=(len(sequences), len(self.text_.vectors)))
        return l2_normalise(np.asarray(mixing @ self.text_.vectors))

    def add_items(self, catalog: Any) -> None:
        """Append the catalog rows whose id is new, with their ``text_vector`` or their text
        encoded by the model's encoder; known ids are left as they are. New items have no
        events and popularity 0, and are scored like every other item at once."""
        self._check_fitted()
        frame = self._new_catalog_rows(catalog)
        if len(frame):
            vectors = self.text_.encode_new(frame)
            self._append_items(frame)
            self.text_.extend(vectors)

    def _arrays(self) -> dict[str, np.ndarray]:
        return self.text_.arrays()

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.text_ = ItemText.from_arrays(arrays, self.config.encoder)
