"""Cold-start and long-tail evaluation: one split, per-slice metrics, a plot.

The protocol (issue #5 item 6) asks how a model does on the items an ID-only model cannot know:
items first seen after a time cut, or held out of training entirely, and the long tail.

:func:`cold_start_split` builds it:

* **test cases** — temporal leave-one-out (:func:`~tastemaker.data.splits.leave_one_out`): each
  user's last event is the target. Users with fewer than ``min_events`` events stay in train
  only, and so does a user left with no training event once cold-item events are removed.
* **cold items** — ``how="time"``: the items whose first event is at or after the ``quantile``
  of all event times ("items first seen after a time cut"); ``how="random"``: a seeded random
  ``share`` of the items that have events ("held out of training entirely"). *Every* event on a
  cold item is removed from train, so cold items have no training events; they stay in the
  vocabulary and the catalog, so every model still ranks them (content models can score them).
* **warm items** — items with at least one training event. **Head**: the ``ceil(head_share x
  warm)`` most popular warm items by training popularity (distinct users), ties broken by the
  lower item code; **long tail**: the other warm items. An item that is neither cold nor warm
  (its only events are test targets, or it has none) belongs to no item slice: its test cases
  count in ``"all"`` only.

:func:`evaluate_slices` ranks the full catalog for every test user (the user's training items
excluded) and reports, per slice of test cases (by the target's item slice): the number of
cases, HR@k, NDCG@k and MRR@k, and ``cold_exposure@k``, the share of the slice's filled top-k
slots that hold cold items (for ``"all"``: of every user's slots). An empty slice has NaN
metrics. :func:`plot_slices` draws NDCG@k per model and slice, one panel per dataset.

Datasets whose formats have no time (S3-Rec, UniSRec) store each event's position in its user's
sequence as the timestamp; a "time" cut there cuts on positions, so ``how="time"`` warns and
``how="random"`` is the meaningful choice.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from tastemaker.data.dataset import Dataset
from tastemaker.data.splits import items_first_seen_after, leave_one_out
from tastemaker.errors import DataError, MissingExtraError, NotFittedError
from tastemaker.eval.metrics import accuracy_per_user, truth_from_pairs
from tastemaker.models.base import Recommender

SLICES: tuple[str, ...] = ("all", "head", "long-tail", "cold")
ColdHow = Literal["time", "random"]
#: dataset -> model -> slice -> metric -> value (what :func:`plot_slices` draws)
SliceResults = Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]]


@dataclass(frozen=True, eq=False)
class ColdStartSplit:
    """Training data, one test case per evaluated user, and the item slices.

    ``train`` keeps the full vocabularies and catalog; ``test`` has one row per evaluated user
    (the interaction columns; ``user`` and ``item`` are codes, sorted by user);
    ``cold_items``, ``head_items`` and ``tail_items`` are sorted item codes.
    """

    train: Dataset
    test: pd.DataFrame
    cold_items: np.ndarray
    head_items: np.ndarray
    tail_items: np.ndarray
    name: str = "cold-start"

    def item_slice(self, items: np.ndarray) -> np.ndarray:
        """The slice name of each item code: "head", "long-tail", "cold" or "" (none)."""
        items = np.asarray(items)
        out = np.full(len(items), "", dtype=object)
        out[np.isin(items, self.head_items)] = "head"
        out[np.isin(items, self.tail_items)] = "long-tail"
        out[np.isin(items, self.cold_items)] = "cold"
        return out

    def summary(self) -> dict[str, int]:
        """Counts: items per slice, test cases per slice, training events."""
        cases = self.item_slice(self.test["item"].to_numpy())
        return {
            "items": self.train.n_items,
            "cold_items": len(self.cold_items),
            "head_items": len(self.head_items),
            "tail_items": len(self.tail_items),
            "train_events": self.train.n_interactions,
            "test_cases": len(self.test),
            **{f"test_{name}": int((cases == name).sum()) for name in SLICES[1:]},
        }

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"ColdStartSplit({self.name}: train={s['train_events']}, test={s['test_cases']} "
            f"(head {s['test_head']}, long-tail {s['test_long-tail']}, cold {s['test_cold']}), "
            f"cold items={s['cold_items']})"
        )


def cold_start_split(
    dataset: Dataset,
    *,
    how: ColdHow = "time",
    quantile: float = 0.9,
    share: float = 0.1,
    seed: int = 0,
    min_events: int = 3,
    head_share: float = 0.2,
) -> ColdStartSplit:
    """Leave-one-out test cases with cold items held out of train (see the module doc).

    ``quantile`` is used with ``how="time"``, ``share`` and ``seed`` with ``how="random"``
    (the same seed gives the same cold items). Raises ValueError naming a parameter out of range.
    """
    _check_open_unit("quantile", quantile)
    _check_open_unit("share", share)
    _check_open_unit("head_share", head_share)
    if min_events < 2:
        raise ValueError(f"min_events must be >= 2 (a training event and a target), got {min_events}")
    inter = dataset.interactions
    if how == "time":
        if _timestamps_are_positions(inter):
            warnings.warn(
                f"{dataset.name}: timestamps are sequence positions (the format has no time), so "
                "how='time' cuts on positions; how='random' holds out items without that bias",
                UserWarning,
                stacklevel=2,
            )
        cut = float(np.quantile(inter["timestamp"].to_numpy(), quantile))
        cold = items_first_seen_after(dataset, cut)
    elif how == "random":
        with_events = np.unique(inter["item"].to_numpy())
        n_cold = max(1, round(share * len(with_events)))
        cold = np.sort(np.random.default_rng(seed).choice(with_events, size=n_cold, replace=False))
    else:
        raise ValueError(f"how must be 'time' or 'random', got {how!r}")

    # Reused: leave_one_out picks the targets and eligible users; its train + validation is
    # "every event but the targets", from which the cold items' events are then removed.
    loo = leave_one_out(dataset, min_events=min_events)
    train_rows = loo.train_with_validation().interactions
    train_rows = train_rows[~np.isin(train_rows["item"].to_numpy(), cold)]
    test = loo.test
    has_history = np.isin(test["user"].to_numpy(), train_rows["user"].unique())
    # A user whose earlier events were all on cold items has nothing to rank from: they are
    # not evaluated, and their (warm) target goes back to train like any short user's events.
    returned = test[~has_history & ~np.isin(test["item"].to_numpy(), cold)]
    train = dataset.with_interactions(pd.concat([train_rows, returned]))
    test = test[has_history].sort_values("user", kind="stable").reset_index(drop=True)
    if test.empty:
        raise DataError(f"{dataset.name}: no user has {min_events} events with one left in train: nothing to evaluate")

    popularity = train.item_popularity()
    warm = np.flatnonzero(popularity > 0)
    ranked = warm[np.lexsort((warm, -popularity[warm]))]  # most popular first, ties: lower code
    n_head = math.ceil(head_share * len(warm))
    name = f"cold-start-{how}"
    return ColdStartSplit(train, test, cold.astype(np.int64), np.sort(ranked[:n_head]), np.sort(ranked[n_head:]), name)


def evaluate_slices(
    model: Recommender,
    split: ColdStartSplit,
    *,
    k: int = 10,
    slices: Sequence[str] = SLICES,
) -> dict[str, dict[str, float]]:
    """Per slice: ``n`` (test cases), ``hr@k``, ``ndcg@k``, ``mrr@k`` and ``cold_exposure@k``.

    ``model`` is any :class:`Recommender` fitted on ``split.train``; it ranks every catalog item
    except the user's training items. Metrics of an empty slice are NaN."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    unknown = [s for s in slices if s not in SLICES]
    if unknown:
        raise ValueError(f"unknown slice(s) {unknown}; choose from {SLICES}")
    if not model.is_fitted:
        raise NotFittedError(f"{type(model).__name__} is not fitted: fit it on split.train first")
    n_items = len(model.items_)
    if n_items != split.train.n_items:
        raise ValueError(f"the model knows {n_items} items but the split has {split.train.n_items}: fit it on split.train")
    users, truth = truth_from_pairs(split.test["user"].to_numpy(), split.test["item"].to_numpy(), n_items)
    if len(users) != len(split.test):
        raise ValueError("split.test must hold one row per user")
    targets = truth.indices  # one relevant item per row, rows in user order
    topk = model.recommend_codes(users, n=k)
    per_user = accuracy_per_user(topk, truth, k)
    case_slice = split.item_slice(targets)
    shown_cold = np.isin(topk, split.cold_items) & (topk >= 0)
    filled = topk >= 0
    out: dict[str, dict[str, float]] = {}
    for name in slices:
        mask = np.ones(len(users), dtype=bool) if name == "all" else case_slice == name
        n = int(mask.sum())
        row: dict[str, float] = {"n": n}
        for metric in (f"hr@{k}", f"ndcg@{k}", f"mrr@{k}"):
            row[metric] = float(per_user[metric][mask].mean()) if n else math.nan
        slots = int(filled[mask].sum())
        row[f"cold_exposure@{k}"] = float(shown_cold[mask].sum() / slots) if slots else math.nan
        out[name] = row
    return out


