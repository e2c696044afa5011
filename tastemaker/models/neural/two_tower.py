"""Two-tower retrieval: a user tower over the recent history (+ user features) and an item
tower over the item ID + content, both L2-normalised and scored by a dot product.

* Covington, Adams & Sargin 2016, "Deep Neural Networks for YouTube Recommendations": the
  user as an encoding of history and features, trained as extreme multiclass classification
  of the next item, served by nearest-neighbour search.
* Yi et al. 2019, "Sampling-Bias-Corrected Neural Modeling for Large Corpus Item
  Recommendations": normalised towers, a temperature, in-batch negatives and the **logQ
  correction** ``logit(u, j) - log Q(j)``, Q(j) being the chance that item j is a candidate.
  Our candidates are a batch's *distinct* targets, so Q(j) = 1 - (1 - q_j)^P for P target
  draws, q_j = j's share of the training targets (≈ P·q_j: Yi et al.'s log q_j plus a
  constant, except for the most popular items; TensorFlow's sampled softmax does the same).
* ID dropout (as in DropoutNet, Volkovs et al. 2017): a share ``id_dropout`` of a batch's items
  lose their ID embedding, so the content path learns alone too (user feature values are
  dropped likewise, which trains the "unknown" slot). Items without training events, and
  those added by :meth:`TwoTower.add_items`, are encoded from content alone: categories (an
  ``EmbeddingBag``) and the catalog's optional ``text_vector`` column (equal-length vectors).
* Item representation (``item_representation``, Singh et al. 2023): ``"hash"``, ``"sid-ngram"``
  or ``"sid-spm"`` replace the ID embedding by a sum of piece rows (hashed ids or semantic-ID
  pieces, :mod:`~tastemaker.models.neural.item_table`); ``sid_with_id`` keeps the ID embedding
  too. Pieces need no events, so added items get them (from their semantic ID) as well.

Training: each position of each training sequence is an example (its prefix predicts the
next item); with right-padding and a causal mask one pass over a window of ``max_length + 1``
items gives all its prefixes (longer sequences are cut into windows from the end).
``shuffle_history`` puts a share of the windows in random order, so the history also counts
as a set. Validation: ``holdout_last``, full-catalog NDCG@10, early stopping (``patience``).

Serving: :meth:`TwoTower.item_vectors` (cached after fit/load) can feed an ANN index; a query's
vector comes from its time-ordered history, so any history folds in without retraining; scores
are ``user_vectors @ item_vectors.T``, one bounded query batch at a time.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from tastemaker.data.dataset import Dataset
from tastemaker.data.vocab import Vocabulary
from tastemaker.models.base import ScoringBatch, VectorRecommender, score_batch_size
from tastemaker.models.neural.item_table import ItemPieces, ItemRepresentationSettings, PieceItemTable
from tastemaker.training import Batches, NextItemValidation, TrainingConfig, TrainResult, arrays_to_state, fit_module
from tastemaker.training import holdout_last, items_in, resolve_device, seed_everything, state_to_arrays
from tastemaker.types import FitOptions

import torch  # noqa: E402  (after tastemaker.training, which names the missing extra)
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

if TYPE_CHECKING:
    from tastemaker.content.encoders import TextEncoder

ITEM_CHUNK = 65536  # items encoded at once outside training


class TwoTowerConfig(TrainingConfig, ItemRepresentationSettings):
    """Architecture and loss; training settings come from :class:`~tastemaker.training.TrainingConfig`, the item
    representation from :class:`~tastemaker.models.neural.item_table.ItemRepresentationSettings`.
    ``batch_size`` counts windows (each gives up to ``max_length`` examples)."""

    embedding_size: int = Field(64, ge=1)
    max_length: int = Field(50, ge=1)
    user_encoder: Literal["attention", "mean"] = "attention"
    heads: int = Field(1, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    temperature: float = Field(0.05, gt=0)
    id_dropout: float = Field(0.1, ge=0, le=1)
    logq_correction: bool = True
    shuffle_history: float = Field(0.0, ge=0, le=1)  # share of training windows put in random order
    user_features: bool = True  # embed the categorical columns of dataset.user_features
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(128, ge=1)
    learning_rate: float = Field(3e-3, gt=0)

    @model_validator(mode="after")
    def _heads_divide(self) -> TwoTowerConfig:
        if self.embedding_size % self.heads:
            raise ValueError(f"embedding_size {self.embedding_size} must be divisible by heads {self.heads}")
        return self


def sampled_softmax_loss(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    positives: torch.Tensor,
    candidate_items: torch.Tensor | None,
    log_q: torch.Tensor | None,
    temperature: float,
) -> torch.Tensor:
    """In-batch sampled softmax with the logQ correction (Yi et al. 2019, eqs. 3-5).

    ``queries`` (P, d) and ``candidates`` (C, d) are vectors, ``positives`` (P,) each query's
    positive column, ``candidate_items`` (C,) the item in each column and ``log_q`` (C,) the log
    sampling probability of each column (None: no correction). Logits are
    ``q·c / temperature - log_q``; a column that holds a query's positive item but is not its
    positive column (an accidental hit) is masked (``candidate_items`` None: the candidates are
    distinct items, so there are none)."""
    logits = queries @ candidates.T / temperature
    if log_q is not None:
        logits = logits - log_q[None, :]
    if candidate_items is not None:
        hits = candidate_items[None, :] == candidate_items[positives][:, None]
        hits[torch.arange(len(positives), device=hits.device), positives] = False
        logits = logits.masked_fill(hits, float("-inf"))
    return F.cross_entropy(logits, positives)


class TwoTowerNet(nn.Module):
    """Both towers. Item content and user feature codes are non-persistent buffers: they move
    with the module, and the artifact stores them as plain arrays."""

    def __init__(
        self, n_id_items: int, n_categories: int, text_size: int, feature_sizes: list[int], cfg: TwoTowerConfig, table_size: int = 0
    ) -> None:
        super().__init__()
        d = cfg.embedding_size
        self.id_dropout = cfg.id_dropout
        self.uses_id = cfg.item_representation == "id" or cfg.sid_with_id
        self.id_embedding = nn.Embedding(max(n_id_items, 1), d)
        self.category_bag = nn.EmbeddingBag(max(n_categories, 1), d, mode="mean")
        self.text_projection = nn.Linear(text_size, d) if text_size else None
        self.item_mlp = nn.Sequential(nn.Linear((3 if text_size else 2) * d, d), nn.GELU(), nn.Linear(d, d))
        self.features = nn.ModuleList(nn.Embedding(size + 1, d, padding_idx=0) for size in feature_sizes)
        self.attention = cfg.user_encoder == "attention"
        self.position_embedding = nn.Embedding(cfg.max_length, d)
        self.dropout = nn.Dropout(cfg.dropout)
        self.encoder = nn.TransformerEncoderLayer(d, cfg.heads, d, cfg.dropout, batch_first=True, norm_first=True)
        self.final_norm = nn.LayerNorm(d)
        self.user_mlp = nn.Sequential(nn.Linear(d * (2 if feature_sizes else 1), d), nn.GELU(), nn.Linear(d, d))
        for table in (self.id_embedding.weight, self.category_bag.weight, self.position_embedding.weight):
            nn.init.normal_(table, std=d**-0.5)
        # created last, so that the ID-only tower's seeded weights are unchanged
        self.piece_table = PieceItemTable(table_size, d) if cfg.item_representation != "id" else None
        self.set_content(
            {"category_indptr": np.zeros(1), "category_indices": np.zeros(0), "text": np.zeros((0, text_size)), "has_id": np.zeros(0)},
            np.zeros((0, len(feature_sizes))),
        )

    def set_content(self, content: dict[str, np.ndarray], user_codes: np.ndarray) -> None:
        device = self.id_embedding.weight.device
        for name, dtype in (("category_indptr", torch.long), ("category_indices", torch.long), ("text", torch.float32), ("has_id", torch.bool)):
            self.register_buffer(name, torch.as_tensor(content[name], dtype=dtype, device=device), persistent=False)
        self.register_buffer("user_codes", torch.as_tensor(user_codes, dtype=torch.long, device=device), persistent=False)

    # ------------------------------------------------------------------ item tower
    def encode_items(self, items: torch.Tensor) -> torch.Tensor:
        """Item codes (N,) -> L2-normalised vectors (N, d); no ID part for items without one.
        The first part is the ID row, the sum of the item's piece rows, or both."""
        keep = self.has_id[items]
        if self.training and self.id_dropout > 0:
            keep = keep & (torch.rand(len(items), device=items.device) >= self.id_dropout)
        rows = items.clamp(max=self.id_embedding.num_embeddings - 1)
        identity = self.id_embedding(rows) * keep[:, None].to(self.id_embedding.weight.dtype) if self.uses_id else None
        if self.piece_table is not None:
            pieces = self.piece_table(items)
            identity = pieces if identity is None else identity + pieces
        assert identity is not None
        parts = [identity]
        starts = self.category_indptr[items]
        counts = self.category_indptr[items + 1] - starts
        offsets = torch.cumsum(counts, 0) - counts
        within = torch.arange(int(counts.sum()), device=items.device) - torch.repeat_interleave(offsets, counts)
        flat = self.category_indices[torch.repeat_interleave(starts, counts) + within]
        parts.append(self.category_bag(flat, offsets))  # no categories: zeros
        if self.text_projection is not None:
            parts.append(self.text_projection(self.text[items]))
        inputs = torch.cat(parts, dim=1)
        known = inputs.ne(0).any(dim=1, keepdim=True)  # an item with nothing to go on: a zero vector
        return F.normalize(sum(parts) + self.item_mlp(inputs), dim=-1) * known  # type: ignore[arg-type]

    def all_item_vectors(self, n_items: int) -> torch.Tensor:
        device = self.id_embedding.weight.device
        chunks = [torch.arange(s, min(s + ITEM_CHUNK, n_items), device=device) for s in range(0, n_items, ITEM_CHUNK)]
        return torch.cat([self.encode_items(c) for c in chunks]) if chunks else torch.zeros(0, self.id_embedding.embedding_dim, device=device)

    # ------------------------------------------------------------------ user tower
    def encode_users(self, history: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """History item vectors (B, L, d), right-padded with zeros, and user codes (B,) (-1 =
        unknown) -> the normalised user vector after every prefix (B, L, d)."""
        length = history.shape[1]
        if self.attention:
            x = self.dropout(history + self.position_embedding(torch.arange(length, device=history.device))[None])
            mask = nn.Transformer.generate_square_subsequent_mask(length, device=x.device, dtype=x.dtype)
            x = self.final_norm(self.encoder(x, src_mask=mask, is_causal=True))
        else:
            counts = torch.arange(1, length + 1, device=history.device, dtype=history.dtype)
            x = history.cumsum(dim=1) / counts[None, :, None]
        h = x
        if len(self.features):
            codes = self.user_codes[users.clamp(min=0)] * (users >= 0)[:, None]
            if self.training and self.id_dropout > 0:
                codes = codes * (torch.rand(codes.shape, device=codes.device) >= self.id_dropout)
            feats = torch.stack([emb(codes[:, k]) for k, emb in enumerate(self.features)]).sum(dim=0)
            h = torch.cat([x, feats[:, None, :].expand(-1, length, -1)], dim=-1)
        return F.normalize(x + self.user_mlp(h), dim=-1)

    def user_vectors(self, table: torch.Tensor, sequences: list[np.ndarray], users: torch.Tensor, max_length: int) -> torch.Tensor:
        """One vector per sequence (its last ``max_length`` items), from item vectors ``table``."""
        codes, lengths = _pad([s[-max_length:] for s in sequences], table.device)
        history = table[codes.clamp(min=0)] * (codes >= 0)[..., None].to(table.dtype)
        states = self.encode_users(history, users)
        return states[torch.arange(len(sequences), device=table.device), (lengths - 1).clamp(min=0)]


class TwoTower(VectorRecommender):
    """Two-tower retrieval with content features, logQ-corrected in-batch softmax and ID
    dropout for content cold start (see the module docstring)."""

    Config = TwoTowerConfig
    name = "two-tower"
    sequential = True
    config: TwoTowerConfig

    net_: TwoTowerNet
    train_result_: TrainResult
    category_vocab_: Vocabulary
    content_: dict[str, np.ndarray]  # category_indptr/indices (CSR), text (n x t), has_id
    user_feature_codes_: np.ndarray  # (n_users, n_features), 0 = unknown value
    item_vectors_: np.ndarray
    item_table_: torch.Tensor  # the same vectors, on the user tower's device
    pieces_: ItemPieces | None  # the item -> pieces state (None for "id")

    # ------------------------------------------------------------------ training
    def _fit(self, dataset: Dataset, options: FitOptions) -> None:
        cfg = self.config
        n_items = dataset.n_items
        sequences = dataset.sequences()
        holdout = holdout_last(sequences, cfg.validation_users, np.random.default_rng(options.seed))
        self.category_vocab_ = Vocabulary.from_values(itertools.chain.from_iterable(dataset.catalog["categories"]), name="category")
        self.content_ = _item_content(dataset.catalog, self.category_vocab_, None)
        self.user_feature_codes_, sizes = _user_features(dataset, cfg.user_features)
        self.pieces_ = ItemPieces.fit(dataset.catalog, cfg, options) if cfg.item_representation != "id" else None

        def train_on(net: TwoTowerNet | None, train: list[np.ndarray]) -> tuple[Batches, int]:
            """Batches over ``train``; the items with events there get an ID part (and the logQ
            frequencies come from it)."""
            windows, window_users = _windows(train, cfg.max_length)
            targets = windows[:, 1:][windows[:, 1:] >= 0]
            frequency = np.maximum(np.bincount(targets, minlength=n_items), 1) / max(len(targets), 1)
            self.content_["has_id"] = items_in(windows, n_items)
            if net is not None:
                net.set_content(self.content_, self.user_feature_codes_)

            def batches(rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
                for rows in _bucketed(windows, cfg.batch_size, rng):
                    ordered = _shuffle_some(windows[rows], cfg.shuffle_history, rng)
                    yield _batch(ordered, window_users[rows], frequency if cfg.logq_correction else None)

            return batches, -(-len(windows) // cfg.batch_size)

        batches, steps = train_on(None, holdout.train)
        seed_everything(options.seed)  # the initial weights too
        self.net_ = self._make_net(n_items if self.net_uses_id else 0, sizes)

        def loss(net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            vectors = net.encode_items(batch["items"])  # type: ignore[operator]
            inputs = batch["inputs"]
            history = vectors[inputs.clamp(min=0)] * (inputs >= 0)[..., None].to(vectors.dtype)
            states = net.encode_users(history, batch["users"])  # type: ignore[operator]
            queries = states[batch["target_index"] >= 0]
            candidates = vectors[batch["candidates"]]
            return sampled_softmax_loss(queries, candidates, batch["positives"], None, batch.get("log_q"), cfg.temperature)

        validate = None
        if len(holdout.users):
            histories = [holdout.train[u] for u in holdout.users]
            users = holdout.users
            validation = NextItemValidation(histories, holdout.targets, score_batch_size(n_items))

            def validate(net: nn.Module) -> torch.Tensor:
                table = net.all_item_vectors(n_items)  # type: ignore[operator]

                def score(rows: np.ndarray) -> torch.Tensor:
                    codes = torch.as_tensor(users[rows], device=table.device)
                    return net.user_vectors(table, [histories[i] for i in rows], codes, cfg.max_length) @ table.T  # type: ignore[operator]

                return validation.gains(score)

        self.train_result_ = fit_module(
            self.net_, batches, loss, cfg, options, validate=validate, steps_per_epoch=steps, desc="two-tower",
            refit=lambda net: train_on(net, sequences),  # type: ignore[arg-type]
        )
        self.net_.to("cpu")
        self._refresh_item_vectors()

    @property
    def net_uses_id(self) -> bool:
        return self.config.item_representation == "id" or self.config.sid_with_id

    def _make_net(self, n_id_items: int, feature_sizes: list[int]) -> TwoTowerNet:
        """The towers, with content, user features and (piece modes) item pieces set."""
        pieces = self.pieces_
        net = TwoTowerNet(
            n_id_items, len(self.category_vocab_), self.content_["text"].shape[1], feature_sizes, self.config,
            pieces.tokenizer.table_size if pieces is not None else 0,
        )
        net.set_content(self.content_, self.user_feature_codes_)
        self._set_pieces(net)
        return net

    def _set_pieces(self, net: TwoTowerNet) -> None:
        if self.pieces_ is not None and net.piece_table is not None:
            net.piece_table.set_pieces(self.pieces_.indptr, self.pieces_.indices)

    # ------------------------------------------------------------------ vectors and scoring
    def _refresh_item_vectors(self) -> None:
        self.net_.eval()
        with torch.inference_mode():
            self.item_table_ = self.net_.all_item_vectors(len(self.items_))
        self.item_vectors_ = self.item_table_.float().cpu().numpy()

    def item_vectors(self) -> np.ndarray:
        """(n_items, embedding_size) L2-normalised float32 item vectors, e.g. for an ANN index
        (a read-only view of the cache)."""
        self._check_fitted()
        view = self.item_vectors_.view()
        view.flags.writeable = False
        return view

    def user_vectors(self, batch: ScoringBatch) -> np.ndarray:
        """(len(batch), embedding_size) L2-normalised query vectors; zeros for an empty history."""
        self._check_fitted()
        sequences = batch.sequences
        if sequences is None:  # a batch built without order: take the history rows as they are
            h = batch.history
            sequences = [h.indices[h.indptr[i] : h.indptr[i + 1]] for i in range(len(batch))]
        out = np.zeros((len(batch), self.item_vectors_.shape[1]), dtype=np.float32)
        rows = [i for i, s in enumerate(sequences) if len(s)]
        if rows:
            device = self.item_table_.device
            users = torch.as_tensor(batch.users[rows], dtype=torch.long, device=device)
            with torch.inference_mode():
                vectors = self.net_.user_vectors(self.item_table_, [sequences[i] for i in rows], users, self.config.max_length)
            out[rows] = vectors.float().cpu().numpy()
        return out

    def to(self, device: str) -> TwoTower:
        """Run the user tower on ``device`` (e.g. ``"cuda"``); scores still come back as numpy."""
        self._check_fitted()
        self.net_.to(resolve_device(device))
        self.item_table_ = self.item_table_.to(self.net_.id_embedding.weight.device)
        return self

    # ------------------------------------------------------------------ new items
    def add_items(self, catalog: Any, encoder: TextEncoder | str | None = None) -> None:
        """Append the catalog rows (``item_id``, optional ``title``, ``categories``,
        ``text_vector``, ``semantic_id``) whose id is new, encoded from content alone (unknown
        categories are ignored); known ids are left as they are. New items have no events and
        popularity 0. Piece modes: new items get pieces too, as in
        :meth:`ItemPieces.add <tastemaker.models.neural.item_table.ItemPieces.add>` (``encoder``,
        default the config's, encodes the text of rows without a ``semantic_id``)."""
        self._check_fitted()
        frame = self._new_catalog_rows(catalog)
        n_old, n_new = len(self.items_), len(frame)
        if not n_new:
            return
        if self.pieces_ is not None:  # first: a bad row raises before anything changes
            self.pieces_.add(frame, encoder if encoder is not None else self.config.encoder)
            self._set_pieces(self.net_)
        new = _item_content(frame, self.category_vocab_, self.content_["text"].shape[1])
        new["category_indptr"] = self.content_["category_indptr"][-1] + new["category_indptr"][1:]
        new["has_id"] = np.zeros(n_new, dtype=bool)
        self.content_ = {k: np.concatenate([v, new[k]]) for k, v in self.content_.items()}
        self._append_items(frame)
        self.net_.set_content(self.content_, self.user_feature_codes_)
        self.net_.eval()
        device = self.item_table_.device
        with torch.inference_mode():
            chunks = [torch.arange(s, min(s + ITEM_CHUNK, n_old + n_new), device=device) for s in range(n_old, n_old + n_new, ITEM_CHUNK)]
            added = torch.cat([self.net_.encode_items(c) for c in chunks])
        self.item_table_ = torch.cat([self.item_table_, added])
        self.item_vectors_ = np.concatenate([self.item_vectors_, added.float().cpu().numpy()])

    # ------------------------------------------------------------------ persistence
    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            **(self.pieces_.to_arrays("pieces.") if self.pieces_ is not None else {}),
            **state_to_arrays(self.net_),
            **{f"content.{k}": v for k, v in self.content_.items()},
            "category_ids": self.category_vocab_.ids.astype(str),
            "user_feature_codes": self.user_feature_codes_,
            "user_feature_sizes": np.array([emb.num_embeddings - 1 for emb in self.net_.features], dtype=np.int64),
        }

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.content_ = {k.removeprefix("content."): v for k, v in arrays.items() if k.startswith("content.")}
        self.category_vocab_ = Vocabulary(arrays["category_ids"].tolist(), name="category")
        self.user_feature_codes_ = arrays["user_feature_codes"]
        self.pieces_ = ItemPieces.from_arrays(arrays, "pieces.") if self.config.item_representation != "id" else None
        self.net_ = self._make_net(arrays["weights.id_embedding.weight"].shape[0], arrays["user_feature_sizes"].tolist())
        self.net_.load_state_dict(arrays_to_state(arrays))
        self._refresh_item_vectors()


# ---------------------------------------------------------------------- features and batches
def _item_content(catalog: pd.DataFrame, categories: Vocabulary, text_size: int | None) -> dict[str, np.ndarray]:
    """Category CSR (codes of known categories) and the text matrix, zeros where a row has no
    vector (``text_size`` None: the width of the ``text_vector`` column, 0 without one)."""
    column = catalog["categories"] if "categories" in catalog.columns else [()] * len(catalog)
    lists = [c if isinstance(c, list | tuple | np.ndarray) else () for c in column]
    lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    codes = categories.encode(list(itertools.chain.from_iterable(lists)), missing="mark").astype(np.int64)
    rows = np.repeat(np.arange(len(lists)), lengths)[codes >= 0]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(lists)))]).astype(np.int64)
    vectors = list(catalog["text_vector"]) if "text_vector" in catalog.columns else []
    present = [v is not None and np.ndim(v) == 1 and len(v) > 0 for v in vectors]
    if text_size is None:
        text_size = len(vectors[present.index(True)]) if any(present) else 0
    text = np.zeros((len(catalog), text_size), dtype=np.float32)
    for row in np.flatnonzero(present) if text_size else []:
        text[row] = np.asarray(vectors[row], dtype=np.float32)
    return {"category_indptr": indptr, "category_indices": codes[codes >= 0], "text": text}


