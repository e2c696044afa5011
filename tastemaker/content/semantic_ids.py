"""Semantic IDs: an RQ-VAE turns frozen content embeddings into short tuples of codes.

Rajput et al. 2023 ("Recommender Systems with Generative Retrieval", TIGER) and Singh et al.
2023 ("Better Generalization with Semantic IDs"): similar items share code prefixes, so a
model that embeds the codes instead of random item ids generalises to new and rare items.

The model (:class:`RQVAE`), with ``L = levels`` and ``K = codebook_size``::

    z = E(x)                          encoder MLP, input -> hidden_sizes -> latent_size
    r_0 = z;  for l = 1..L:           residual quantisation
        c_l = argmin_k ||r_{l-1} - e^l_k||,   r_l = r_{l-1} - e^l_{c_l}
    z_q = sum_l e^l_{c_l}             the quantised latent
    x_hat = D(z + sg[z_q - z])        decoder MLP; straight-through gradient to E
    loss = ||x - x_hat||^2 + sum_l ( ||sg[r_{l-1}] - e^l_{c_l}||^2 + beta ||r_{l-1} - sg[e^l_{c_l}]||^2 )

(``sg`` = stop-gradient, beta = 0.25 as in TIGER.) Training runs through the library's one loop,
:func:`~tastemaker.training.fit_module`, with these additions:

* **k-means initialisation**: before the first step, each level's codebook is set by k-means
  on the residuals of a first random batch of ``kmeans_sample`` items;
* **dead-code reset**: at the end of every epoch but the last, each code no batch used in that
  epoch is re-initialised to the current residual of a random item, so codebooks do not
  collapse onto a few codes (they do in the first epochs, as the encoder's outputs move past the
  k-means centres: without resets, level-1 utilisation ends near 45% on MovieLens titles; with
  them, 100% after ~10 epochs);
* **collision breaking**: items whose L codes are equal get an extra last entry 0, 1, 2, ...
  (in item order), so the final semantic ID has ``L + 1`` entries and is unique.

After :meth:`SemanticIDs.fit`, ``metrics_`` reports per-level ``codebook_utilisation`` (share of
the K codes used), ``collision_rate`` (share of items whose L-code prefix is shared with another
item, before the extra entry) and ``collision_rate_final`` (after it: 0), and the reconstruction
error. :meth:`SemanticIDs.assign` gives new items semantic IDs with the frozen model (the extra
entry is the next free index of the prefix); :meth:`SemanticIDs.extend` also adds them to the
table. State saves as ``config.json`` + ``arrays.npz`` (no pickle).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from tastemaker.errors import ArtifactError, NotFittedError
from tastemaker.training import (
    TrainingConfig,
    TrainResult,
    arrays_to_state,
    fit_module,
    seed_everything,
    state_to_arrays,
    torch_threads,
)
from tastemaker.types import FitOptions

import torch  # noqa: E402, I001  (after tastemaker.training, which names the missing extra)
from torch import nn  # noqa: E402

if TYPE_CHECKING:
    from tastemaker.content.describe import Describer
    from tastemaker.content.encoders import TextEncoder
    from tastemaker.data.dataset import Dataset

_FORMAT = "tastemaker-semantic-ids"
_INFER_BATCH = 8192


class SemanticIDConfig(TrainingConfig):
    """RQ-VAE settings (plus the shared training settings of :class:`~tastemaker.training.TrainingConfig`)."""

    levels: int = Field(3, ge=1)
    codebook_size: int = Field(256, ge=2)
    latent_size: int = Field(32, ge=1)
    hidden_sizes: tuple[int, ...] = (256, 128)
    beta: float = Field(0.25, ge=0)  # commitment weight
    kmeans_sample: int = Field(4096, ge=1)  # items whose residuals initialise (and reset) codes
    kmeans_iterations: int = Field(25, ge=1)
    reset_dead_codes: bool = True
    # Centre the encoder's inputs and scale them to unit variance (the loss stays in input space).
    # Measured (MiniLM, 60 epochs): Scientific 3 x 256 collisions 7% instead of 18%, ML 3 x 64 the
    # same, reconstruction a little worse; on small or short fits less stable. Off: as in TIGER.
    standardise: bool = False
    # Shared settings with RQ-VAE defaults: no ranking validation, so train all epochs.
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(512, ge=1)
    validation_users: int = Field(0, ge=0)
    patience: int = Field(0, ge=0)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _nearest(points: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Index of the nearest center (squared Euclidean) for each point."""
    distances = (points * points).sum(1, keepdim=True) - 2.0 * points @ centers.T + (centers * centers).sum(1)
    return distances.argmin(1)


