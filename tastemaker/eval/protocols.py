"""The reference offline protocol (../shared/DESIGN.md, "Reference protocol").

1. every event counts as an implicit interaction;
2. temporal leave-one-out: last event = test, second-last = validation;
3. rank over all items, excluding items the user has seen in training; no sampled negatives;
4. for each model, fit every configuration of its grid on train and keep the one with the
   best validation NDCG@10;
5. refit that configuration on train + validation and report HR/NDCG/... @10 and @20 on the
   test item, with a bootstrap confidence interval for NDCG@10.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tastemaker.data.dataset import Dataset
from tastemaker.data.splits import Split, leave_one_out
from tastemaker.eval.metrics import bootstrap_ci, summarize, truth_from_pairs
from tastemaker.models.base import Recommender
from tastemaker.types import FitOptions

KS = (10, 20)
TUNE_METRIC = "ndcg@10"


@dataclass
class ModelResult:
    """One model's outcome under the protocol."""

    model: str
    params: dict[str, Any]
    validation: dict[str, float]
    test: dict[str, float]
    ndcg10_ci: tuple[float, float]
    fit_seconds: float
    peak_rss_mb: float
    tuning: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ProtocolResult:
    dataset: str
    split: str
    n_users: int
    n_items: int
    n_interactions: int
    n_test_users: int
    results: list[ModelResult]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def param_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Cartesian product of a {param: [values]} mapping, in a stable order."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def evaluate_model(
    model: Recommender,
    heldout: pd.DataFrame,
    ks: Sequence[int] = KS,
    *,
    diversity: bool = True,
    item_features: sp.csr_matrix | None = None,
    progress: bool = False,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Rank the full catalog for every user in ``heldout`` and compute all metrics.

    Intra-list diversity uses ``item_features`` (e.g. ``dataset.category_matrix()``), or,
    without them, each item's vector of training users (exact but slow for popular items)."""
    users, truth = truth_from_pairs(
        heldout["user"].to_numpy(), heldout["item"].to_numpy(), len(model.items_)
    )
    topk = model.recommend_codes(users, max(ks), progress=progress)
    features = None
    if diversity:
        features = item_features if item_features is not None else model.user_items_.T.tocsr()
    return summarize(
        topk,
        truth,
        ks,
        item_popularity=model.item_popularity_,
        n_users=len(model.users_),
        item_features=features,
    )


def run_protocol(
    dataset: Dataset,
    models: Mapping[str, tuple[type[Recommender], Mapping[str, Sequence[Any]]]],
    options: FitOptions | None = None,
    *,
    split: Split | None = None,
    ks: Sequence[int] = KS,
    progress: bool = True,
) -> ProtocolResult:
    """Tune each model on validation, refit on train+validation, report on test.

    ``models`` maps a display name to (model class, parameter grid)."""
    options = options or FitOptions(progress=False)
    split = split or leave_one_out(dataset)
    train_full = split.train_with_validation()
    categories = dataset.category_matrix()
    # Diversity over categories where the catalog has them (genres, brands...): the usual
    # notion, and far cheaper than over interaction vectors.
    features = categories if categories.shape[1] and categories.getnnz() >= 0.5 * dataset.n_items else None
    results = []
    for name, (cls, grid) in models.items():
        tuning = []
        best: tuple[float, dict[str, Any]] | None = None
        configs = param_grid(grid) or [{}]
        for params in configs:
            model = cls(**params).fit(split.train, options)
            means, _ = evaluate_model(model, split.validation, ks=(10,), diversity=False)
            tuning.append({"params": params, TUNE_METRIC: means[TUNE_METRIC]})
            if progress:
                print(f"  {name} {params}: validation {TUNE_METRIC} = {means[TUNE_METRIC]:.4f}", flush=True)
            if best is None or means[TUNE_METRIC] > best[0]:
                best = (means[TUNE_METRIC], params, means)  # type: ignore[assignment]
        assert best is not None
        best_params, best_valid = best[1], best[2]  # type: ignore[misc]
        with peak_rss() as peak:
            start = time.perf_counter()
            model = cls(**best_params).fit(train_full, options)
            fit_seconds = time.perf_counter() - start
        means, per_user = evaluate_model(model, split.test, ks=ks, item_features=features, progress=progress)
        results.append(
            ModelResult(
                model=name,
                params=best_params,
                validation=best_valid,
                test=means,
                ndcg10_ci=bootstrap_ci(per_user["ndcg@10"], seed=options.seed),
                fit_seconds=fit_seconds,
                peak_rss_mb=peak.megabytes,
                tuning=tuning,
            )
        )
    return ProtocolResult(
        dataset=dataset.name,
        split=split.name,
        n_users=dataset.n_users,
        n_items=dataset.n_items,
        n_interactions=dataset.n_interactions,
        n_test_users=int(split.test["user"].nunique()),
        results=results,
    )


@dataclass
class _Peak:
    megabytes: float = 0.0


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@contextmanager
def peak_rss(interval: float = 0.005) -> Iterator[_Peak]:
    """Peak resident memory above the starting level while the block runs (Linux /proc
    sampling, so memory allocated by C extensions is counted too)."""
    peak = _Peak()
    if not os.path.exists(f"/proc/{os.getpid()}/statm"):
        yield peak
        return
    base = _rss_mb()
    stop = threading.Event()
    top = [base]

    def sample() -> None:
        while not stop.is_set():
            top[0] = max(top[0], _rss_mb())
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()
        top[0] = max(top[0], _rss_mb())
        peak.megabytes = top[0] - base
