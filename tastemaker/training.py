"""The one training loop every neural model uses, its settings, and what it validates with.

A model supplies a ``torch.nn.Module``, a function that yields one epoch of batches, a loss
function and (optionally) a validation function returning each validated user's NDCG@10;
:func:`fit_module` does the rest:

* AdamW with optional cosine schedule (with linear warm-up), gradient clipping;
* seeding (``FitOptions.seed``): the same seed gives the same weights on CPU;
* device choice (``FitOptions.device``: ``"cpu"``, ``"cuda"`` or ``"auto"``) and bf16 autocast
  on CUDA (``mixed_precision``);
* early stopping on validation NDCG@10, restoring the best weights (see
  :class:`TrainingConfig` for the rule and why its defaults are what they are);
* a progress bar showing the loss and the validation metric;
* a resumable checkpoint: with ``FitOptions(checkpoint=path)`` the state is written after
  every epoch and a later fit with the same path continues where it stopped;
* ``FitOptions.threads`` caps torch's threads for the fit only: the process's previous
  setting is back when :func:`fit_module` returns.

Validation for sequential data: :func:`holdout_last` holds out the last item of every
eligible user (or of a sample of ``validation_users``); :class:`NextItemValidation` ranks each
held-out item against the whole catalog in bounded batches, ties and NaN counted against the
target (:func:`ndcg_at_10`), so a collapsed model can never look good.

This module sits below ``tastemaker.models`` and ``tastemaker.content`` (it imports neither):
both train through it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tastemaker.errors import MissingExtraError
from tastemaker.types import FitOptions

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtraError("torch", "torch") from exc

from tqdm.auto import tqdm


class TrainingConfig(BaseModel):
    """Training settings shared by every model that trains through :func:`fit_module` (the same
    names everywhere). Typed, immutable, and a misspelt name is an error, like every config.

    Validation holds out the last item of ``validation_users`` users (default every user with
    at least 3 items) and ranks it against the whole catalog after every epoch; the epoch's
    metric is the mean of the users' NDCG@10 gains.

    Early stopping: an epoch *improves* when its gains beat those of the reference epoch (the
    last improving one) by more than ``min_delta`` standard errors of the per-user difference,
    sd(gain - reference gain) / sqrt(users): a paired comparison, so the bar is the epoch-to-
    epoch noise of these users, not the much larger spread of NDCG across users. Training
    stops after ``patience`` epochs without an improvement (small gains still add up: the
    reference only moves on an improvement). The best epoch is the one with the highest
    validation NDCG, improving or not.

    Refit (``refit``, default on): validation items are the users' most recent events, and
    holding all of them out of training costs quality (SASRec-CE on Amazon Beauty: test
    NDCG@10 0.0465 for the best epoch trained without them). So after stopping, the model is
    trained again from the same initial weights on everything, held-out items included, for
    the best epoch's count of epochs (Goodfellow et al., *Deep Learning*, 2016, algorithm 7.2):
    validation chooses how long to train, the final weights use all the data (Beauty: 0.0567,
    level with the 0.0568 of the old 2,000-user validation, which left 91 % of those items in).
    It costs ``best_epoch + 1`` more epochs. ``refit=False`` keeps the best epoch's weights.

    Why these defaults (``benchmarks/sequential.py --curve``: one run without stopping, every
    user validated, each rule replayed on it; tables in benchmarks/RESULTS.md). On Beauty the
    standard error of validation NDCG@10 is 0.0043 on 2,000 users, as large as all the curve
    gains after epoch 15, and ``patience=5`` on such samples restored epochs 19-29 (test NDCG
    0.0424-0.0458 by ``min_delta``); on all 22,363 users it is 0.0013, and the paired error
    between two epochs 0.0004. With every user, every patience from 5 (paired ``min_delta``) to
    20 restores the same epoch (32 of 46). ML-100K (943 users, error 0.007) climbs slowly for 90
    epochs: patience 5 / 10 / 15 / 20 with ``min_delta=1`` restore epochs 49 / 52 / 69 / 78
    (test 0.069 / 0.073 / 0.081 / 0.083), so 15: on Beauty it stops 10 epochs after the best.
    Validating every user is one batched full-catalog pass per epoch (Beauty: ~3 s on one
    thread, against ~30 s for a CE epoch).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(50, ge=1)
    batch_size: int = Field(256, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float | None = Field(5.0, gt=0)
    scheduler: Literal["none", "cosine"] = "none"
    warmup_epochs: float = Field(0.0, ge=0)
    # epochs without an improvement (of more than min_delta paired standard errors) before
    # stopping; 0 = never stop early (train all epochs, still restore or refit the best)
    patience: int = Field(15, ge=0)
    min_delta: float = Field(1.0, ge=0)
    # users whose last item is held out for validation: "all" eligible users, a sample of that
    # many, or 0 = no validation (train all epochs, keep the last weights)
    validation_users: Annotated[int, Field(ge=0)] | Literal["all"] = "all"
    # after early stopping, retrain from the same initial weights on everything (held-out items
    # included) for the best epoch's count; False: keep the best epoch's weights
    refit: bool = True
    mixed_precision: bool = True  # bf16 autocast on CUDA; ignored on CPU


@dataclass
class TrainResult:
    """What happened in training: per-epoch loss and validation metric (``ndcg@10`` and its
    standard error ``ndcg@10_se``), the best epoch (whose weights were restored, or whose
    epoch count the refit trained for) and the refit's epochs and seconds."""

    epochs_run: int = 0
    best_epoch: int = -1
    best_metric: float = float("-inf")
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    refit_epochs: int = 0  # epochs of the refit on the whole data (0: none)
    refit_seconds: float = 0.0

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
    """Seed torch (CPU and CUDA) and return a numpy generator from the same seed."""
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return np.random.default_rng(seed)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Cap torch's intra-op threads inside the block and restore the previous count after it
    (``torch.set_num_threads`` is process-wide; a fit must not change it for the caller).
    ``None`` or 0 leaves the setting alone."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if threads:
            torch.set_num_threads(previous)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move tensors (also inside tuples, lists and dicts) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple | list):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