def kmeans(points: torch.Tensor, k: int, iterations: int, generator: torch.Generator) -> torch.Tensor:
    """Lloyd's k-means from k random points; an empty cluster restarts at a random point."""
    n = len(points)
    if n >= k:
        centers = points[torch.randperm(n, generator=generator)[:k]].clone()
    else:  # fewer points than codes: jittered copies
        picks = torch.randint(n, (k,), generator=generator)
        noise = torch.randn(k, points.shape[1], generator=generator) * (1e-3 * float(points.std()) + 1e-6)
        centers = points[picks] + noise.to(points)
    for _ in range(iterations):
        assign = _nearest(points, centers)
        sums = torch.zeros_like(centers).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=k).to(points.dtype)
        filled = counts > 0
        centers = torch.where(filled[:, None], sums / counts.clamp(min=1)[:, None], centers)
        empty = torch.nonzero(~filled).flatten()
        if len(empty):
            centers[empty] = points[torch.randint(n, (len(empty),), generator=generator)]
    return centers


class RQVAE(nn.Module):
    """Encoder MLP -> residual quantiser (L codebooks of K codes) -> decoder MLP."""

    encoder: nn.Sequential
    decoder: nn.Sequential
    codebooks: nn.Parameter  # (levels, codebook_size, latent_size): e^l_k
    usage: torch.Tensor  # (levels, codebook_size)
    input_mean: torch.Tensor  # (input_size,): subtracted from inputs (0 without standardise)
    input_scale: torch.Tensor  # (): inputs are divided by it (1 without standardise)

    def __init__(self, input_size: int, config: SemanticIDConfig) -> None:
        super().__init__()
        sizes = [input_size, *config.hidden_sizes, config.latent_size]
        self.encoder = _mlp(sizes)
        self.decoder = _mlp(sizes[::-1])
        self.codebooks = nn.Parameter(torch.zeros(config.levels, config.codebook_size, config.latent_size))
        self.beta = config.beta
        # codes chosen in training since the last reset: the dead-code statistics
        self.register_buffer("usage", torch.zeros(config.levels, config.codebook_size), persistent=False)
        self.register_buffer("input_mean", torch.zeros(input_size))
        self.register_buffer("input_scale", torch.ones(()))

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs in the model's space: centred and scaled as fitted (identity without standardise)."""
        return (x - self.input_mean) / self.input_scale

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The latent z = E(x) of raw inputs."""
        encoded: torch.Tensor = self.encoder(self.standardise(x))
        return encoded

    def quantise(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Codes (n, L), the quantised latent (n, D) and the codebook + commitment loss."""
        residual = latent
        quantised = torch.zeros_like(latent)
        loss = latent.new_zeros(())
        codes = []
        for book in self.codebooks:
            with torch.no_grad():
                code = _nearest(residual.detach(), book.detach())
            chosen = book[code]
            loss = loss + ((residual.detach() - chosen) ** 2).sum(1).mean()
            loss = loss + self.beta * ((residual - chosen.detach()) ** 2).sum(1).mean()
            quantised = quantised + chosen
            residual = residual - chosen.detach()
            codes.append(code)
        return torch.stack(codes, dim=1), quantised, loss

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction (in the standardised space), codes and quantisation loss of a batch."""
        latent = self.encode(x)
        codes, quantised, loss = self.quantise(latent)
        straight_through = latent + (quantised - latent).detach()
        return self.decoder(straight_through), codes, loss

    @torch.no_grad()
    def initialise(self, x: torch.Tensor, iterations: int, generator: torch.Generator) -> None:
        """k-means on each level's residuals of the batch ``x``."""
        residual = self.encode(x)
        for level in range(len(self.codebooks)):
            centers = kmeans(residual, self.codebooks.shape[1], iterations, generator)
            self.codebooks[level] = centers
            residual = residual - centers[_nearest(residual, centers)]

    @torch.no_grad()
    def reset_dead_codes(self, x: torch.Tensor, rng: np.random.Generator) -> list[int]:
        """Re-initialise codes unused since the last reset to residuals of random rows of ``x``;
        returns how many were reset per level, and clears the usage counts."""
        residual = self.encode(x)
        counts = []
        for level, book in enumerate(self.codebooks):
            dead = torch.nonzero(self.usage[level] == 0).flatten()
            if len(dead):
                rows = torch.as_tensor(rng.choice(len(x), size=len(dead), replace=len(dead) > len(x)), device=x.device)
                book[dead] = residual[rows]
            counts.append(len(dead))
            residual = residual - book[_nearest(residual, book)]
        self.usage.zero_()
        return counts