def _user_features(dataset: Dataset, enabled: bool) -> tuple[np.ndarray, list[int]]:
    """Codes (n_users, n_columns) of the categorical user feature columns (0 = unknown) and
    each column's number of values. A column is categorical when it is not float and has at
    most half as many distinct values as rows (so ids and zip codes are left out)."""
    frame = dataset.user_features
    columns, sizes = [], []
    for name in frame.columns if enabled and frame is not None else []:
        col = frame[name]
        if name in ("user", "user_id") or pd.api.types.is_float_dtype(col):
            continue
        values = col.astype(str).where(col.notna())
        uniques = np.sort(values.dropna().unique().astype(str))
        if 2 <= len(uniques) <= max(2, len(frame) // 2):
            codes = np.zeros(dataset.n_users, dtype=np.int64)
            found = np.searchsorted(uniques, values.fillna("").to_numpy(dtype=str)) + 1
            codes[frame["user"].to_numpy()] = np.where(values.notna(), found, 0)
            columns.append(codes)
            sizes.append(len(uniques))
    return (np.stack(columns, axis=1) if columns else np.zeros((dataset.n_users, 0), dtype=np.int64)), sizes


def _windows(sequences: list[np.ndarray], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Each sequence of >= 2 items cut from its end into windows of ``max_length + 1`` items
    overlapping by one, right-padded with -1; returns (windows, the user of each window)."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    flat = np.concatenate([*sequences, [-1]]).astype(np.int64)
    chunks = np.where(lengths >= 2, -(-(lengths - 1) // max_length), 0)
    user = np.repeat(np.arange(len(sequences)), chunks)
    k = np.arange(chunks.sum()) - np.repeat(np.cumsum(chunks) - chunks, chunks)  # 0 = the last window
    end = np.cumsum(lengths)[user] - k * max_length
    begin = np.maximum((np.cumsum(lengths) - lengths)[user], end - max_length - 1)
    index = begin[:, None] + np.arange(max_length + 1)[None, :]
    return np.where(index < end[:, None], flat[np.minimum(index, len(flat) - 1)], -1), user


def _bucketed(windows: np.ndarray, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Row indices of shuffled batches; windows are sorted by length within chunks of 50
    batches, so a batch is padded little while the batch order stays random."""
    order = rng.permutation(len(windows))
    lengths = (windows[order] >= 0).sum(axis=1)
    chunk, batches = batch_size * 50, []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk][np.argsort(-lengths[start : start + chunk], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    for b in rng.permutation(len(batches)):
        yield batches[b]


def _shuffle_some(rows: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Put a random ``share`` of the windows (right-padded with -1) in random order."""
    if share <= 0:
        return rows
    keys = rng.random(rows.shape) + (rng.random((len(rows), 1)) >= share) * np.arange(rows.shape[1])
    keys[rows < 0] = np.inf  # padding stays last; the other rows keep their order (keys ascend)
    return np.take_along_axis(rows, np.argsort(keys, axis=1, kind="stable"), axis=1)


def _batch(rows: np.ndarray, users: np.ndarray, frequency: np.ndarray | None) -> dict[str, torch.Tensor]:
    """One batch of windows as tensors: the distinct items, each position's input (an index
    into them, -1 = padding), the target positions, the candidates (the distinct targets),
    each target's candidate column and, with ``frequency``, the candidates' log Q."""
    rows = rows[:, : max(int((rows >= 0).sum(axis=1).max()), 2)]
    items, inverse = np.unique(rows, return_inverse=True)
    pad = int(items[0] < 0)
    index, items = inverse.reshape(rows.shape) - pad, items[pad:]  # -1 = padding
    target_index = index[:, 1:]
    candidates, positives = np.unique(target_index[target_index >= 0], return_inverse=True)
    out = {
        "items": torch.from_numpy(items),
        "inputs": torch.from_numpy(index[:, :-1]),
        "target_index": torch.from_numpy(target_index),
        "users": torch.from_numpy(users.astype(np.int64)),
        "candidates": torch.from_numpy(candidates),
        "positives": torch.from_numpy(positives.astype(np.int64)),
    }
    if frequency is not None:  # Q(j) = 1 - (1 - q_j)^P for P target draws
        q = frequency[items[candidates]]
        out["log_q"] = torch.from_numpy(np.log(-np.expm1(len(positives) * np.log1p(-q))).astype(np.float32))
    return out


def _pad(sequences: list[np.ndarray], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad item codes into a (batch, longest) tensor with -1; returns (codes, lengths)."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    codes = np.full((len(sequences), max(int(lengths.max(initial=1)), 1)), -1, dtype=np.int64)
    codes[np.arange(codes.shape[1])[None, :] < lengths[:, None]] = np.concatenate([*sequences, []])
    return torch.from_numpy(codes).to(device), torch.from_numpy(lengths).to(device)
