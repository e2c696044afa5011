"""The reference offline protocol (../shared/DESIGN.md, "Reference protocol").

1. every event counts as an implicit interaction;
2. temporal leave-one-out: last event = test, second-last = validation;
3. rank over all items, excluding items the user has seen in training; no sampled negatives;
4. for each model, fit every configuration of its grid on train and keep the one with the
   best validation NDCG@10, computed by :func:`selection_metrics`: each validation item is
   ranked by its own score and loses every tie (NaN counts as worst), so a model with
   constant or NaN scores gets 0 instead of credit for items that happen to have low codes;
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
from tastemaker.eval.metrics import accuracy_from_ranks, bootstrap_ci, pessimistic_ranks, summarize, truth_from_pairs
from tastemaker.models.base import Recommender, score_batch_size
from tastemaker.types import FitOptions, Query

KS = (10, 20)
TUNE_METRIC = "ndcg@10"


@dataclass
class ModelResult:
    """One model's outcome under the protocol. ``validation`` and ``tuning`` hold the
    selection metrics (:func:`selection_metrics`, ties pessimistic); ``test`` the reported
    ones (:func:`evaluate_model`, from the served top-k lists)."""

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
    model: Any,
    heldout: pd.DataFrame,
    ks: Sequence[int] = KS,
    *,
    diversity: bool = True,
    item_features: sp.csr_matrix | None = None,
    progress: bool = False,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Rank the full catalog for every user in ``heldout`` and compute all metrics: the
    reported metrics, from the top-k lists ``recommend_codes`` serves (ties to the lower
    item code; see :mod:`tastemaker.eval.metrics`). To choose between models use
    :func:`selection_metrics`, which gives ties and NaN no credit.

    ``model`` is a :class:`Recommender` or a :class:`~tastemaker.pipeline.Pipeline` (which
    has the same ``recommend_codes`` and vocabularies).

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


def selection_metrics(
    model: Any, heldout: pd.DataFrame, k: int = 10
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """hr, recall, ndcg and mrr @``k`` for choosing between models: (means, per-user arrays).

    Each held-out item is ranked over all items the user has not seen by its own score,
    losing every tie and every NaN (:func:`tastemaker.eval.metrics.pessimistic_ranks`).
    Unlike :func:`evaluate_model`, whose lists break ties by the lower item code, nothing
    here depends on item codes: constant scores rank the item last, NaN never finds it. For
    a model without ties at the held-out items the values equal :func:`evaluate_model`'s.
    ``model`` may also be a :class:`~tastemaker.pipeline.Pipeline` (ranked from its lists)."""
    users, truth = truth_from_pairs(heldout["user"].to_numpy(), heldout["item"].to_numpy(), len(model.items_))
    if not isinstance(model, Recommender):  # a pipeline: ranks from its lists
        return _list_selection_metrics(model, users, truth, k)
    item_ids = list(model.items_.ids)
    seen = model.user_items_
    parts: list[dict[str, np.ndarray]] = []
    size = score_batch_size(len(item_ids))
    for start in range(0, len(users), size):
        batch = users[start : start + size]
        scores = model.score([Query(user=u) for u in model.users_.decode(batch)], item_ids)
        history = seen[batch]
        scores[np.repeat(np.arange(len(batch)), np.diff(history.indptr)), history.indices] = -np.inf
        relevant = truth[start : start + size]
        rows = np.repeat(np.arange(len(batch)), np.diff(relevant.indptr))
        parts.append(accuracy_from_ranks(pessimistic_ranks(scores, rows, relevant.indices), relevant, k))
    names = [f"hr@{k}", f"recall@{k}", f"ndcg@{k}", f"mrr@{k}"]
    per_user = {n: np.concatenate([p[n] for p in parts]) if parts else np.zeros(0) for n in names}
    return {n: float(v.mean()) if len(v) else 0.0 for n, v in per_user.items()}, per_user


def _list_selection_metrics(pipeline: Any, users: np.ndarray, truth: sp.csr_matrix, k: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """:func:`selection_metrics` for a pipeline, which ranks lists rather than scoring every
    item: a held-out item's rank is the number of items in its list scoring at least as high
    (it loses every tie), and an item outside the top-``k`` list, or scored NaN, is not found."""
    from tastemaker.types import Query

    ranks = np.full(len(truth.indices), np.inf)
    ids = pipeline.users_.decode(users)
    step = 256
    for start in range(0, len(users), step):
        lists = pipeline.recommend([Query(user=str(u)) for u in ids[start : start + step]], k)
        for row, items in enumerate(lists):
            user = start + row
            scores = items.scores.astype(np.float64)
            for slot in range(truth.indptr[user], truth.indptr[user + 1]):
                where = np.flatnonzero(items.item_codes == truth.indices[slot])
                if len(where) and np.isfinite(scores[where[0]]):
                    ranks[slot] = float(((scores >= scores[where[0]]) | np.isnan(scores)).sum())
    names = [f"hr@{k}", f"recall@{k}", f"ndcg@{k}", f"mrr@{k}"]
    per_user = accuracy_from_ranks(ranks, truth, k)
    return {n: float(per_user[n].mean()) if len(per_user[n]) else 0.0 for n in names}, per_user


def run_protocol(
    dataset: Dataset,
    models: Mapping[str, tuple[type[Recommender], Mapping[str, Sequence[Any]]]],
    options: FitOptions | None = None,
    *,
    split: Split | None = None,
    ks: Sequence[int] = KS,
    progress: bool = True,
    trials: int = 0,
) -> ProtocolResult:
    """Tune each model on validation, refit on train+validation, report on test.

    ``models`` maps a display name to (model class, parameter grid). With ``trials`` > 0 the
    tuning is a search (:func:`tastemaker.tuning.search`, Optuna TPE, seeded) of that many
    trials over the model's ``search_space``, starting from the grid's points (the grid's
    values for parameters outside the space stay fixed); else every point of the grid is
    tried. Either way each trial is in the result's ``tuning`` history."""
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
        best: tuple[float, dict[str, Any], dict[str, float]] | None = None
        configs = param_grid(grid) or [{}]
        searching = trials > 0 and bool(cls.search_space)

        def trial(params: dict[str, Any]) -> float:
            nonlocal best
            model = cls(**params).fit(split.train, options)
            means, _ = selection_metrics(model, split.validation, k=10)
            tuning.append({"params": params, TUNE_METRIC: means[TUNE_METRIC]})
            if progress and not searching:
                print(f"  {name} {params}: validation {TUNE_METRIC} = {means[TUNE_METRIC]:.4f}", flush=True)
            if best is None or means[TUNE_METRIC] > best[0]:
                best = (means[TUNE_METRIC], params, means)
            return means[TUNE_METRIC]

        if searching:
            from tastemaker.tuning import search

            fixed = {k: v for k, v in configs[0].items() if k not in cls.search_space}
            search(trial, cls.search_space, trials, seed=options.seed, fixed=fixed, start=configs[: max(1, trials // 3)],
                   progress=progress, label=f"tuning {name}")
        else:
            for params in configs:
                trial(params)
        assert best is not None
        _, best_params, best_valid = best
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


def run_pipeline_protocol(
    dataset: Dataset,
    pipeline: Any,
    options: FitOptions | None = None,
    *,
    split: Split | None = None,
    ks: Sequence[int] = KS,
    progress: bool = True,
    alone: bool = True,
    trials: int = 0,
) -> ProtocolResult:
    """The reference protocol for a :class:`~tastemaker.pipeline.Pipeline`: fitted on train +
    validation (its stages as configured), reported on the test item; with ``alone``, each
    of its sources also as a one-source pipeline, side by side. Validation metrics are the
    pessimistic selection metrics of a fit on train alone. With ``trials``, each model source
    is first tuned alone on the validation split (:func:`tastemaker.tuning.tune_pipeline`);
    every trial goes into the pipeline row's ``tuning``."""
    from tastemaker.pipeline import Pipeline

    options = options or FitOptions(progress=False)
    split = split or leave_one_out(dataset)
    tuning: list[dict[str, Any]] = []
    if trials:
        from tastemaker.tuning import tune_pipeline

        pipeline, tuning = tune_pipeline(pipeline, split.train, split.validation, trials, options, progress=progress)
    train_full = split.train_with_validation()
    categories = dataset.category_matrix()
    features = categories if categories.shape[1] and categories.getnnz() >= 0.5 * dataset.n_items else None
    rows: list[tuple[str, Any]] = [(f"pipeline ({pipeline.name})", pipeline)]
    if alone and len(pipeline.sources) > 1:
        rows += [(f"{s.name} alone", Pipeline([type(s)(s.config, name=s.name)])) for s in pipeline.sources]
    results = []
    for label, planned in rows:
        if progress:
            print(f"  {label} ...", flush=True)
        validation, _ = selection_metrics(planned.clone().fit(split.train, options), split.validation, k=10)
        with peak_rss() as peak:
            start = time.perf_counter()
            fitted = planned.clone().fit(train_full, options)
            fit_seconds = time.perf_counter() - start
        means, per_user = evaluate_model(fitted, split.test, ks=ks, item_features=features, progress=progress)
        results.append(ModelResult(
            model=label, params={"stages": fitted.describe()}, validation=validation, test=means,
            ndcg10_ci=bootstrap_ci(per_user["ndcg@10"], seed=options.seed), fit_seconds=fit_seconds,
            peak_rss_mb=peak.megabytes, tuning=[t for t in tuning if label.startswith("pipeline") or label == f"{t['source']} alone"],
        ))
    return ProtocolResult(
        dataset=dataset.name, split=split.name, n_users=dataset.n_users, n_items=dataset.n_items,
        n_interactions=dataset.n_interactions, n_test_users=int(split.test["user"].nunique()), results=results,
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