class SemanticIDs:
    """Learns semantic IDs for a set of item embeddings (see the module doc).

    ``SemanticIDs(levels=3, codebook_size=256)`` or ``SemanticIDs(SemanticIDConfig(...))``;
    ``fit(embeddings, options)`` trains and fills :attr:`table` (one row per input row,
    ``levels + 1`` ints). ``__init__`` only stores the config.
    """

    def __init__(self, config: SemanticIDConfig | None = None, **settings: Any) -> None:
        base = config if config is not None else SemanticIDConfig()
        self.config = SemanticIDConfig.model_validate({**base.model_dump(), **settings}) if settings else base

    # ------------------------------------------------------------------ fitting
    def fit(self, embeddings: np.ndarray, options: FitOptions | None = None) -> SemanticIDs:
        """Train the RQ-VAE on ``embeddings`` (n, d) and assign every row its semantic ID.
        ``options.threads`` caps torch's threads for the whole fit (the k-means and the code
        assignment too, not only the training loop); the caller's setting is back afterwards."""
        options = options or FitOptions()
        with torch_threads(options.threads):
            return self._fit(embeddings, options)

    def _fit(self, embeddings: np.ndarray, options: FitOptions) -> SemanticIDs:
        started = time.perf_counter()
        config = self.config
        x = _as_matrix(embeddings)
        seed_everything(options.seed)
        module = RQVAE(x.shape[1], config)
        if config.standardise:
            module.input_mean.copy_(x.mean(0))
            module.input_scale.fill_(float((x - module.input_mean).std()) or 1.0)
        generator = torch.Generator().manual_seed(options.seed)
        first = torch.randperm(len(x), generator=generator)[: config.kmeans_sample]
        module.initialise(x[first], config.kmeans_iterations, generator)
        self.resets_: list[list[int]] = []
        epoch_counter = iter(range(1, config.epochs + 1))

        def make_batches(rng: np.random.Generator) -> Iterator[torch.Tensor]:
            epoch = next(epoch_counter, config.epochs)
            module.usage.zero_()
            order = torch.as_tensor(rng.permutation(len(x)))
            for start in range(0, len(x), config.batch_size):
                yield x[order[start : start + config.batch_size]]
            if config.reset_dead_codes and epoch < config.epochs:
                device = module.codebooks.device
                sample = torch.as_tensor(rng.choice(len(x), size=min(len(x), config.kmeans_sample), replace=False))
                self.resets_.append(module.reset_dead_codes(x[sample].to(device), rng))

        def loss_fn(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
            assert isinstance(model, RQVAE)
            reconstruction, codes, quantisation_loss = model(batch)
            for level in range(codes.shape[1]):
                model.usage[level] += torch.bincount(codes[:, level], minlength=config.codebook_size)
            # ||x - D(z_q)||^2 in the input space: standardising changes what E sees, not the loss balance
            error = (reconstruction.float() - model.standardise(batch)) * model.input_scale
            loss: torch.Tensor = (error**2).sum(1).mean() + quantisation_loss
            return loss

        steps = -(-len(x) // config.batch_size)
        self.train_result_: TrainResult = fit_module(
            module, make_batches, loss_fn, config, options, steps_per_epoch=steps, desc="rq-vae"
        )
        self.module_ = module
        self.input_size_ = int(x.shape[1])
        codes = self.codes(x.numpy())
        extra, self.prefix_counts_ = _break_collisions(codes, {})
        self.table_ = np.concatenate([codes, extra[:, None]], axis=1)
        self.metrics_ = self._metrics(x, codes)
        self.metrics_["fit_seconds"] = time.perf_counter() - started
        return self

    def _metrics(self, x: torch.Tensor, codes: np.ndarray) -> dict[str, Any]:
        _, counts = np.unique(codes, axis=0, return_counts=True)
        reconstruction = self.reconstruct(x.numpy())
        errors = ((reconstruction - x.numpy()) ** 2).sum(1)
        norms = np.linalg.norm(reconstruction, axis=1) * np.linalg.norm(x.numpy(), axis=1)
        cosine = (reconstruction * x.numpy()).sum(1) / np.maximum(norms, 1e-12)
        return {
            "items": len(codes),
            "codebook_utilisation": [len(np.unique(codes[:, level])) / self.config.codebook_size for level in range(codes.shape[1])],
            "collision_rate": float(counts[counts > 1].sum() / len(codes)),
            "collision_rate_final": float(1.0 - len(np.unique(self.table_, axis=0)) / len(codes)),
            "distinct_prefixes": len(counts),
            "largest_collision": int(counts.max()),
            "reconstruction_error": float(errors.mean()),
            "reconstruction_cosine": float(cosine.mean()),
            "final_loss": float(self.train_result_.history[-1]["loss"]) if self.train_result_.history else float("nan"),
        }

    # ------------------------------------------------------------------ inference (frozen model)
    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise NotFittedError("SemanticIDs is not fitted: call fit(embeddings) or SemanticIDs.load(path)")

    @property
    def table(self) -> np.ndarray:
        """Semantic IDs of the fitted (and extended) items: int64 (n, levels + 1)."""
        self._check_fitted()
        return self.table_

    def _batches(self, embeddings: np.ndarray) -> Iterator[torch.Tensor]:
        x = _as_matrix(embeddings)
        if x.shape[1] != self.input_size_:
            raise ValueError(f"expected {self.input_size_}-dimensional embeddings, got {x.shape[1]}")
        device = self.module_.codebooks.device
        for start in range(0, len(x), _INFER_BATCH):
            yield x[start : start + _INFER_BATCH].to(device)

    @torch.no_grad()
    def codes(self, embeddings: np.ndarray) -> np.ndarray:
        """The L quantisation codes of each row (int64, (n, levels)), without the extra entry."""
        self._check_fitted()
        self.module_.eval()
        parts = [self.module_.quantise(self.module_.encode(batch))[0].cpu().numpy() for batch in self._batches(embeddings)]
        return np.concatenate(parts) if parts else np.zeros((0, self.config.levels), dtype=np.int64)

    @torch.no_grad()
    def reconstruct(self, embeddings: np.ndarray) -> np.ndarray:
        """The decoder's reconstruction of each row from its quantised latent (float32)."""
        self._check_fitted()
        self.module_.eval()
        module = self.module_
        parts = [
            (module(batch)[0].float() * module.input_scale + module.input_mean).cpu().numpy()
            for batch in self._batches(embeddings)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.input_size_), np.float32)

    def assign(self, embeddings: np.ndarray) -> np.ndarray:
        """Semantic IDs (int64, (n, levels + 1)) for new items, with the frozen model.

        The extra entry is the next free index of the item's prefix in :attr:`table`; new items
        sharing a prefix within one call get consecutive indices in row order. Pure: the table
        is unchanged (use :meth:`extend` to add the items)."""
        codes = self.codes(embeddings)
        extra, _ = _break_collisions(codes, self.prefix_counts_)
        return np.concatenate([codes, extra[:, None]], axis=1)

    def extend(self, embeddings: np.ndarray) -> np.ndarray:
        """:meth:`assign`, then append the new items to :attr:`table`; returns their IDs."""
        codes = self.codes(embeddings)
        extra, self.prefix_counts_ = _break_collisions(codes, self.prefix_counts_)
        sids = np.concatenate([codes, extra[:, None]], axis=1)
        self.table_ = np.concatenate([self.table_, sids])
        return sids

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write ``config.json`` and ``arrays.npz`` (weights, table) into directory ``path``."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays = state_to_arrays(self.module_)
        arrays["table"] = self.table_
        np.savez(path / "arrays.npz", **arrays)  # type: ignore[arg-type]  # numpy's stub confuses **kwds
        meta = {
            "format": _FORMAT, "version": 1, "config": self.config.model_dump(mode="json"),
            "input_size": self.input_size_, "metrics": self.metrics_,
        }
        (path / "config.json").write_text(json.dumps(meta, indent=2))
        return path

    def to_arrays(self, prefix: str = "sid.") -> dict[str, np.ndarray]:
        """The fitted state as named arrays, to keep inside another artifact (e.g. a model's):
        the weights, the table, and ``config.json``'s content as a string array."""
        self._check_fitted()
        meta = {"format": _FORMAT, "version": 1, "config": self.config.model_dump(mode="json"), "input_size": self.input_size_}
        arrays = state_to_arrays(self.module_, prefix=f"{prefix}weights.")
        arrays[f"{prefix}table"] = self.table_
        arrays[f"{prefix}meta"] = np.asarray(json.dumps(meta, sort_keys=True))
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str = "sid.") -> SemanticIDs:
        """Restore a model written by :meth:`to_arrays` (on CPU); ``metrics_`` is not kept."""
        try:
            meta = json.loads(str(arrays[f"{prefix}meta"]))
        except (KeyError, ValueError) as exc:
            raise ArtifactError(f"no SemanticIDs arrays under prefix {prefix!r}: {exc}") from exc
        if meta.get("format") != _FORMAT or meta.get("version") != 1:
            raise ArtifactError(f"arrays under {prefix!r}: not a {_FORMAT} version 1 model")
        return cls._restore(meta, arrays, f"{prefix}weights.", arrays[f"{prefix}table"])

    @classmethod
    def _restore(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], weights_prefix: str, table: np.ndarray) -> SemanticIDs:
        model = cls(SemanticIDConfig.model_validate(meta["config"]))
        module = RQVAE(int(meta["input_size"]), model.config)
        module.load_state_dict(arrays_to_state(arrays, prefix=weights_prefix))
        module.eval()
        model.module_ = module
        model.input_size_ = int(meta["input_size"])
        model.table_ = np.asarray(table).astype(np.int64)
        model.metrics_ = meta.get("metrics", {})
        model.prefix_counts_ = _prefix_counts(model.table_)
        return model

    @classmethod
    def load(cls, path: str | Path) -> SemanticIDs:
        """Read a directory written by :meth:`save` (on CPU)."""
        path = Path(path)
        try:
            meta = json.loads((path / "config.json").read_text())
            with np.load(path / "arrays.npz", allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{path} is not a saved SemanticIDs model: {exc}") from exc
        if meta.get("format") != _FORMAT or meta.get("version") != 1:
            raise ArtifactError(f"{path}: not a {_FORMAT} version 1 directory")
        return cls._restore(meta, arrays, "weights.", arrays["table"])


# ---------------------------------------------------------------------- helpers
def _as_matrix(embeddings: np.ndarray) -> torch.Tensor:
    array = np.asarray(embeddings, dtype=np.float32)
    if array.ndim != 2 or len(array) == 0:
        raise ValueError(f"expected a non-empty 2-D array of embeddings, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("embeddings contain NaN or infinite values")
    return torch.from_numpy(np.ascontiguousarray(array))


def _break_collisions(codes: np.ndarray, taken: dict[tuple[int, ...], int]) -> tuple[np.ndarray, dict[tuple[int, ...], int]]:
    """The extra entry of each row (next free index of its prefix, in row order) and the
    updated prefix -> count mapping (``taken`` is not modified)."""
    counts = dict(taken)
    extra = np.empty(len(codes), dtype=np.int64)
    for row, prefix in enumerate(map(tuple, codes.tolist())):
        index = counts.get(prefix, 0)
        extra[row] = index
        counts[prefix] = index + 1
    return extra, counts


def _prefix_counts(table: np.ndarray) -> dict[tuple[int, ...], int]:
    counts: dict[tuple[int, ...], int] = {}
    for row in table.tolist():
        prefix = tuple(row[:-1])
        counts[prefix] = max(counts.get(prefix, 0), row[-1] + 1)
    return counts


def semantic_id_table(
    dataset: Dataset,
    encoder: TextEncoder,
    sid_model: SemanticIDs,
    *,
    describer: Describer | None = None,
    options: FitOptions | None = None,
) -> np.ndarray:
    """Semantic IDs of every catalog item (row = item code): describe, encode, quantise.

    Descriptions come from the catalog's ``description`` column when it has one, else from
    ``describer`` (default :func:`~tastemaker.content.describe.describe`). An unfitted
    TF-IDF encoder is fitted on them; an unfitted ``sid_model`` is fitted on the vectors (and
    its :attr:`~SemanticIDs.table` returned), a fitted one assigns them with the frozen model.
    """
    from tastemaker.content.describe import OUTPUT_COLUMN, describe_catalog

    catalog = dataset.catalog
    if OUTPUT_COLUMN in catalog.columns and describer is None:
        texts = catalog[OUTPUT_COLUMN].fillna("").astype(str).tolist()
    else:
        texts = describe_catalog(catalog, describer).tolist()
    fit = getattr(encoder, "fit", None)
    if callable(fit) and getattr(encoder, "fitted", True) is False:
        fit(texts)
    vectors = encoder.encode(texts)
    if not hasattr(sid_model, "module_"):
        return sid_model.fit(vectors, options).table
    return sid_model.assign(vectors)
