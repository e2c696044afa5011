"""HLLM: hierarchical item and user models over item text (Chen et al., ByteDance 2024,
arXiv 2409.12740; code ``bytedance/HLLM``), scaled down to a frozen text encoder.

The hierarchy:

* **item model** — the item's text vector (frozen: the catalog's ``text_vector`` column, else
  the configured text encoder over its description, MiniLM by default) goes through a
  trainable projection ``LayerNorm(W_r t + MLP(t))`` to the item embedding. HLLM fine-tunes a
  whole LLM here; keeping the encoder frozen and training only the projection is the CPU-sized
  version papers.md section 6 suggests. An optional item-ID embedding (``id_embedding``, off
  by default) is added for items with training events only, so items without any (cold, or
  added later) are represented by their content alone, as in two-tower's ID dropout;
* **user model** — a causal transformer reads the sequence of item embeddings (plus learned
  positions); its hidden state at position t predicts item t + 1.

The loss is the released code's ``"nce"`` (``HLLM.nce_loss``), see :func:`nce_loss`: cosine
logits times a learnable scale ``exp(logit_scale)`` (initialised to 1/0.07; ``logit_scale``
is clamped in place to [0, log 100] before each use), one set of ``negatives`` items sampled
uniformly per batch and shared by every position, and negatives whose cosine to the positive
exceeds ``nce_threshold`` masked (near-duplicates of the positive, and the positive itself).

Scoring: the cosine between the L2-normalised last hidden state of any item sequence (fold-in:
new events count without retraining) and every item embedding. Because items are represented
by their text, an item never seen in training is scored like any other, and
:meth:`HLLM.add_items` makes new catalog rows scorable at once.

Training runs through :func:`~tastemaker.training.fit_module` (AdamW, optional
cosine schedule with warm-up, early stopping on validation NDCG@10 from ``holdout_last``),
with SASRec's right-padded, length-bucketed batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from tastemaker.data.dataset import Dataset
from tastemaker.models.base import ModelConfig, ScoringBatch, VectorRecommender, score_batch_size
from tastemaker.models.content import ItemText, batch_sequences
from tastemaker.models.neural.sasrec import _length_bucketed_batches, _pad
from tastemaker.training import (
    Batches,
    NextItemValidation,
    TrainingConfig,
    TrainResult,
    arrays_to_state,
    fit_module,
    holdout_last,
    items_in,
    resolve_device,
    seed_everything,
    state_to_arrays,
)
from tastemaker.types import FitOptions

LOGIT_SCALE_INIT = math.log(1 / 0.07)  # HLLM (as CLIP): temperature 0.07 at the start
LOGIT_SCALE_MAX = math.log(100.0)  # ... and never below 0.01 (nor above 1: logit_scale >= 0)
ITEM_CHUNK = 65536  # items projected at once outside training
USER_CHUNK = 512  # sequences encoded at once outside training


class HLLMConfig(TrainingConfig, ModelConfig):
    """Architecture and loss; training settings come from :class:`~tastemaker.training.TrainingConfig`.

    ``encoder`` names the frozen text encoder for catalog rows without a ``text_vector``
    (``"minilm"``, ``"tfidf"`` — fitted on the catalog's texts and saved with the model — or a
    sentence-transformers name or path); it must be the encoder that made the column, if any,
    since new items are encoded with it."""

    encoder: str = "minilm"
    embedding_size: int = Field(64, ge=1)
    max_length: int = Field(50, ge=1)
    blocks: int = Field(2, ge=1)
    heads: int = Field(1, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    negatives: int = Field(512, ge=1)
    nce_threshold: float = Field(0.99, gt=-1, le=1)
    id_embedding: bool = False
    batch_size: int = Field(128, ge=1)
    weight_decay: float = Field(0.01, ge=0)  # HLLM's AdamW setting

    @model_validator(mode="after")
    def _check(self) -> HLLMConfig:
        if self.embedding_size % self.heads:
            raise ValueError(f"embedding_size {self.embedding_size} must be divisible by heads {self.heads}")
        if not self.encoder.strip():
            raise ValueError("encoder must name a text encoder")
        return self


def nce_loss(
    queries: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    positive_items: torch.Tensor,
    negative_items: torch.Tensor,
    logit_scale: torch.Tensor,
    threshold: float,
) -> torch.Tensor:
    """HLLM's InfoNCE with shared negatives (``nce_loss`` in ``bytedance/HLLM``).

    ``queries`` (P, d) are user states, ``positives`` (P, d) each one's next item, and
    ``negatives`` (K, d) the items shared by all P rows, all L2-normalised; ``positive_items``
    (P,) and ``negative_items`` (K,) are their item codes. Logits are cosines times
    ``exp(logit_scale)``, the positive in column 0; a negative whose cosine to a row's positive
    exceeds ``threshold``, or that is the positive item itself, is masked for that row (it is
    not a negative). Returns the mean cross-entropy."""
    scale = logit_scale.float().exp()
    positive_logits = (queries * positives).sum(dim=-1, keepdim=True).float() * scale
    negative_logits = (queries @ negatives.T).float() * scale
    duplicate = (positives @ negatives.T > threshold) | (negative_items[None, :] == positive_items[:, None])
    # masked after scaling: -inf times the scale would make the scale's gradient 0 * inf = NaN
    logits = torch.cat([positive_logits, negative_logits.masked_fill(duplicate, float("-inf"))], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(queries), dtype=torch.long, device=queries.device))


class HLLMNet(nn.Module):
    """Item projection (+ optional ID embedding) and the causal user transformer. The frozen
    text matrix and which items have an ID are non-persistent buffers: they move with the
    module, and the artifact stores them as plain arrays."""

    def __init__(self, text_size: int, n_id_items: int, cfg: HLLMConfig) -> None:
        super().__init__()
        d = cfg.embedding_size
        self.text_residual = nn.Linear(text_size, d)
        self.text_mlp = nn.Sequential(nn.Linear(text_size, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.id_embedding = nn.Embedding(n_id_items, d) if n_id_items else None
        self.item_norm = nn.LayerNorm(d)
        self.position_embedding = nn.Embedding(cfg.max_length, d)
        self.dropout = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(
            d, cfg.heads, dim_feedforward=d, dropout=cfg.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.blocks, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(d)
        self.logit_scale = nn.Parameter(torch.tensor(LOGIT_SCALE_INIT))
        nn.init.normal_(self.position_embedding.weight, std=0.02)
        if self.id_embedding is not None:
            nn.init.normal_(self.id_embedding.weight, std=0.02)
        self.set_items(np.zeros((0, text_size), np.float32), np.zeros(0, bool))

    def set_items(self, text: np.ndarray, has_id: np.ndarray) -> None:
        device = self.logit_scale.device
        self.register_buffer("text", torch.as_tensor(text, dtype=torch.float32, device=device), persistent=False)
        self.register_buffer("has_id", torch.as_tensor(has_id, dtype=torch.bool, device=device), persistent=False)

    def scale(self) -> torch.Tensor:
        """The log logit scale, first clamped in place to [0, log 100] as HLLM does (in place,
        so the gradient still flows when it sits inside the range)."""
        with torch.no_grad():
            self.logit_scale.clamp_(0.0, LOGIT_SCALE_MAX)
        return self.logit_scale

    def encode_items(self, items: torch.Tensor) -> torch.Tensor:
        """Item codes (N,) -> item embeddings (N, d), not normalised (the user model's input)."""
        text = self.text[items]
        x = self.text_residual(text) + self.text_mlp(text)
        if self.id_embedding is not None:
            rows = items.clamp(max=self.id_embedding.num_embeddings - 1)
            x = x + self.id_embedding(rows) * self.has_id[items, None].to(x.dtype)
        return self.item_norm(x)

    def all_items(self) -> torch.Tensor:
        """Embeddings of every item (n_items, d), projected a bounded chunk at a time."""
        n, device = len(self.text), self.logit_scale.device
        chunks = [self.encode_items(torch.arange(s, min(s + ITEM_CHUNK, n), device=device)) for s in range(0, n, ITEM_CHUNK)]
        return torch.cat(chunks) if chunks else torch.zeros(0, self.item_norm.normalized_shape[0], device=device)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Item embeddings (B, L, d), right-padded -> hidden states (B, L, d). With right
        padding and a causal mask no real position attends to padding (see sasrec.py)."""
        length = inputs.shape[1]
        x = inputs + self.position_embedding(torch.arange(length, device=inputs.device))[None]
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=x.device, dtype=x.dtype)
        return self.final_norm(self.encoder(self.dropout(x), mask=mask, is_causal=True))

    def user_vectors(self, table: torch.Tensor, sequences: list[np.ndarray], max_length: int) -> torch.Tensor:
        """L2-normalised last hidden state of each sequence's latest ``max_length`` items,
        reading the embeddings from ``table`` (n_items, d)."""
        tokens, lengths = _pad([s[-max_length:] for s in sequences], table.device)
        padded = torch.cat([torch.zeros_like(table[:1]), table])  # row 0 = padding, item c -> c + 1
        hidden = self(padded[tokens])
        last = hidden[torch.arange(len(sequences), device=table.device), (lengths - 1).clamp(min=0)]
        return F.normalize(last, dim=-1)


def batch_loss(net: HLLMNet, inputs: torch.Tensor, targets: torch.Tensor, n_items: int, cfg: HLLMConfig) -> torch.Tensor:
    """:func:`nce_loss` at every real position of a batch of (inputs, targets) item tokens
    (codes + 1, 0 = padding / no target). Each distinct item of the batch and its negatives is
    projected once."""
    k = min(cfg.negatives, max(n_items - 1, 1))  # more than the catalog would only repeat items
    negatives = torch.randint(0, n_items, (k,), device=inputs.device)  # shared by the batch
    tokens = torch.cat([inputs.reshape(-1), targets.reshape(-1), negatives + 1])
    distinct, where = torch.unique(tokens, return_inverse=True)
    table = net.encode_items((distinct - 1).clamp(min=0)) * (distinct > 0)[:, None].to(net.text.dtype)
    hidden = net(table[where[: inputs.numel()]].view(*inputs.shape, -1))
    valid = targets > 0
    target_rows = where[inputs.numel() : 2 * inputs.numel()].view(targets.shape)[valid]
    negative_rows = where[2 * inputs.numel() :]
    return nce_loss(
        F.normalize(hidden[valid], dim=-1),
        F.normalize(table[target_rows], dim=-1),
        F.normalize(table[negative_rows], dim=-1),
        targets[valid] - 1,
        negatives,
        net.scale(),
        cfg.nce_threshold,
    )


class HLLM(VectorRecommender):
    """Text-based sequential recommender: frozen text vectors -> trained projection -> causal
    user transformer, trained with HLLM's InfoNCE (see the module docstring)."""

    Config = HLLMConfig
    name = "hllm"
    sequential = True
    config: HLLMConfig

    net_: HLLMNet
    train_result_: TrainResult
    text_: ItemText
    has_id_: np.ndarray  # items with an ID embedding (those with training events, id_embedding on)
    item_table_: torch.Tensor  # item embeddings (user-model input), on the network's device
    item_vectors_: np.ndarray  # the same, L2-normalised, for scoring

    # ------------------------------------------------------------------ training
    def _fit(self, dataset: Dataset, options: FitOptions) -> None:
        cfg = self.config
        n_items = dataset.n_items
        self.text_ = ItemText.fit(dataset.catalog, cfg.encoder, options)
        sequences = dataset.sequences()
        holdout = holdout_last(sequences, cfg.validation_users, np.random.default_rng(options.seed))

        def train_on(net: HLLMNet | None, train: list[np.ndarray]) -> tuple[Batches, int]:
            """Batches over ``train``; with ``id_embedding`` the items with events there get one."""
            windows = [s[-(cfg.max_length + 1) :] for s in train if len(s) >= 2]
            self.has_id_ = items_in(windows, n_items) if cfg.id_embedding else np.zeros(n_items, dtype=bool)
            if net is not None:
                net.set_items(self.text_.vectors, self.has_id_)

            def batches(rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
                yield from _length_bucketed_batches(windows, cfg.batch_size, rng)

            return batches, -(-len(windows) // cfg.batch_size)

        batches, steps = train_on(None, holdout.train)
        seed_everything(options.seed)  # the initial weights are part of what the seed fixes
        self.net_ = HLLMNet(self.text_.dimension, n_items if cfg.id_embedding else 0, cfg)
        self.net_.set_items(self.text_.vectors, self.has_id_)

        def loss(net: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            return batch_loss(net, batch[0], batch[1], n_items, cfg)  # type: ignore[arg-type]

        validate = None
        if len(holdout.users):
            histories = [holdout.train[u] for u in holdout.users]
            validation = NextItemValidation(histories, holdout.targets, min(USER_CHUNK, score_batch_size(n_items)))

            def validate(net: nn.Module) -> torch.Tensor:
                table = net.all_items()  # type: ignore[operator]
                items = F.normalize(table, dim=-1)
                return validation.gains(
                    lambda rows: net.user_vectors(table, [histories[i] for i in rows], cfg.max_length) @ items.T  # type: ignore[operator]
                )

        self.train_result_ = fit_module(
            self.net_, batches, loss, cfg, options, validate=validate, steps_per_epoch=steps, desc="hllm",
            refit=lambda net: train_on(net, sequences),  # type: ignore[arg-type]
        )
        self.net_.to("cpu")
        self.net_.scale()  # the last optimiser step may have left it past the bound
        self._refresh_item_vectors()

    # ------------------------------------------------------------------ vectors and scoring
    def _refresh_item_vectors(self) -> None:
        self.net_.eval()
        with torch.inference_mode():
            self.item_table_ = self.net_.all_items()
        self.item_vectors_ = F.normalize(self.item_table_, dim=-1).float().cpu().numpy()

    def item_vectors(self) -> np.ndarray:
        """(n_items, embedding_size) L2-normalised item embeddings (read-only view), e.g. for an
        ANN index: a query's score is the dot product with :meth:`user_vectors`."""
        self._check_fitted()
        view = self.item_vectors_.view()
        view.flags.writeable = False
        return view

    def user_vectors(self, batch: ScoringBatch) -> np.ndarray:
        """(len(batch), embedding_size) L2-normalised user states after each query's sequence
        (its latest ``max_length`` items); zeros for an empty one."""
        self._check_fitted()
        sequences = batch_sequences(batch)
        out = np.zeros((len(batch), self.item_vectors_.shape[1]), dtype=np.float32)
        rows = [i for i, s in enumerate(sequences) if len(s)]
        for start in range(0, len(rows), USER_CHUNK):
            part = rows[start : start + USER_CHUNK]
            with torch.inference_mode():
                vectors = self.net_.user_vectors(self.item_table_, [sequences[i] for i in part], self.config.max_length)
            out[part] = vectors.float().cpu().numpy()
        return out

    def to(self, device: str) -> HLLM:
        """Run the user model on ``device`` (e.g. ``"cuda"``); scores still come back as numpy."""
        self._check_fitted()
        self.net_.to(resolve_device(device))
        self.item_table_ = self.item_table_.to(self.net_.logit_scale.device)
        return self

    # ------------------------------------------------------------------ new items
    def add_items(self, catalog: Any) -> None:
        """Append the catalog rows (``item_id``, optional ``title``/``text``/``categories``/...
        or ``text_vector``) whose id is new: their text vectors (the column, else encoded with
        the model's encoder) go through the trained projection, so they are scored at once.
        Known ids are left as they are; new items have no events, popularity 0 and no ID
        embedding. A text vector of another dimension is a :class:`DataError`."""
        self._check_fitted()
        frame = self._new_catalog_rows(catalog)
        if not len(frame):
            return
        vectors = self.text_.encode_new(frame)
        n_old = len(self.items_)
        self._append_items(frame)
        self.text_.extend(vectors)
        self.has_id_ = np.concatenate([self.has_id_, np.zeros(len(frame), dtype=bool)])
        self.net_.set_items(self.text_.vectors, self.has_id_)
        self.net_.eval()
        device = self.item_table_.device
        with torch.inference_mode():
            added = torch.cat([
                self.net_.encode_items(torch.arange(s, min(s + ITEM_CHUNK, len(self.items_)), device=device))
                for s in range(n_old, len(self.items_), ITEM_CHUNK)
            ])
        self.item_table_ = torch.cat([self.item_table_, added])
        self.item_vectors_ = np.concatenate([self.item_vectors_, F.normalize(added, dim=-1).float().cpu().numpy()])

    # ------------------------------------------------------------------ persistence
    def _arrays(self) -> dict[str, np.ndarray]:
        return {**state_to_arrays(self.net_), **self.text_.arrays(), "has_id": self.has_id_}

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.text_ = ItemText.from_arrays(arrays, self.config.encoder)
        self.has_id_ = arrays["has_id"].astype(bool)
        ids = arrays.get("weights.id_embedding.weight")
        self.net_ = HLLMNet(self.text_.dimension, 0 if ids is None else ids.shape[0], self.config)
        self.net_.load_state_dict(arrays_to_state(arrays))
        self.net_.set_items(self.text_.vectors, self.has_id_)
        self._refresh_item_vectors()