def slices_markdown(results: Mapping[str, Mapping[str, Mapping[str, float]]], k: int = 10) -> str:
    """A Markdown table of :func:`evaluate_slices` results per model: one row per model and
    slice (n, HR, NDCG, MRR, cold exposure)."""
    metrics = ("n", f"hr@{k}", f"ndcg@{k}", f"mrr@{k}", f"cold_exposure@{k}")
    lines = ["| model | slice | " + " | ".join(metrics) + " |", "|" + "---|" * (len(metrics) + 2)]
    for model, per_slice in results.items():
        for name, row in per_slice.items():
            cells = [str(int(row["n"])), *(f"{row[m]:.4f}" for m in metrics[1:])]
            lines.append(f"| {model} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_slices(results: SliceResults, path: str | Path, *, metric: str | None = None) -> Path:
    """Grouped bars of ``metric`` (default: the slices' ``ndcg@k``) per model within each slice,
    one panel per dataset; written to ``path`` (PNG). Needs matplotlib (the ``plot`` extra)."""
    try:
        import matplotlib
        import matplotlib.patches

        matplotlib.use("Agg")  # files only: no display on servers
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingExtraError("matplotlib", "plot") from exc
    if not any(results.values()):
        raise ValueError("plot_slices needs at least one dataset's results")
    path = Path(path)
    datasets = list(results)
    # One model order and colour for every panel, so a model reads the same everywhere.
    models = list(dict.fromkeys(m for per_model in results.values() for m in per_model))
    colours = {m: f"C{i % 10}" for i, m in enumerate(models)}
    width = 0.8 / len(models)
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        per_model = results[dataset]
        slices = list(dict.fromkeys(s for m in per_model for s in per_model[m]))
        name = metric or _first_key(per_model, "ndcg@")
        for i, model in enumerate(models):
            if model not in per_model:
                continue
            values = [per_model[model].get(s, {}).get(name, math.nan) for s in slices]
            positions = np.arange(len(slices)) + (i - (len(models) - 1) / 2) * width
            ax.bar(positions, np.nan_to_num(values, nan=0.0), width, color=colours[model], label=model)
        ax.set_xticks(np.arange(len(slices)), slices)
        ax.set_title(dataset)
        ax.set_ylabel(name)
    handles = [matplotlib.patches.Patch(color=colours[m], label=m) for m in models]
    axes[0][-1].legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _first_key(per_model: Mapping[str, Mapping[str, Mapping[str, float]]], prefix: str) -> str:
    for per_slice in per_model.values():
        for row in per_slice.values():
            for key in row:
                if key.startswith(prefix):
                    return key
    raise ValueError(f"no metric starting with {prefix!r} in the results")


def _timestamps_are_positions(inter: pd.DataFrame) -> bool:
    """True when every user's timestamps are 0, 1, 2, ... (formats without time)."""
    if inter.empty:
        return False
    position = inter.groupby("user", sort=False).cumcount().to_numpy()
    return bool(np.array_equal(inter["timestamp"].to_numpy(), position))


def _check_open_unit(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value}")
