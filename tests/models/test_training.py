"""The training loop (tastemaker.training): pessimistic ranking for model selection, the early
stopping rule, restoring the best weights, the thread count, validation on every user, and the
layering (content and models both train through it; it imports neither)."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from tastemaker.training import (
    NextItemValidation,
    TrainingConfig,
    fit_module,
    holdout_last,
    ndcg_at_10,
)
from tastemaker.types import FitOptions

OPTIONS = FitOptions(seed=0, threads=1, progress=False)


# ---------------------------------------------------------------------- ranking
def test_ndcg_known_answers() -> None:
    scores = torch.tensor([
        [0.1, 0.9, 0.2, 0.3],  # target 1 is first -> 1
        [0.9, 0.8, 0.7, 0.1],  # target 2 is third -> 1 / log2(4)
        [0.5, 0.5, 0.1, 0.0],  # target 0 ties with item 1: the tie ranks above it -> 1 / log2(3)
    ])
    gains = ndcg_at_10(scores, torch.tensor([1, 2, 0]))
    np.testing.assert_allclose(gains.numpy(), [1.0, 0.5, 1 / math.log2(3)], rtol=1e-6)


def test_constant_and_nan_scores_rank_last() -> None:
    """A collapsed model (every score equal, or NaN) must not look perfect: with optimistic
    ties (``scores > target``) both gave NDCG 1.0."""
    n_items, targets = 50, torch.arange(8)
    assert float(ndcg_at_10(torch.zeros(8, n_items), targets).max()) == 0.0
    assert float(ndcg_at_10(torch.full((8, n_items), float("nan")), targets).max()) == 0.0
    # NaN scores of the other items do not push a finite target up
    others_nan = torch.full((8, n_items), float("nan"))
    others_nan[torch.arange(8), targets] = 1.0
    assert float(ndcg_at_10(others_nan, targets).max()) == 0.0
    # a NaN target is last even when the rest is finite
    nan_target = torch.rand(8, n_items)
    nan_target[torch.arange(8), targets] = float("nan")
    assert float(ndcg_at_10(nan_target, targets).max()) == 0.0


def test_validation_excludes_histories_and_batching_changes_nothing() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 37, 60
    scores = torch.as_tensor(rng.normal(size=(n_users, n_items)), dtype=torch.float32)
    targets = rng.integers(0, n_items, n_users)
    # every history holds the user's top-scored item (not the target): excluded, it cannot outrank it
    top = scores.argmax(1).numpy()
    histories = [np.array([t]) if t != g else np.zeros(0, np.int64) for t, g in zip(top, targets, strict=True)]
    expected = scores.clone()
    for u, h in enumerate(histories):
        expected[u, torch.as_tensor(h, dtype=torch.long)] = float("-inf")
    want = ndcg_at_10(expected, torch.as_tensor(targets))
    for batch in (1, 5, 512):
        got = NextItemValidation(histories, targets, batch).gains(lambda rows: scores[rows])
        torch.testing.assert_close(got, want)
    assert float(want.mean()) > float(ndcg_at_10(scores, torch.as_tensor(targets)).mean())


def test_holdout_every_eligible_user_by_default() -> None:
    assert TrainingConfig().validation_users == "all"
    sequences = [np.arange(n) for n in (1, 2, 3, 4, 10)]
    holdout = holdout_last(sequences, "all", np.random.default_rng(0))
    assert holdout.users.tolist() == [2, 3, 4]  # at least 3 items
    assert holdout.targets.tolist() == [2, 3, 9]
    assert [len(s) for s in holdout.train] == [1, 2, 2, 3, 9]
    assert len(holdout_last(sequences, 2, np.random.default_rng(0)).users) == 2
    assert len(holdout_last(sequences, 0, np.random.default_rng(0)).users) == 0
    for bad in ("some", -1):
        with pytest.raises(ValueError):
            TrainingConfig(validation_users=bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- the loop
class ScoreTable(nn.Module):
    """A 'model' that is its own score matrix (users x items), and remembers the epoch that
    last trained it (a buffer, so it travels with the restored state)."""

    def __init__(self, n_users: int, n_items: int) -> None:
        super().__init__()
        self.scores = nn.Parameter(torch.zeros(n_users, n_items))
        self.register_buffer("trained_epoch", torch.tensor(-1))


def _collapsing_fit(collapse_to: float, collapse_at: int = 4, epochs: int = 8, patience: int = 0):  # type: ignore[no-untyped-def]
    """Fit a ScoreTable towards known targets with cross-entropy; at the end of epoch
    ``collapse_at`` every score is overwritten with ``collapse_to`` (all equal: 0.0; NaN) and
    training goes on."""
    n_users, n_items = 20, 40
    targets = torch.arange(n_users) % n_items
    module = ScoreTable(n_users, n_items)
    with torch.no_grad():
        module.scores.normal_(generator=torch.Generator().manual_seed(0))
    epoch = iter(range(epochs))

    def batches(rng: np.random.Generator) -> Iterator[int]:
        current = next(epoch)
        module.trained_epoch.fill_(current)
        yield current
        if current == collapse_at:  # after the epoch's step: validation sees the collapse
            with torch.no_grad():
                module.scores.fill_(collapse_to)

    def loss(net: nn.Module, current: int) -> torch.Tensor:
        return nn.functional.cross_entropy(net.scores, targets)  # one Adam step an epoch: NDCG climbs slowly

    validation = NextItemValidation([np.zeros(0, np.int64)] * n_users, targets.numpy())

    def validate(net: nn.Module) -> torch.Tensor:
        return validation.gains(lambda rows: net.scores[rows].detach())

    settings = TrainingConfig(epochs=epochs, learning_rate=0.05, patience=patience, min_delta=0.0)
    result = fit_module(module, batches, loss, settings, OPTIONS, validate=validate, steps_per_epoch=1)
    return module, result, validate


@pytest.mark.parametrize("collapse_to", [0.0, float("nan")])
def test_a_collapsed_epoch_is_never_restored(collapse_to: float) -> None:
    module, result, validate = _collapsing_fit(collapse_to)
    collapsed = result.history[4]["ndcg@10"]
    assert collapsed == 0.0 or math.isnan(collapsed)
    assert result.best_epoch != 4 and result.best_metric > 0.0
    assert int(module.trained_epoch) == result.best_epoch  # the best epoch's state came back
    with torch.inference_mode():
        assert float(validate(module).mean()) == pytest.approx(result.best_metric, abs=1e-6)


def _scripted_fit(means: list[float], patience: int, min_delta: float, nested: bool = False, n_users: int = 400):  # type: ignore[no-untyped-def]
    """fit_module with a validation that reports the given mean NDCG per epoch as gains of 0 and
    1: on a fresh random set of users each epoch (``nested=False``: epoch-to-epoch noise, a
    paired standard error of ~sqrt(2 m (1 - m) / n) = 0.028 at m = 0.2, n = 400), or always the
    first users (``nested``: every gain is consistent, no noise). Returns the result and the
    epoch whose state was restored."""
    module = ScoreTable(1, 1)
    epoch = iter(range(len(means)))
    rng = np.random.default_rng(0)

    def batches(rng_: np.random.Generator) -> Iterator[None]:
        module.trained_epoch.fill_(next(epoch))
        yield None

    def validate(net: nn.Module) -> torch.Tensor:
        hits = round(means[int(net.trained_epoch)] * n_users)
        gains = torch.cat([torch.ones(hits), torch.zeros(n_users - hits)])
        return gains if nested else gains[torch.as_tensor(rng.permutation(n_users))]

    settings = TrainingConfig(epochs=len(means), patience=patience, min_delta=min_delta)
    result = fit_module(module, batches, lambda net, _: net.scores.sum() * 0.0, settings, OPTIONS, validate=validate)
    return result, int(module.trained_epoch)


def test_improvements_within_the_noise_do_not_reset_patience() -> None:
    # Epochs 2-4 creep up by 0.005, a fifth of the epoch-to-epoch noise.
    means = [0.10, 0.20, 0.205, 0.21, 0.215, 0.19, 0.30, 0.30]
    result, restored = _scripted_fit(means, patience=3, min_delta=1.0)
    assert result.epochs_run == 5  # epochs 2, 3, 4 are no real gain: stop after epoch 4
    assert result.best_epoch == 4 == restored  # but the highest epoch is the one restored
    assert result.history[1]["ndcg@10_se"] == pytest.approx(math.sqrt(0.2 * 0.8 / 399), rel=1e-6)
    # without min_delta every creep resets patience, and training reaches the jump at epoch 6
    result, restored = _scripted_fit(means, patience=3, min_delta=0.0)
    assert result.epochs_run == 8 and result.best_epoch == 6 == restored


def test_consistent_gains_count_even_below_the_spread_across_users() -> None:
    """The bar is the paired error of the difference, not the spread of NDCG across users: the
    same creep, gained by the same users every epoch, is a real improvement (0.005 with a paired
    error of 0.0035, though the level's standard error is 0.02)."""
    means = [0.10, 0.20, 0.205, 0.21, 0.215, 0.19, 0.30, 0.30]
    result, _ = _scripted_fit(means, patience=3, min_delta=1.0, nested=True)
    assert result.epochs_run == 8 and result.best_epoch == 6


def test_a_slow_climb_accumulates_into_an_improvement() -> None:
    # +0.012 an epoch, under half the noise: no single step improves, but the reference stays
    # put, so three steps together do before patience runs out
    means = [0.20 + 0.012 * i for i in range(14)]
    result, _ = _scripted_fit(means, patience=3, min_delta=1.0)
    assert result.epochs_run == 14 and result.best_epoch == 13


def test_fit_restores_the_callers_thread_count() -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        _scripted_fit([0.1, 0.2], patience=0, min_delta=0.0)  # FitOptions(threads=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------- layering
def test_content_trains_without_importing_models() -> None:
    """tastemaker.content.semantic_ids trains through tastemaker.training; neither may pull in
    tastemaker.models (which imports content): the old content <-> models cycle."""
    code = (
        "import sys\n"
        "import tastemaker.content.semantic_ids, tastemaker.training\n"
        "bad = sorted(m for m in sys.modules if m == 'tastemaker.models' or m.startswith('tastemaker.models.'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
