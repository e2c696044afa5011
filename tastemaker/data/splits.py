"""Train / validation / test splits.

Every split returns a :class:`Split`: ``train`` is a :class:`Dataset` with the full
vocabularies (codes never change between splits), ``validation`` and ``test`` are interaction
frames with the same columns. :meth:`Split.train_with_validation` is what the reference
protocol refits on before scoring the test set.

* :func:`leave_one_out` — temporal leave-one-out: each user's last event is the test item,
  the second-last the validation item. Users with fewer than ``min_events`` (default 3)
  events stay entirely in train and are not evaluated.
* :func:`temporal_cut` — one global time cut (and an optional earlier validation cut);
  only users and items seen in train are evaluated.
* :func:`random_holdout` — a seeded random fraction of each user's events.
* :func:`cold_start_items` — items first seen after a cut are held out entirely: train has
  every event before the cut, test has the events on the new items
  (:func:`items_first_seen_after` names those items).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tastemaker.data.dataset import Dataset


@dataclass(frozen=True)
class Split:
    """Training data plus held-out validation and test interactions (encoded frames)."""

    train: Dataset
    validation: pd.DataFrame
    test: pd.DataFrame
    name: str = "split"

    def train_with_validation(self) -> Dataset:
        """Train plus the validation events: what a tuned model is refit on for the test."""
        return self.train.with_interactions(pd.concat([self.train.interactions, self.validation]))

    def __repr__(self) -> str:
        return (
            f"Split({self.name}: train={len(self.train.interactions)}, "
            f"validation={len(self.validation)}, test={len(self.test)})"
        )


def leave_one_out(dataset: Dataset, min_events: int = 3) -> Split:
    """Temporal leave-one-out: per user, last event -> test, second-last -> validation."""
    inter = dataset.interactions  # sorted by (user, timestamp), ties in input order
    users = inter["user"].to_numpy()
    counts = np.bincount(users, minlength=dataset.n_users)
    position_from_end = counts[users] - 1 - inter.groupby("user", sort=False).cumcount().to_numpy()
    eligible = counts[users] >= min_events
    test_mask = eligible & (position_from_end == 0)
    valid_mask = eligible & (position_from_end == 1)
    train = dataset.with_interactions(inter[~(test_mask | valid_mask)])
    return Split(train, inter[valid_mask].reset_index(drop=True), inter[test_mask].reset_index(drop=True), "leave-one-out")


def temporal_cut(dataset: Dataset, test_fraction: float = 0.1, validation_fraction: float = 0.1) -> Split:
    """Global time cuts at quantiles of the timestamps: the newest ``test_fraction`` of events
    is test, the ``validation_fraction`` before it validation, the rest train. Held-out events
    of users or items absent from train are dropped (nothing to rank them from)."""
    _check_fractions(test_fraction, validation_fraction)
    inter = dataset.interactions
    ts = inter["timestamp"].to_numpy()
    test_cut = np.quantile(ts, 1.0 - test_fraction)
    valid_cut = np.quantile(ts, 1.0 - test_fraction - validation_fraction)
    train_rows = inter[ts < valid_cut]
    valid_rows = inter[(ts >= valid_cut) & (ts < test_cut)]
    test_rows = inter[ts >= test_cut]
    return _split_known(dataset, train_rows, valid_rows, test_rows, "temporal-cut")


def random_holdout(
    dataset: Dataset, test_fraction: float = 0.2, validation_fraction: float = 0.0, seed: int = 42
) -> Split:
    """A seeded random holdout of events (not users): the same seed gives the same split."""
    _check_fractions(test_fraction, validation_fraction)
    inter = dataset.interactions
    draw = np.random.default_rng(seed).random(len(inter))
    test_mask = draw < test_fraction
    valid_mask = (draw >= test_fraction) & (draw < test_fraction + validation_fraction)
    return _split_known(dataset, inter[~(test_mask | valid_mask)], inter[valid_mask], inter[test_mask], "random")


def cold_start_items(dataset: Dataset, cut: float | None = None, quantile: float = 0.9) -> Split:
    """Hold out the items first seen at or after ``cut`` (default: the ``quantile`` of event
    times). Train keeps every event before the cut, so cold items have no training events;
    test holds the events on cold items by users who are in train. Validation is empty."""
    inter = dataset.interactions
    ts = inter["timestamp"].to_numpy()
    if cut is None:
        cut = float(np.quantile(ts, quantile))
    cold = items_first_seen_after(dataset, cut)
    is_cold = np.isin(inter["item"].to_numpy(), cold)
    train_rows = inter[(ts < cut) & ~is_cold]
    test_rows = inter[is_cold]
    test_rows = test_rows[np.isin(test_rows["user"].to_numpy(), train_rows["user"].unique())]
    return Split(
        dataset.with_interactions(train_rows), inter.iloc[:0].copy(), test_rows.reset_index(drop=True), "cold-start-items"
    )


def items_first_seen_after(dataset: Dataset, cut: float) -> np.ndarray:
    """Codes (sorted) of the items whose first event is at or after ``cut``: the new items of a
    time cut. Items without events are not among them."""
    first_seen = dataset.interactions.groupby("item")["timestamp"].min()
    return np.sort(first_seen.index[first_seen.to_numpy() >= cut].to_numpy())


def _split_known(
    dataset: Dataset, train: pd.DataFrame, valid: pd.DataFrame, test: pd.DataFrame, name: str
) -> Split:
    users = train["user"].unique()
    items = train["item"].unique()

    def known(frame: pd.DataFrame) -> pd.DataFrame:
        keep = np.isin(frame["user"].to_numpy(), users) & np.isin(frame["item"].to_numpy(), items)
        return frame[keep].reset_index(drop=True)

    return Split(dataset.with_interactions(train), known(valid), known(test), name)


def _check_fractions(test_fraction: float, validation_fraction: float) -> None:
    if not (0 < test_fraction < 1 and 0 <= validation_fraction < 1 and test_fraction + validation_fraction < 1):
        raise ValueError(
            f"fractions must satisfy 0 < test ({test_fraction}) and test + validation "
            f"({test_fraction + validation_fraction}) < 1"
        )