Batches = Callable[[np.random.Generator], Iterable[Any]]


def fit_module(
    module: nn.Module,
    make_batches: Batches,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor],
    settings: TrainingConfig,
    options: FitOptions,
    *,
    validate: Callable[[nn.Module], torch.Tensor] | None = None,
    refit: Callable[[nn.Module], tuple[Batches, int | None]] | None = None,
    steps_per_epoch: int | None = None,
    desc: str = "training",
) -> TrainResult:
    """Train ``module`` in place and return what happened. ``module`` ends on the device it
    trained on, holding the best weights seen on validation (or the last, without validation),
    or the refit's weights.

    ``validate(module)`` (called in eval mode, without gradients) returns one NDCG@10 gain per
    validated user (e.g. :meth:`NextItemValidation.gains`); their mean is the epoch's metric,
    and the spread of their difference to the reference epoch's sets the bar for an improvement
    (:class:`TrainingConfig`).

    ``refit(module)`` (with ``settings.refit`` and a validation): after early stopping,
    ``module`` is reset to its initial weights and handed to ``refit``, which prepares it for
    the whole data (the held-out items back in) and returns that data's batches and steps per
    epoch; training then reruns, seeded as before, for ``best_epoch + 1`` epochs of the same
    schedule. torch's thread count is restored on return."""
    with torch_threads(options.threads):
        initial = _copy_state(module) if refit is not None and validate is not None and settings.refit else None
        result, trained = _fit(module, make_batches, loss_fn, settings, options, validate, steps_per_epoch, desc, None)
        if initial is None or result.best_epoch < 0:
            return result
        module.load_state_dict(initial)
        full_batches, full_steps = refit(module)
        refit_ckpt = Path(f"{options.checkpoint}.refit") if options.checkpoint else None
        if refit_ckpt is not None and trained:
            refit_ckpt.unlink(missing_ok=True)  # the first run changed: a refit begun after it is stale
        refit_options = replace(options, checkpoint=str(refit_ckpt) if refit_ckpt else None)
        again, _ = _fit(module, full_batches, loss_fn, settings, refit_options, None, full_steps, f"{desc} refit",
                        result.best_epoch + 1)
        result.refit_epochs, result.refit_seconds = again.epochs_run, again.seconds
        return result


