"""The one training loop every neural model uses.

A model supplies a ``torch.nn.Module``, a function that yields one epoch of batches, a loss
function and (optionally) a validation function returning NDCG@10; :func:`fit_module` does
the rest:

* AdamW with optional cosine schedule (with linear warm-up), gradient clipping;
* seeding (``FitOptions.seed``): the same seed gives the same weights on CPU;
* device choice (``FitOptions.device``: ``"cpu"``, ``"cuda"`` or ``"auto"``) and bf16 autocast
  on CUDA (``mixed_precision``);
* early stopping on validation NDCG@10 with ``patience``, restoring the best weights;
* a progress bar showing the loss and the validation metric;
* a resumable checkpoint: with ``FitOptions(checkpoint=path)`` the state is written after
  every epoch and a later fit with the same path continues where it stopped.

Validation for sequential data: :func:`holdout_last` holds out the last item of a sample of
users (at most ``validation_users``); those users train without it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from tastemaker.errors import MissingExtraError
from tastemaker.models.base import ModelConfig
from tastemaker.types import FitOptions

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtraError("torch", "torch") from exc

from tqdm.auto import tqdm


class NeuralConfig(ModelConfig):
    """Training settings shared by every neural model (the same names everywhere)."""

    epochs: int = Field(50, ge=1)
    batch_size: int = Field(256, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float | None = Field(5.0, gt=0)
    scheduler: Literal["none", "cosine"] = "none"
    warmup_epochs: float = Field(0.0, ge=0)
    patience: int = Field(5, ge=0)  # epochs without validation gain before stopping; 0 = never stop early
    validation_users: int = Field(2000, ge=0)  # 0 = no validation, train all epochs
    mixed_precision: bool = True  # bf16 autocast on CUDA; ignored on CPU


@dataclass
class TrainResult:
    """What happened in training: per-epoch loss and validation metric, and the best epoch."""

    epochs_run: int = 0
    best_epoch: int = -1
    best_metric: float = float("-inf")
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / max(self.epochs_run, 1)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; an unavailable CUDA is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no CUDA GPU is available")
    return dev


def seed_everything(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return np.random.default_rng(seed)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move tensors (also inside tuples, lists and dicts) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple | list):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def fit_module(
    module: nn.Module,
    make_batches: Callable[[np.random.Generator], Iterable[Any]],
    loss_fn: Callable[[nn.Module, Any], torch.Tensor],
    settings: NeuralConfig,
    options: FitOptions,
    *,
    validate: Callable[[nn.Module], float] | None = None,
    steps_per_epoch: int | None = None,
    desc: str = "training",
) -> TrainResult:
    """Train ``module`` in place and return what happened. ``module`` ends on the device it
    trained on, holding the best weights seen on validation (or the last, without validation)."""
    rng = seed_everything(options.seed)
    if options.threads:
        torch.set_num_threads(options.threads)
    device = resolve_device(options.device)
    module.to(device)
    optimizer = torch.optim.AdamW(
        module.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay, fused=True
    )
    total_steps = settings.epochs * (steps_per_epoch or 1)
    warmup = int(settings.warmup_epochs * (steps_per_epoch or 1))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(settings.scheduler, warmup, total_steps))
    autocast = device.type == "cuda" and settings.mixed_precision

    result = TrainResult()
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs = 0
    start_epoch = 0
    ckpt = Path(options.checkpoint) if options.checkpoint else None
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=True)  # tensors and plain types only
        module.load_state_dict(state["module"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        best_state, bad_epochs, start_epoch = state["best_state"], state["bad_epochs"], state["epoch"] + 1
        result = TrainResult(**state["result"])

    started = time.perf_counter() - result.seconds
    bar = tqdm(range(start_epoch, settings.epochs), desc=desc, disable=not options.progress, unit="epoch")
    for epoch in bar:
        module.train()
        losses = []
        for batch in make_batches(rng):
            batch = to_device(batch, device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = loss_fn(module, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.grad_clip:
                nn.utils.clip_grad_norm_(module.parameters(), settings.grad_clip)
            optimizer.step()
            scheduler.step()
            losses.append(loss.detach())
        epoch_loss = float(torch.stack(losses).mean()) if losses else float("nan")
        record = {"epoch": float(epoch), "loss": epoch_loss}
        if validate is not None:
            module.eval()
            with torch.inference_mode():
                metric = float(validate(module))
            record["ndcg@10"] = metric
            if metric > result.best_metric:
                result.best_metric, result.best_epoch, bad_epochs = metric, epoch, 0
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
            else:
                bad_epochs += 1
        result.history.append(record)
        result.epochs_run = epoch + 1
        result.seconds = time.perf_counter() - started
        bar.set_postfix({k: f"{v:.4f}" for k, v in record.items() if k != "epoch"})
        if ckpt is not None:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            tmp = ckpt.with_suffix(".tmp")
            torch.save(
                {
                    "module": module.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(), "best_state": best_state,
                    "bad_epochs": bad_epochs, "epoch": epoch, "result": asdict(result),
                },
                tmp,
            )
            tmp.replace(ckpt)  # a crash mid-write leaves the previous checkpoint intact
        if validate is not None and settings.patience and bad_epochs >= settings.patience:
            break
    bar.close()
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return result


def _schedule(kind: str, warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if kind == "cosine":
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return factor


# ---------------------------------------------------------------------- validation helpers
@dataclass(frozen=True)
class Holdout:
    """Training sequences with the last item of some users held out for validation."""

    train: list[np.ndarray]
    users: np.ndarray  # which users are validated
    targets: np.ndarray  # their held-out item


def holdout_last(sequences: list[np.ndarray], max_users: int, rng: np.random.Generator, min_length: int = 3) -> Holdout:
    """Hold out the last item of up to ``max_users`` users with at least ``min_length`` items."""
    lengths = np.array([len(s) for s in sequences])
    eligible = np.flatnonzero(lengths >= min_length)
    if max_users == 0 or len(eligible) == 0:
        return Holdout(list(sequences), np.zeros(0, np.int64), np.zeros(0, np.int64))
    users = np.sort(rng.choice(eligible, size=min(max_users, len(eligible)), replace=False))
    train = list(sequences)
    targets = np.empty(len(users), dtype=np.int64)
    for i, u in enumerate(users):
        targets[i] = sequences[u][-1]
        train[u] = sequences[u][:-1]
    return Holdout(train, users, targets)


def items_in(sequences: list[np.ndarray] | np.ndarray, n_items: int) -> np.ndarray:
    """(n_items,) bool: which item codes occur in ``sequences`` (arrays of codes, or one padded
    matrix; negative codes are padding). Models give an ID embedding only to these items: an ID
    row that never saw a training event holds nothing but its initial noise."""
    if isinstance(sequences, np.ndarray):
        flat = sequences.ravel()
    else:
        flat = np.concatenate([np.asarray(s).ravel() for s in sequences]) if len(sequences) else np.zeros(0, np.int64)
    return np.bincount(flat[flat >= 0].astype(np.int64), minlength=n_items) > 0


def ndcg_at_10(scores: torch.Tensor, targets: torch.Tensor, seen: list[np.ndarray]) -> float:
    """Mean NDCG@10 of one held-out target per row, full ranking with seen items masked."""
    scores = scores.float().clone()
    for row, items in enumerate(seen):
        if len(items):
            scores[row, torch.as_tensor(np.asarray(items, dtype=np.int64), device=scores.device)] = float("-inf")
    target_scores = scores.gather(1, targets.view(-1, 1))
    rank = (scores > target_scores).sum(dim=1)
    gains = torch.where(rank < 10, 1.0 / torch.log2(rank.float() + 2.0), torch.zeros_like(rank, dtype=torch.float))
    return float(gains.mean()) if len(gains) else 0.0


def state_to_arrays(module: nn.Module, prefix: str = "weights.") -> dict[str, np.ndarray]:
    """A module's state_dict as named float32/int numpy arrays for the artifact."""
    return {prefix + k: v.detach().to("cpu").float().numpy() if v.is_floating_point() else v.detach().to("cpu").numpy()
            for k, v in module.state_dict().items()}


def arrays_to_state(arrays: dict[str, np.ndarray], prefix: str = "weights.") -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items() if k.startswith(prefix)}
