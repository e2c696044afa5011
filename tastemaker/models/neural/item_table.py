"""Item embeddings composed from pieces: hashed IDs or semantic-ID pieces instead of one
random row per item (Singh et al. 2023, "Better Generalization with Semantic IDs").

Three parts, shared by the neural models that offer ``item_representation``:

* :class:`ItemRepresentationSettings`: the config fields (one set of names for every model);
* :class:`ItemPieces`: the fitted item -> pieces state (torch-free but for the RQ-VAE): the
  :class:`~tastemaker.content.sid_tokens.ItemTokenizer`, every item's pieces as CSR, the item ->
  semantic ID table and, when the model made the SIDs itself, the frozen RQ-VAE; it gives new
  items pieces (:meth:`ItemPieces.add`) and persists as plain arrays;
* :class:`PieceItemTable`: the ``nn.Module`` that composes all item vectors at once, each the
  sum of its pieces' rows (an ``nn.EmbeddingBag``), plus an ID row with ``sid_with_id``.

Where the SIDs come from (SID modes): the catalog's ``semantic_id`` column when it has one (see
:mod:`tastemaker.content.features`); else the model fits
:class:`~tastemaker.content.semantic_ids.SemanticIDs` (``sid_levels`` x ``sid_codebook_size``,
``sid_epochs``) on the catalog's text vectors (its ``text_vector`` column, or its text encoded by
``encoder``) and keeps it, so new items are quantised by the same frozen model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, Self

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from tastemaker.content.features import SEMANTIC_ID, resolve_encoder, stored_semantic_ids, stored_vectors, text_vectors
from tastemaker.content.sid_tokens import ItemTokenizer, as_sid_matrix
from tastemaker.models.base import ModelConfig
from tastemaker.types import FitOptions

import torch  # noqa: E402, I001  (tastemaker/training.py names the missing extra)
from torch import nn  # noqa: E402

if TYPE_CHECKING:
    from tastemaker.content.encoders import TextEncoder
    from tastemaker.content.semantic_ids import SemanticIDs

ItemRepresentation = Literal["id", "hash", "sid-ngram", "sid-spm"]


class ItemRepresentationSettings(ModelConfig):
    """How a model embeds items.

    ``item_representation``: ``"id"`` (one learned row per item, the default), ``"hash"``
    (hashed item ids), ``"sid-ngram"`` (hashed n-grams of the semantic ID, ``sid_ngram`` = n) or
    ``"sid-spm"`` (SentencePiece pieces of the semantic ID); see
    :mod:`tastemaker.content.sid_tokens`. ``table_size``: rows of the piece table (None: the
    number of catalog items, the budget of the ID table). ``sid_with_id``: add the item's ID row to
    its pieces (the paper's "augment"; items added after fit have no ID row). ``sid_levels``,
    ``sid_codebook_size``, ``sid_epochs``: the RQ-VAE a model fits when the catalog has no
    ``semantic_id`` column, on text vectors from ``encoder`` (a
    :func:`~tastemaker.content.encoders.get_encoder` name, or a saved TF-IDF ``.npz`` path).
    """

    item_representation: ItemRepresentation = "id"
    table_size: int | None = Field(None, ge=1)
    sid_ngram: int = Field(2, ge=1)
    sid_with_id: bool = False
    sid_levels: int = Field(3, ge=1)
    sid_codebook_size: int = Field(256, ge=2)
    sid_epochs: int = Field(30, ge=1)
    encoder: str = "minilm"

    @model_validator(mode="after")
    def _pieces_for_augment(self) -> Self:
        if self.sid_with_id and self.item_representation == "id":
            raise ValueError("sid_with_id adds an ID row to item pieces: set item_representation to a piece mode")
        return self


@dataclass
class ItemPieces:
    """The fitted item -> pieces state of a model (see the module doc). Row ``k`` of the CSR
    (``indptr``, ``indices``) and of ``sid_table`` is item code ``k``."""

    tokenizer: ItemTokenizer
    indptr: np.ndarray
    indices: np.ndarray
    n_fitted: int  # items 0..n_fitted-1 were in fit; their pieces are the trained rows
    sid_table: np.ndarray | None = None  # (n_items, levels + 1), SID modes only
    sid_model: SemanticIDs | None = None  # the frozen RQ-VAE, when the model made the SIDs

    @classmethod
    def fit(cls, catalog: pd.DataFrame, settings: ItemRepresentationSettings, options: FitOptions) -> ItemPieces:
        """Pieces of every catalog row (in item-code order), making the SIDs when needed."""
        mode = settings.item_representation
        if mode == "id":
            raise ValueError("item_representation 'id' has no pieces")
        ids = catalog["item_id"].astype(str).to_numpy()
        tokenizer = ItemTokenizer(mode, settings.table_size or len(catalog), ngram=settings.sid_ngram)
        sid_table, sid_model = None, None
        if tokenizer.needs_sids:
            sid_table = stored_semantic_ids(catalog)
            if sid_table is None:
                from tastemaker.content.semantic_ids import SemanticIDs

                vectors = _vectors(catalog, settings.encoder)
                sid_model = SemanticIDs(
                    levels=settings.sid_levels, codebook_size=settings.sid_codebook_size, epochs=settings.sid_epochs
                )
                # the model's checkpoint is the model's, not the RQ-VAE's
                sid_model.fit(vectors, replace(options, checkpoint=None))
                sid_table = sid_model.table.copy()
        tokenizer.fit(ids, sid_table)
        indptr, indices = tokenizer.transform(ids, sid_table)
        return cls(tokenizer, indptr, indices, len(catalog), sid_table, sid_model)

    @property
    def n_items(self) -> int:
        return len(self.indptr) - 1

    def add(self, frame: pd.DataFrame, encoder: TextEncoder | str) -> None:
        """Append the pieces of new items (the rows of ``frame``, which has ``item_id``, in the
        order they get codes). SID modes: a row's SID is its ``semantic_id`` value when it has
        one, else the frozen RQ-VAE's code for its ``text_vector`` or its text encoded by
        ``encoder`` (:meth:`SemanticIDs.extend`: the collision entry is the prefix's next free one).

        A piece no fitted item has is left out: its row was never trained, so it holds only its
        random initial value (e.g. the bigram of a new collision entry, or a hashed id that
        collides with no fitted item). An item left with no pieces gets a zero vector."""
        sids = self._new_sids(frame, encoder) if self.tokenizer.needs_sids else None
        indptr, indices = self.tokenizer.transform(frame["item_id"].astype(str).to_numpy(), sids)
        trained = np.zeros(self.tokenizer.table_size, dtype=bool)
        trained[self.indices[: self.indptr[self.n_fitted]]] = True
        keep = trained[indices]
        rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        indices = indices[keep]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows[keep], minlength=len(indptr) - 1))]).astype(np.int64)
        self.indptr = np.concatenate([self.indptr, self.indptr[-1] + indptr[1:]])
        self.indices = np.concatenate([self.indices, indices])
        if sids is not None and self.sid_table is not None:
            self.sid_table = np.concatenate([self.sid_table, sids])

    def _new_sids(self, frame: pd.DataFrame, encoder: TextEncoder | str) -> np.ndarray:
        assert self.sid_table is not None
        width = self.sid_table.shape[1]
        out = np.zeros((len(frame), width), dtype=np.int64)
        column = list(frame[SEMANTIC_ID]) if SEMANTIC_ID in frame.columns else [None] * len(frame)
        given = np.array([v is not None and np.ndim(v) == 1 and len(v) > 0 for v in column], dtype=bool)
        if given.any():
            sids = as_sid_matrix([column[i] for i in np.flatnonzero(given)])
            if sids.shape[1] != width:
                raise ValueError(f"new items' semantic IDs have {sids.shape[1]} entries; this model's have {width}")
            out[given] = sids
        if not given.all():
            if self.sid_model is None:
                item = frame["item_id"].iloc[int(np.flatnonzero(~given)[0])]
                raise ValueError(
                    f"item {item!r} has no {SEMANTIC_ID!r}: this model's semantic IDs came from the catalog's "
                    f"{SEMANTIC_ID!r} column, so new items need one too"
                )
            out[~given] = self.sid_model.extend(_vectors(frame[~given].reset_index(drop=True), encoder))
        return out

    # ------------------------------------------------------------------ persistence
    def to_arrays(self, prefix: str = "pieces.") -> dict[str, np.ndarray]:
        """The state as named arrays (tokenizer, CSR, SID table, RQ-VAE), for a model artifact."""
        arrays = {
            f"{prefix}indptr": self.indptr,
            f"{prefix}indices": self.indices,
            f"{prefix}n_fitted": np.asarray(self.n_fitted, dtype=np.int64),
        }
        arrays.update(self.tokenizer.to_arrays(f"{prefix}tokenizer."))
        if self.sid_table is not None:
            arrays[f"{prefix}sid_table"] = self.sid_table
        if self.sid_model is not None:
            arrays.update(self.sid_model.to_arrays(f"{prefix}rqvae."))
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "pieces.") -> ItemPieces:
        """Restore the state written by :meth:`to_arrays`."""
        sid_model = None
        if f"{prefix}rqvae.meta" in arrays:
            from tastemaker.content.semantic_ids import SemanticIDs

            sid_model = SemanticIDs.from_arrays(arrays, f"{prefix}rqvae.")
        sid_table = arrays.get(f"{prefix}sid_table")
        return cls(
            ItemTokenizer.from_arrays(arrays, f"{prefix}tokenizer."),
            np.asarray(arrays[f"{prefix}indptr"], dtype=np.int64),
            np.asarray(arrays[f"{prefix}indices"], dtype=np.int64),
            int(arrays[f"{prefix}n_fitted"]),
            None if sid_table is None else np.asarray(sid_table, dtype=np.int64),
            sid_model,
        )


def _vectors(catalog: pd.DataFrame, encoder: TextEncoder | str) -> np.ndarray:
    """The rows' text vectors: their ``text_vector`` where present, else their text encoded."""
    _, present = stored_vectors(catalog)
    if present.all() and len(catalog):
        return text_vectors(catalog, encoder)  # no encoding happens
    model = resolve_encoder(encoder)
    if getattr(model, "fitted", True) is False:
        raise ValueError(
            f"encoder {encoder!r} is not fitted: give the catalog a 'text_vector' column, or fit and save a "
            "TfidfSvdEncoder and pass the path of its .npz file as the encoder"
        )
    return text_vectors(catalog, model)


class PieceItemTable(nn.Module):
    """All item vectors at once: item ``k`` = sum of its piece rows (``pieces``, an
    ``EmbeddingBag`` of ``table_size`` rows) + its ID row (``n_id_items`` > 0: the first
    ``n_id_items`` items have one). The pieces CSR is a non-persistent buffer (it moves with the
    module; the model keeps it in :class:`ItemPieces`)."""

    indptr: torch.Tensor
    indices: torch.Tensor

    def __init__(self, table_size: int, embedding_size: int, n_id_items: int = 0) -> None:
        super().__init__()
        d = embedding_size
        self.pieces = nn.EmbeddingBag(table_size, d, mode="sum", include_last_offset=True)
        self.id_embedding = nn.Embedding(n_id_items, d) if n_id_items else None
        nn.init.normal_(self.pieces.weight, std=d**-0.5)
        if self.id_embedding is not None:
            nn.init.normal_(self.id_embedding.weight, std=d**-0.5)
            # 1 = the item had training events. An ID row that never saw a positive is only pushed
            # down by the softmax; adding it would bury a cold item that its pieces could place.
            self.register_buffer("id_mask", torch.ones(n_id_items))
        self.set_pieces(np.zeros(1, np.int64), np.zeros(0, np.int64))

    def set_id_mask(self, trained: np.ndarray) -> None:
        """Which of the ID rows are used (items with training events); the others stay zero."""
        if self.id_embedding is not None:
            self.id_mask.copy_(torch.as_tensor(trained[: len(self.id_mask)], dtype=self.id_mask.dtype))

    def set_pieces(self, indptr: np.ndarray, indices: np.ndarray) -> None:
        device = self.pieces.weight.device
        self.register_buffer("indptr", torch.as_tensor(indptr, dtype=torch.long, device=device), persistent=False)
        self.register_buffer("indices", torch.as_tensor(indices, dtype=torch.long, device=device), persistent=False)

    def forward(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """(n, embedding_size): the vectors of item codes ``items`` (n,), or of every item (None:
        one EmbeddingBag pass over the whole CSR); an item without pieces or ID row is zeros."""
        if items is None:
            vectors: torch.Tensor = self.pieces(self.indices, self.indptr)
            if self.id_embedding is not None:
                ids = self.id_embedding.weight * self.id_mask[:, None]
                vectors = vectors + nn.functional.pad(ids, (0, 0, 0, len(vectors) - len(ids)))
            return vectors
        starts = self.indptr[items]
        counts = self.indptr[items + 1] - starts
        bounds = nn.functional.pad(torch.cumsum(counts, 0), (1, 0))
        within = torch.arange(int(bounds[-1]), device=items.device) - torch.repeat_interleave(bounds[:-1], counts)
        vectors = self.pieces(self.indices[torch.repeat_interleave(starts, counts) + within], bounds)
        if self.id_embedding is not None:
            n_id = self.id_embedding.num_embeddings
            rows = items.clamp(max=n_id - 1)
            has_id = ((items < n_id).to(vectors.dtype) * self.id_mask[rows]).unsqueeze(1)
            vectors = vectors + self.id_embedding(rows) * has_id
        return vectors