def _copy_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def _fit(
    module: nn.Module,
    make_batches: Batches,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor],
    settings: TrainingConfig,
    options: FitOptions,
    validate: Callable[[nn.Module], torch.Tensor] | None,
    steps_per_epoch: int | None,
    desc: str,
    stop_after: int | None,
) -> tuple[TrainResult, bool]:
    """One training run; ``stop_after``: end after that many epochs (the schedule still spans
    ``settings.epochs``). Also returns whether any epoch was trained (not all resumed)."""
    rng = seed_everything(options.seed)
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
    reference: torch.Tensor | None = None  # per-user gains of the last improving epoch: the bar
    bad_epochs = 0
    start_epoch = 0
    end_epoch = settings.epochs if stop_after is None else min(stop_after, settings.epochs)
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
        reference = state.get("reference")
        if state.get("stopped"):  # it had stopped early: nothing left to train
            start_epoch = end_epoch

    started = time.perf_counter() - result.seconds
    bar = tqdm(range(start_epoch, end_epoch), desc=desc, disable=not options.progress, unit="epoch")
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
                gains = torch.as_tensor(validate(module)).double().flatten()
            metric, se = _mean_and_se(gains)
            record["ndcg@10"], record["ndcg@10_se"] = metric, se
            if metric > result.best_metric:  # NaN never is: a NaN epoch is never restored
                result.best_metric, result.best_epoch = metric, epoch
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
            if _improves(gains, reference, settings.min_delta):
                reference, bad_epochs = gains.cpu(), 0
            else:
                bad_epochs += 1
        result.history.append(record)
        result.epochs_run = epoch + 1
        result.seconds = time.perf_counter() - started
        bar.set_postfix({k: f"{v:.4f}" for k, v in record.items() if k != "epoch"})
        stop = validate is not None and settings.patience > 0 and bad_epochs >= settings.patience
        if ckpt is not None:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            tmp = ckpt.with_suffix(".tmp")
            torch.save(
                {
                    "module": module.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(), "best_state": best_state, "reference": reference,
                    "bad_epochs": bad_epochs, "epoch": epoch, "stopped": stop, "result": asdict(result),
                },
                tmp,
            )
            tmp.replace(ckpt)  # a crash mid-write leaves the previous checkpoint intact
        if stop:
            break
    bar.close()
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return result, end_epoch > start_epoch


def _improves(gains: torch.Tensor, reference: torch.Tensor | None, min_delta: float) -> bool:
    """Whether an epoch's per-user gains beat the reference epoch's by more than ``min_delta``
    standard errors of the per-user difference (a paired comparison: the same users, so what
    both epochs get right alike cancels out). The first finite epoch always does; NaN never."""
    if reference is None:
        return bool(torch.isfinite(gains.mean())) if len(gains) else True
    mean, se = _mean_and_se(gains - reference.to(gains.device))
    return mean > min_delta * se


def _mean_and_se(gains: torch.Tensor) -> tuple[float, float]:
    """Mean of per-user gains and its standard error (0 for fewer than two users)."""
    if len(gains) == 0:
        return 0.0, 0.0
    mean = float(gains.mean())
    se = float(gains.std() / math.sqrt(len(gains))) if len(gains) > 1 else 0.0
    return mean, se


