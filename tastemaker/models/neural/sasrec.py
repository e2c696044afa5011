"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

A causal transformer reads a user's most recent ``max_length`` items and predicts the next
one at every position; the output at the last position, dotted with the (shared) item
embeddings, scores the whole catalog.

Losses (``loss``):

* ``"bce"`` — the paper's: one uniformly sampled negative per position, binary cross-entropy;
* ``"ce"`` — full softmax cross-entropy over all items (Klenitskiy & Vasilev, RecSys 2023,
  "Turning dross into gold loss: is BERT4Rec really better than SASRec?");
* ``"sampled-softmax"`` — softmax over the positive and ``negatives`` uniformly sampled items,
  shared across the batch, accidental hits masked;
* ``"gbce"`` — gSASRec's generalised BCE (Petrov & Macdonald, RecSys 2023): ``negatives``
  sampled items per position and the positive's log-sigmoid scaled by β = α(t(1 - 1/α) + 1/α),
  α = the negative sampling rate, t = ``gbce_t``, which undoes the overconfidence negative
  sampling causes. Training logits carry one learned offset (``SASRecNet.logit_bias``) that
  starts at log(β / k), the best constant score for k negatives: with 256 negatives an
  untrained model's loss is almost all "push every score down", and without the offset the
  first hundreds of steps did only that, through the item vectors, and SASRec sat at
  popularity level (Beauty NDCG@10 0.0053, below MostPopular's 0.0061). See
  :func:`gbce_calibration`.

Inference is fold-in: any item sequence (a known user's history plus new events, or an
anonymous session) is encoded on the fly, so new events count without retraining.

Item representation (``item_representation``, Singh et al. 2023, "Better Generalization with
Semantic IDs"): ``"id"`` (default) gives each item one learned row; ``"hash"``, ``"sid-ngram"``
and ``"sid-spm"`` compose each item's vector from pieces of one table of ``table_size`` rows
(default: the number of items, the ID table's budget) — hashed ids, hashed n-grams of its
semantic ID, or SentencePiece pieces of it (:mod:`~tastemaker.models.neural.item_table`,
:mod:`~tastemaker.content.sid_tokens`). The composed vectors serve as inputs and (tied) outputs
alike, so every loss works unchanged. :meth:`SASRec.add_items` gives new items vectors without
retraining: from their semantic ID in the SID modes (similar content, shared pieces), from their
id in ``"hash"`` (a random row), and none (zeros) in ``"id"``.

Implementation notes (what makes it faster than a literal port):
sequences are right-padded, so with a causal mask no real position attends to padding and
no key-padding mask is needed (PyTorch's fused attention path applies); each batch is padded
only to its own longest window, with users bucketed by length; and losses are computed only
at real positions.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from tastemaker.data.dataset import Dataset
from tastemaker.models.base import Recommender, ScoringBatch, score_batch_size
from tastemaker.models.neural.item_table import ItemPieces, ItemRepresentationSettings, PieceItemTable
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

if TYPE_CHECKING:
    from tastemaker.content.encoders import TextEncoder

Loss = Literal["bce", "ce", "sampled-softmax", "gbce"]


class SASRecConfig(TrainingConfig, ItemRepresentationSettings):
    """Architecture and loss; training settings come from :class:`~tastemaker.training.TrainingConfig`, the item
    representation (``item_representation``, ``table_size``, ``sid_*``, ``encoder``) from
    :class:`~tastemaker.models.neural.item_table.ItemRepresentationSettings`."""

    embedding_size: int = Field(64, ge=1)
    max_length: int = Field(50, ge=1)
    blocks: int = Field(2, ge=1)
    heads: int = Field(1, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    loss: Loss = "ce"
    negatives: int = Field(256, ge=1)  # for sampled-softmax and gbce
    gbce_t: float = Field(0.75, ge=0, le=1)
    tie_embeddings: bool = True  # score with the input item embeddings (the paper) or a separate table
    batch_size: int = Field(128, ge=1)


class SASRecNet(nn.Module):
    """Item + position embeddings -> causal transformer blocks -> layer norm.

    Items are rows of ``item_embedding`` (``"id"``) or vectors composed by ``item_table`` from
    pieces (a table of ``table_size`` rows; with ``sid_with_id``, plus ID rows for the first
    ``n_id_items`` items). Either way :meth:`input_table` is (n_items + 1, d), row 0 = padding."""

    def __init__(self, n_items: int, cfg: SASRecConfig, table_size: int = 0, n_id_items: int = 0) -> None:
        super().__init__()
        d = cfg.embedding_size
        if d % cfg.heads:
            raise ValueError(f"embedding_size {d} must be divisible by heads {cfg.heads}")
        pieces = cfg.item_representation != "id"
        # row 0 = padding, item c -> c + 1 ("id"); the ID path creates its modules in the same
        # order as before pieces existed, so seeded weights are unchanged
        self.item_embedding = None if pieces else nn.Embedding(n_items + 1, d, padding_idx=0)
        self.item_table = PieceItemTable(table_size, d, n_id_items if cfg.sid_with_id else 0) if pieces else None
        self.position_embedding = nn.Embedding(cfg.max_length, d)
        self.dropout = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(
            d, cfg.heads, dim_feedforward=d, dropout=cfg.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.blocks, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(d)
        self.scale = d**0.5
        # gSASRec keeps the output embeddings apart: many sampled negatives per position push
        # their output vectors down, which must not drag the same items' input vectors along.
        # (with pieces: a second piece table of the same size)
        self.output_embedding = None if cfg.tie_embeddings or pieces else nn.Embedding(n_items, d)
        self.output_table = None
        if pieces and not cfg.tie_embeddings:
            self.output_table = PieceItemTable(table_size, d, n_id_items if cfg.sid_with_id else 0)
        if self.output_embedding is not None:
            nn.init.normal_(self.output_embedding.weight, std=d**-0.5)
        if self.item_embedding is not None:
            nn.init.normal_(self.item_embedding.weight, std=d**-0.5)
            with torch.no_grad():
                self.item_embedding.weight[0].zero_()
        # gBCE: one learned offset added to every training logit, starting where an untrained
        # model's loss is lowest (see gbce_calibration). Without it the early steps go to pushing
        # every score from ~0 down to about -7 through the weights, and training then sat at
        # popularity level (Beauty: validation NDCG@10 ~0.009 for 25 epochs; ML-100K: 0.013
        # after 15). A constant changes no ranking, so scoring leaves it out.
        self.logit_bias = None
        if cfg.loss == "gbce":
            beta, k = gbce_calibration(n_items, cfg.negatives, cfg.gbce_t)
            self.logit_bias = nn.Parameter(torch.tensor(math.log(beta / k)))

    def set_id_mask(self, trained: np.ndarray) -> None:
        """``sid_with_id``: only items with training events use their ID row."""
        for table in (self.item_table, self.output_table):
            if table is not None:
                table.set_id_mask(trained)

    def set_pieces(self, indptr: np.ndarray, indices: np.ndarray) -> None:
        """Every item's pieces (CSR, item code order), for the piece tables."""
        for table in (self.item_table, self.output_table):
            if table is not None:
                table.set_pieces(indptr, indices)

    def input_table(self) -> torch.Tensor:
        """(n_items + 1, d): the padding row (zeros), then every item's input vector. Composing
        pieces costs one EmbeddingBag pass over all items: do it once per batch."""
        if self.item_embedding is not None:
            return self.item_embedding.weight
        assert self.item_table is not None
        items = self.item_table()
        return torch.cat([items.new_zeros(1, items.shape[1]), items])

    def forward(self, tokens: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """tokens: (batch, length) item codes + 1, right-padded with 0 -> hidden (batch, length, d).
        ``table``: :meth:`input_table`, when the caller has it already."""
        table = self.input_table() if table is None else table
        length = tokens.shape[1]
        positions = torch.arange(length, device=tokens.device)
        x = F.embedding(tokens, table, padding_idx=0) * self.scale + self.position_embedding(positions)[None]
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device, dtype=x.dtype)
        hidden = self.encoder(self.dropout(x), mask=mask, is_causal=True)
        return self.final_norm(hidden)

    def item_weights(self, table: torch.Tensor | None = None) -> torch.Tensor:
        """Output embeddings of the real items (n_items, d); ``table``: :meth:`input_table`, when
        the caller has it already (tied embeddings reuse it)."""
        if self.output_embedding is not None:
            return self.output_embedding.weight
        if self.output_table is not None:
            return self.output_table()
        return (self.input_table() if table is None else table)[1:]


class SASRec(Recommender):
    """Self-attentive sequential recommender with a choice of losses."""

    Config = SASRecConfig
    name = "sasrec"
    sequential = True
    config: SASRecConfig

    net_: SASRecNet
    train_result_: TrainResult
    pieces_: ItemPieces | None  # the item -> pieces state (None for "id")

    # ------------------------------------------------------------------ training
    def _fit(self, dataset: Dataset, options: FitOptions) -> None:
        cfg = self.config
        n_items = dataset.n_items
        self.pieces_ = None
        if cfg.item_representation != "id":  # may fit an RQ-VAE (seeded by options too)
            self.pieces_ = ItemPieces.fit(dataset.catalog, cfg, options)
        seed_everything(options.seed)  # the initial weights are part of what the seed fixes
        self.net_ = self._make_net(n_items, n_items)
        sequences = dataset.sequences()
        holdout = holdout_last(sequences, cfg.validation_users, np.random.default_rng(options.seed))

        def train_on(net: nn.Module, train: list[np.ndarray]) -> tuple[Batches, int]:
            """Batches over ``train`` (each user's last max_length + 1 items); under
            ``sid_with_id`` only items with events there keep an ID row."""
            windows = [s[-(cfg.max_length + 1) :] for s in train if len(s) >= 2]
            if cfg.sid_with_id:
                net.set_id_mask(items_in(windows, n_items))  # type: ignore[operator]

            def batches(epoch_rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
                yield from _length_bucketed_batches(windows, cfg.batch_size, epoch_rng)

            return batches, -(-len(windows) // cfg.batch_size)

        batches, n_batches = train_on(self.net_, holdout.train)

        def loss(net: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            return sequence_loss(net, batch[0], batch[1], cfg, n_items)  # type: ignore[arg-type]

        validate = None
        if len(holdout.users):
            histories = [holdout.train[u] for u in holdout.users]
            validation = NextItemValidation(histories, holdout.targets, score_batch_size(n_items))

            def validate(net: nn.Module) -> torch.Tensor:
                device = next(net.parameters()).device
                table = net.input_table()  # type: ignore[operator]
                return validation.gains(lambda rows: self._scores_for(net, [histories[i] for i in rows], device, table))  # type: ignore[arg-type]

        self.train_result_ = fit_module(
            self.net_, batches, loss, cfg, options, validate=validate, steps_per_epoch=n_batches, desc="sasrec",
            refit=lambda net: train_on(net, sequences),
        )
        self.net_.to("cpu")

    def _make_net(self, n_items: int, n_id_items: int) -> SASRecNet:
        """A network for ``n_items`` items (``n_id_items`` of them with an ID row under
        ``sid_with_id``), with the pieces of :attr:`pieces_` set."""
        pieces = self.pieces_
        net = SASRecNet(n_items, self.config, pieces.tokenizer.table_size if pieces else 0, n_id_items)
        if pieces is not None:
            net.set_pieces(pieces.indptr, pieces.indices)
        return net

    # ------------------------------------------------------------------ scoring
    def _scores_for(
        self, net: SASRecNet, sequences: list[np.ndarray], device: torch.device, table: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Full-catalog scores (len(sequences), n_items) from the last real position; ``table``:
        ``net.input_table()``, when the caller scores many batches with the same weights."""
        tokens, lengths = _pad([s[-self.config.max_length :] for s in sequences], device)
        table = net.input_table() if table is None else table
        hidden = net(tokens, table)
        last = hidden[torch.arange(len(sequences), device=device), (lengths - 1).clamp(min=0)]
        return last @ net.item_weights(table).T

    def _score(self, batch: ScoringBatch) -> np.ndarray:
        assert batch.sequences is not None
        out = np.zeros((len(batch), len(self.items_)), dtype=np.float32)
        rows = [i for i, s in enumerate(batch.sequences) if len(s)]  # empty -> popularity fallback
        if rows:
            device = next(self.net_.parameters()).device
            with torch.inference_mode():
                scores = self._scores_for(self.net_, [batch.sequences[i] for i in rows], device)
            out[rows] = scores.float().cpu().numpy()
        return out

    def item_vectors(self) -> np.ndarray:
        """The output item embeddings (n_items x embedding_size)."""
        with torch.inference_mode():
            return self.net_.item_weights().detach().float().cpu().numpy()

    def to(self, device: str) -> SASRec:
        """Move the fitted network for inference (e.g. ``model.to("cuda")``)."""
        self.net_.to(resolve_device(device))
        return self

    # ------------------------------------------------------------------ new items
    def add_items(self, catalog: Any, encoder: TextEncoder | str | None = None) -> None:
        """Append the catalog rows (``item_id``, optional ``title``, text fields, ``text_vector``,
        ``semantic_id``) whose id is new; known ids are left as they are. New items have no
        events (popularity 0) and are recommendable at once, without retraining:

        * SID modes: from their semantic ID, which is the row's ``semantic_id`` when given, else
          the frozen RQ-VAE's code for its ``text_vector``, else for its text encoded by
          ``encoder`` (default: the config's ``encoder``; the same encoder as in fit, or the codes
          mean nothing). A model whose SIDs came from the catalog column has no RQ-VAE, so its
          new items need a ``semantic_id``.
        * ``"hash"``: the hashed row of their id (random: it says nothing about the item).
        * ``"id"``: a zero vector; they score 0 for everyone (nothing to go on until retraining).

        With ``sid_with_id`` new items have pieces only (no ID row)."""
        self._check_fitted()
        frame = self._new_catalog_rows(catalog)
        n_old, n_new = len(self.items_), len(frame)
        if not n_new:
            return
        if self.pieces_ is not None:  # first: a bad row raises before anything changes
            self.pieces_.add(frame, encoder if encoder is not None else self.config.encoder)
        device = next(self.net_.parameters()).device
        state = self.net_.state_dict()
        n_id_items = self._n_id_items(state)
        if self.pieces_ is None:  # new rows of zeros in the ID tables
            for name in ("item_embedding.weight", "output_embedding.weight"):
                if name in state:
                    state[name] = torch.cat([state[name], state[name].new_zeros(n_new, state[name].shape[1])])
        self.net_ = self._make_net(n_old + n_new, n_id_items).to(device)
        self.net_.load_state_dict(state)
        self.net_.eval()
        self._append_items(frame)

    @staticmethod
    def _n_id_items(state: dict[str, Any]) -> int:
        """Items with an ID row in a piece model's state (``sid_with_id``), else 0."""
        weight = state.get("item_table.id_embedding.weight")
        return 0 if weight is None else int(weight.shape[0])

    # ------------------------------------------------------------------ persistence
    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = state_to_arrays(self.net_)
        if self.pieces_ is not None:
            arrays.update(self.pieces_.to_arrays("pieces."))
        return arrays

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.pieces_ = ItemPieces.from_arrays(arrays, "pieces.") if self.config.item_representation != "id" else None
        state = arrays_to_state(arrays)
        self.net_ = self._make_net(len(self.items_), self._n_id_items(state))
        if self.net_.logit_bias is not None and "logit_bias" not in state:  # saved before gBCE had it
            state["logit_bias"] = self.net_.logit_bias.detach().clone()  # ranks nothing: any value serves
        self.net_.load_state_dict(state)
        self.net_.eval()


# ---------------------------------------------------------------------- batches and losses
def _pad(sequences: list[np.ndarray], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad item codes (+1) into a (batch, longest) tensor; returns (tokens, lengths)."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    tokens = np.zeros((len(sequences), max(int(lengths.max(initial=1)), 1)), dtype=np.int64)
    mask = np.arange(tokens.shape[1])[None, :] < lengths[:, None]
    tokens[mask] = np.concatenate(sequences) + 1 if len(sequences) else []
    return torch.from_numpy(tokens).to(device), torch.from_numpy(lengths).to(device)


def _length_bucketed_batches(
    windows: list[np.ndarray], batch_size: int, rng: np.random.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(inputs, targets) batches, right-padded to each batch's longest window.

    Users are shuffled, then sorted by length within chunks of 50 batches, so a batch holds
    windows of similar length (little padding) while batch order stays random."""
    order = rng.permutation(len(windows))
    lengths = np.array([len(windows[i]) for i in order])
    chunk = batch_size * 50
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(-lengths[start : start + chunk], kind="stable")]
        batch_ids = [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
        for b in rng.permutation(len(batch_ids)):
            seqs = [windows[i] for i in batch_ids[b]]
            tokens, _ = _pad(seqs, torch.device("cpu"))
            yield tokens[:, :-1], tokens[:, 1:]  # predict item t+1 from items <= t; 0 = no target


def sequence_loss(net: SASRecNet, inputs: torch.Tensor, targets: torch.Tensor, cfg: SASRecConfig, n_items: int) -> torch.Tensor:
    """The configured loss at every real position of a batch."""
    table = net.input_table()  # composed once per batch (pieces), shared by inputs and tied outputs
    hidden = net(inputs, table)
    valid = targets > 0
    h = hidden[valid]  # (positions, d)
    pos = targets[valid] - 1  # item codes
    items = net.item_weights(table)
    if cfg.loss == "ce":
        return F.cross_entropy(h @ items.T, pos)
    pos_logits = (h * items[pos]).sum(-1)
    if cfg.loss == "bce":
        neg = torch.randint(0, n_items, pos.shape, device=h.device)
        neg_logits = (h * items[neg]).sum(-1)
        return F.softplus(-pos_logits).mean() + F.softplus(neg_logits).mean()
    k = min(cfg.negatives, max(n_items - 1, 1))
    if cfg.loss == "sampled-softmax":
        neg = torch.randint(0, n_items, (k,), device=h.device)  # shared by the whole batch
        neg_logits = (h @ items[neg].T).masked_fill(neg[None, :] == pos[:, None], float("-inf"))
        logits = torch.cat([pos_logits[:, None], neg_logits], dim=1)
        return F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long, device=h.device))
    # gBCE samples k negatives per position, as gSASRec does: shared negatives concentrate
    # the push-down on a few items a step and collapse the model towards popularity.
    neg = torch.randint(0, n_items, (len(pos), k), device=h.device)
    if n_items <= 8 * k:  # small catalog: one dense matmul beats gathering (positions, k, d) vectors
        neg_logits = (h @ items.T).gather(1, neg)
    else:
        neg_logits = torch.einsum("pd,pkd->pk", h, items[neg])
    if net.logit_bias is not None:
        pos_logits, neg_logits = pos_logits + net.logit_bias, neg_logits + net.logit_bias
    neg_logits = neg_logits.masked_fill(neg == pos[:, None], -1e4)  # an accidental hit is no negative
    # -β·log σ(s⁺) - Σ log(1 - σ(s⁻)) = β·softplus(-s⁺) + Σ softplus(s⁻), averaged over the k + 1
    # terms like gSASRec's BCE over [positive, negatives]
    beta, _ = gbce_calibration(n_items, k, cfg.gbce_t)
    return ((beta * F.softplus(-pos_logits) + F.softplus(neg_logits).sum(-1)) / (k + 1)).mean()


def gbce_calibration(n_items: int, negatives: int, t: float) -> tuple[float, int]:
    """gSASRec's β for ``negatives`` uniform negatives out of ``n_items`` and calibration ``t``,
    and the number of negatives actually drawn (at most n_items - 1).

    α = k / (n_items - 1) is the sampling rate and β = α(t(1 - 1/α) + 1/α): t = 0 gives β = 1
    (plain BCE over k negatives), t = 1 gives β = α (fully calibrated). An untrained model
    scoring every item alike has its lowest loss β·softplus(-s) + k·softplus(s) at
    s = log(β / k), where SASRec's ``logit_bias`` starts."""
    k = min(negatives, max(n_items - 1, 1))
    alpha = k / max(n_items - 1, 1)
    return alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha), k
