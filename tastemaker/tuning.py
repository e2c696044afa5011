"""Hyperparameter search: each model declares its search space; :func:`search` explores it
with Optuna's TPE sampler (the ``tune`` extra) on a budget of trials.

    EASE.search_space == {"reg": Float(1.0, 20_000.0, log=True)}
    best, trials = search(lambda p: EASE(**p).fit(train), EASE.search_space, objective, trials=30)

The default grids of :mod:`tastemaker.config` hold the values that won on the datasets we
benchmark; a search finds others where they lose (on a dataset we did not benchmark, ALS's
grid lost 7% and ItemKNN's 11% to a wider search, whose winners, alpha = 1 and k = 500, lay
outside the grids). This module imports nothing of the models, so they can import it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tastemaker.errors import MissingExtraError


@dataclass(frozen=True)
class Float:
    """A float in [low, high], log-uniform with ``log``."""

    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class Int:
    """An int in [low, high], log-uniform with ``log``."""

    low: int
    high: int
    log: bool = False


@dataclass(frozen=True)
class Choice:
    """One of ``values``."""

    values: tuple[Any, ...]


Space = Mapping[str, Float | Int | Choice]


def optuna_available() -> bool:
    try:
        import optuna  # noqa: F401
    except ImportError:
        return False
    return True


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise MissingExtraError("optuna", "tune") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def suggest(trial: Any, space: Space, prefix: str = "") -> dict[str, Any]:
    """One point of ``space`` from an Optuna trial (names prefixed with ``prefix``)."""
    params: dict[str, Any] = {}
    for name, dim in space.items():
        key = prefix + name
        if isinstance(dim, Float):
            params[name] = trial.suggest_float(key, dim.low, dim.high, log=dim.log)
        elif isinstance(dim, Int):
            params[name] = trial.suggest_int(key, dim.low, dim.high, log=dim.log)
        elif isinstance(dim, Choice):
            params[name] = trial.suggest_categorical(key, list(dim.values))
        else:
            raise TypeError(f"{key}: not a search dimension: {dim!r}")
    return params


def search(
    evaluate: Callable[[dict[str, Any]], float],
    space: Space,
    trials: int,
    *,
    seed: int = 42,
    fixed: Mapping[str, Any] | None = None,
    start: Sequence[Mapping[str, Any]] = (),
    timeout: float | None = None,
    progress: bool = True,
    label: str = "search",
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Maximise ``evaluate(params)`` over ``space`` (plus the ``fixed`` params) in at most
    ``trials`` trials (and ``timeout`` seconds); ``start`` points (e.g. the default grid's
    winners) are tried first. Returns (best params, every trial as {"trial", "params",
    "value", "seconds"}). Seeded TPE: the same seed explores the same points."""
    optuna = _optuna()
    fixed = dict(fixed or {})
    if not space:  # nothing to search: one evaluation
        value = evaluate(fixed)
        return fixed, [{"trial": 0, "params": fixed, "value": value, "seconds": 0.0}]
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    for point in start:
        study.enqueue_trial({k: v for k, v in point.items() if k in space})

    def objective(trial: Any) -> float:
        value = float(evaluate(fixed | suggest(trial, space)))
        return value if math.isfinite(value) else float("-inf")

    from tqdm.auto import tqdm

    with tqdm(total=trials, desc=label, unit="trial", disable=not progress) as bar:

        def tick(study: Any, trial: Any) -> None:
            bar.update(1)
            bar.set_postfix(best=f"{study.best_value:.4f}")

        study.optimize(objective, n_trials=trials, timeout=timeout, callbacks=[tick])
    history = [
        {"trial": t.number, "params": fixed | dict(t.params), "value": t.value,
         "seconds": (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None}
        for t in study.trials
    ]
    return fixed | dict(study.best_params), history


def tune_pipeline(
    pipeline: Any,
    train: Any,
    validation: Any,
    trials: int,
    options: Any,
    *,
    progress: bool = True,
) -> tuple[Any, list[dict[str, Any]]]:
    """A copy of ``pipeline`` (unfitted) whose model sources carry the params that won a
    ``trials``-trial :func:`search` of their model's ``search_space``, each scored alone on
    ``validation`` after a fit on ``train`` (pessimistic NDCG@10, like every selection). The
    configured params are tried first, so the search can only keep or beat them on
    validation. Stages without a search space (popularity, fresh, transitions, the ranker,
    rerankers) keep their config: searching the ranker would refit every source per trial.
    Returns (pipeline, every trial as {"source", "trial", "params", "value", "seconds"})."""
    from tastemaker.config import model_class
    from tastemaker.eval.protocols import selection_metrics
    from tastemaker.pipeline.sources import ModelSource

    planned = pipeline.clone()
    history: list[dict[str, Any]] = []
    for position, source in enumerate(planned.sources):
        if not isinstance(source, ModelSource):
            continue
        cls = model_class(source.config.model)
        configured = dict(source.config.params)
        space = dict(getattr(cls, "search_space", {}) or {})
        if not space or trials <= 0:
            continue

        def value(params: dict[str, Any], cls: Any = cls) -> float:
            return float(selection_metrics(cls(**params).fit(train, options), validation)[0]["ndcg@10"])

        best, found = search(value, space, trials, seed=getattr(options, "seed", 42), start=[configured],
                             fixed={k: v for k, v in configured.items() if k not in space}, progress=progress,
                             label=f"tuning {source.name}")
        history += [{"source": source.name, **trial} for trial in found]
        config = type(source.config)(**(source.config.model_dump() | {"params": best}))
        planned.sources[position] = type(source)(config, name=source.name)
    return planned, history