def _schedule(kind: str, warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if kind == "cosine":
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return factor


# ---------------------------------------------------------------------- validation
@dataclass(frozen=True)
class Holdout:
    """Training sequences with the last item of some users held out for validation."""

    train: list[np.ndarray]
    users: np.ndarray  # which users are validated
    targets: np.ndarray  # their held-out item


def holdout_last(
    sequences: list[np.ndarray], max_users: int | Literal["all"], rng: np.random.Generator, min_length: int = 3
) -> Holdout:
    """Hold out the last item of every user with at least ``min_length`` items (``"all"``) or
    of a random sample of ``max_users`` of them (0: none)."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    eligible = np.flatnonzero(lengths >= min_length)
    if max_users == 0 or len(eligible) == 0:
        return Holdout(list(sequences), np.zeros(0, np.int64), np.zeros(0, np.int64))
    if max_users == "all" or max_users >= len(eligible):
        users = eligible
    else:
        users = np.sort(rng.choice(eligible, size=max_users, replace=False))
    train = list(sequences)
    targets = np.empty(len(users), dtype=np.int64)
    for i, u in enumerate(users):
        targets[i] = sequences[u][-1]
        train[u] = sequences[u][:-1]
    return Holdout(train, users, targets)


def ndcg_at_10(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """NDCG@10 of one target per row of full-catalog ``scores`` (batch, n_items): one gain per row.

    Ranked pessimistically, so a degenerate model cannot score well: every other item scoring
    at least as high as the target (a tie) or NaN is ranked above it, and a NaN target gets
    gain 0. Constant scores thus give 0, not 1. Mask items out with ``-inf`` (a target at
    ``-inf`` gains 0)."""
    target = scores.gather(1, targets.view(-1, 1).to(scores.device))
    # items at or above the target, plus NaN items (two counts: cheaper than or-ing the masks);
    # a finite target counts itself once among the first
    ahead = (scores >= target).sum(dim=1, dtype=torch.int32) + scores.isnan().sum(dim=1, dtype=torch.int32)
    rank = ahead - 1
    gains = 1.0 / torch.log2(rank.to(torch.float32) + 2.0)
    keep = (rank < 10) & ~target.view(-1).isnan()
    return torch.where(keep, gains, torch.zeros_like(gains))


class NextItemValidation:
    """Each validated user's held-out next item, ranked against the whole catalog with the
    user's history items excluded; one gain per user.

    Scoring runs in batches of ``batch_size`` users (a model passes a batch that keeps
    batch x n_items within its scoring budget), users of similar history length together (a
    sequence model pads a batch to its longest history), and excluding histories is one indexed
    write per batch: no Python loop over users, so validating every user costs one
    full-catalog scoring pass."""

    def __init__(self, histories: Sequence[np.ndarray], targets: np.ndarray, batch_size: int = 512) -> None:
        lengths = np.array([len(h) for h in histories], dtype=np.int64)
        self.order = np.argsort(lengths, kind="stable")  # scoring order: by history length
        sorted_lengths = lengths[self.order]
        self.indptr = np.concatenate([[0], np.cumsum(sorted_lengths)]).astype(np.int64)
        self.indices = torch.as_tensor(
            np.concatenate([np.asarray(histories[i], dtype=np.int64) for i in self.order])
            if len(histories) else np.zeros(0, np.int64)
        )
        self.lengths = torch.as_tensor(sorted_lengths)
        self.targets = torch.as_tensor(np.asarray(targets, dtype=np.int64)[self.order])
        self.batch_size = max(int(batch_size), 1)

    def __len__(self) -> int:
        return len(self.targets)

    def gains(self, score: Callable[[np.ndarray], torch.Tensor]) -> torch.Tensor:
        """Per-user NDCG@10 (float32, on the scores' device, in the order of the histories given
        at construction). ``score(rows)`` returns the full-catalog scores (len(rows), n_items) of
        the users at positions ``rows`` of those histories, as a fresh tensor (history items are
        overwritten with ``-inf`` in place)."""
        out: torch.Tensor | None = None
        for start in range(0, len(self), self.batch_size):
            stop = min(start + self.batch_size, len(self))
            rows = self.order[start:stop]
            scores = score(rows).float()
            device = scores.device
            mask_rows = torch.repeat_interleave(torch.arange(stop - start), self.lengths[start:stop]).to(device)
            mask_cols = self.indices[self.indptr[start] : self.indptr[stop]].to(device)
            scores[mask_rows, mask_cols] = float("-inf")
            if out is None:
                out = torch.zeros(len(self), device=device)
            out[torch.as_tensor(rows, device=device)] = ndcg_at_10(scores, self.targets[start:stop])
        return out if out is not None else torch.zeros(0)


def items_in(sequences: list[np.ndarray] | np.ndarray, n_items: int) -> np.ndarray:
    """(n_items,) bool: which item codes occur in ``sequences`` (arrays of codes, or one padded
    matrix; negative codes are padding). Models give an ID embedding only to these items: an ID
    row that never saw a training event holds nothing but its initial noise."""
    if isinstance(sequences, np.ndarray):
        flat = sequences.ravel()
    else:
        flat = np.concatenate([np.asarray(s).ravel() for s in sequences]) if len(sequences) else np.zeros(0, np.int64)
    return np.bincount(flat[flat >= 0].astype(np.int64), minlength=n_items) > 0


# ---------------------------------------------------------------------- weights <-> arrays
def state_to_arrays(module: nn.Module, prefix: str = "weights.") -> dict[str, np.ndarray]:
    """A module's state_dict as named float32/int numpy arrays for the artifact."""
    return {prefix + k: v.detach().to("cpu").float().numpy() if v.is_floating_point() else v.detach().to("cpu").numpy()
            for k, v in module.state_dict().items()}


def arrays_to_state(arrays: dict[str, np.ndarray], prefix: str = "weights.") -> dict[str, torch.Tensor]:
    """The inverse of :func:`state_to_arrays`: the entries under ``prefix`` as a state_dict."""
    return {k[len(prefix):]: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items() if k.startswith(prefix)}
