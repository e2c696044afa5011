"""Train / validation / test splits on tiny hand-made datasets (known answers)."""

import numpy as np
import pandas as pd
import pytest

from tastemaker.data.dataset import Dataset
from tastemaker.data.splits import cold_start_items, leave_one_out, random_holdout, temporal_cut
from tastemaker.testing.synthetic import checkerboard


def events(rows) -> Dataset:
    return Dataset.from_frames(pd.DataFrame(rows, columns=["user", "item", "timestamp"]))


def interleaved() -> Dataset:
    """600 events at t = 0..599 by 30 users in random order; items i30..i39 appear only from
    t = 450 on, so a late cut has cold items and every user is active throughout."""
    rng = np.random.default_rng(0)
    rows = []
    for t in range(600):
        n_items = 40 if t >= 450 else 30
        rows.append((f"u{rng.integers(30)}", f"i{rng.integers(n_items)}", t))
    return events(rows)


def decoded(data: Dataset, frame: pd.DataFrame) -> list[tuple[str, str, int]]:
    users = data.users.decode(frame["user"].to_numpy())
    items = data.items.decode(frame["item"].to_numpy())
    return sorted(zip(users.tolist(), items.tolist(), frame["timestamp"].tolist(), strict=True))


# ---------------------------------------------------------------------- leave-one-out
@pytest.fixture
def tiny() -> Dataset:
    return events(
        [
            ("a", "i1", 1),
            ("a", "i2", 2),
            ("b", "i2", 5),  # b's rows are out of time order in the input
            ("a", "i3", 3),
            ("b", "i1", 1),
            ("a", "i4", 4),
            ("b", "i3", 3),
            ("c", "i1", 7),  # c has only two events
            ("c", "i4", 8),
        ]
    )


def test_leave_one_out_known_answer(tiny):
    split = leave_one_out(tiny)
    # a: i1@1 i2@2 | validation i3@3 | test i4@4
    # b (sorted by time): i1@1 | validation i3@3 | test i2@5
    # c: two events < min_events=3 -> all in train, not evaluated
    assert decoded(tiny, split.test) == [("a", "i4", 4), ("b", "i2", 5)]
    assert decoded(tiny, split.validation) == [("a", "i3", 3), ("b", "i3", 3)]
    assert decoded(tiny, split.train.interactions) == [
        ("a", "i1", 1),
        ("a", "i2", 2),
        ("b", "i1", 1),
        ("c", "i1", 7),
        ("c", "i4", 8),
    ]
    # the vocabularies never shrink
    assert split.train.users == tiny.users and split.train.items == tiny.items
    assert list(split.test.columns) == list(tiny.interactions.columns)


def test_leave_one_out_min_events(tiny):
    split = leave_one_out(tiny, min_events=2)
    # now c (2 events) is evaluated too: i1 -> validation, i4 -> test, nothing left to train on
    assert decoded(tiny, split.test) == [("a", "i4", 4), ("b", "i2", 5), ("c", "i4", 8)]
    assert ("c", "i1", 7) in decoded(tiny, split.validation)
    strict = leave_one_out(tiny, min_events=4)
    # only a has >= 4 events
    assert decoded(tiny, strict.test) == [("a", "i4", 4)]


def test_leave_one_out_ties_keep_input_order():
    data = events([("u", "x", 1), ("u", "y", 9), ("u", "z", 9)])
    split = leave_one_out(data)
    # y and z share the last timestamp; z came later in the input, so it is the test item
    assert decoded(data, split.test) == [("u", "z", 9)]
    assert decoded(data, split.validation) == [("u", "y", 9)]


def test_train_with_validation(tiny):
    split = leave_one_out(tiny)
    full = split.train_with_validation()
    # train (5 events) + validation (2 events); test events still excluded
    assert full.n_interactions == 7
    assert decoded(tiny, full.interactions) == sorted(
        decoded(tiny, split.train.interactions) + decoded(tiny, split.validation)
    )
    inter = full.interactions
    order = np.lexsort((inter["timestamp"].to_numpy(), inter["user"].to_numpy()))
    assert order.tolist() == list(range(len(inter)))  # sorted by (user, timestamp)
    assert split.train.n_interactions == 5  # the split itself is unchanged


# ---------------------------------------------------------------------- temporal cut
def test_temporal_cut_known_answer():
    rows = []
    # 20 events at t = 0..19; users a and b alternate over items i0..i3 in t < 16
    for t in range(16):
        rows.append(("a" if t % 2 == 0 else "b", f"i{t % 4}", t))
    rows += [
        ("a", "i1", 16),
        ("newuser", "i0", 17),  # user unseen in train -> dropped from held-out
        ("b", "i0", 18),
        ("a", "newitem", 19),  # item unseen in train -> dropped from held-out
    ]
    data = events(rows)
    split = temporal_cut(data, test_fraction=0.2, validation_fraction=0.1)
    # quantiles of 0..19: 0.8 -> 15.2 (test t >= 15.2), 0.7 -> 13.3 (validation 13.3 <= t < 15.2)
    assert split.train.interactions["timestamp"].max() == 13
    assert split.train.n_interactions == 14
    assert decoded(data, split.validation) == [("a", "i2", 14), ("b", "i3", 15)]
    # test candidates 16..19: newuser@17 and newitem@19 are dropped
    assert decoded(data, split.test) == [("a", "i1", 16), ("b", "i0", 18)]


def test_temporal_cut_no_train_event_is_newer_than_test():
    data = interleaved()
    split = temporal_cut(data, test_fraction=0.25, validation_fraction=0.1)
    assert len(split.test) > 0
    train_ts = split.train.interactions["timestamp"]
    assert train_ts.max() < split.test["timestamp"].min()
    if len(split.validation):
        assert train_ts.max() < split.validation["timestamp"].min()
        assert split.validation["timestamp"].max() < split.test["timestamp"].min()
    train_users = set(split.train.interactions["user"])
    train_items = set(split.train.interactions["item"])
    assert set(split.test["user"]) <= train_users
    assert set(split.test["item"]) <= train_items


@pytest.mark.parametrize(("test", "valid"), [(0.0, 0.1), (1.0, 0.0), (0.6, 0.5), (0.2, -0.1)])
def test_bad_fractions_raise(test, valid):
    data = checkerboard(10, 10)
    with pytest.raises(ValueError, match="fractions"):
        temporal_cut(data, test_fraction=test, validation_fraction=valid)
    with pytest.raises(ValueError, match="fractions"):
        random_holdout(data, test_fraction=test, validation_fraction=valid)


# ---------------------------------------------------------------------- random holdout
def keys(frame: pd.DataFrame) -> set[tuple[int, int, int]]:
    return set(zip(frame["user"], frame["item"], frame["timestamp"], strict=True))


def test_random_holdout_is_seeded_and_partitions_all_events():
    data = checkerboard()  # 40 users x 19 events = 760 events, every (user, item, t) unique
    assert data.n_interactions == 760
    first = random_holdout(data, test_fraction=0.2, validation_fraction=0.1, seed=7)
    again = random_holdout(data, test_fraction=0.2, validation_fraction=0.1, seed=7)
    other = random_holdout(data, test_fraction=0.2, validation_fraction=0.1, seed=8)
    pd.testing.assert_frame_equal(first.test, again.test)
    pd.testing.assert_frame_equal(first.validation, again.validation)
    assert keys(first.test) != keys(other.test)

    train, valid, test = keys(first.train.interactions), keys(first.validation), keys(first.test)
    assert not (train & valid) and not (train & test) and not (valid & test)
    # every user and item has many events, so nothing is dropped: the three parts cover all
    assert train | valid | test == keys(data.interactions)
    # fractions: 760 * 0.2 = 152 expected in test (sd ~ 11), 76 in validation (sd ~ 8)
    assert 110 <= len(test) <= 195
    assert 45 <= len(valid) <= 110


def test_random_holdout_without_validation():
    data = checkerboard()
    split = random_holdout(data, test_fraction=0.5, seed=1)
    assert len(split.validation) == 0
    assert 300 <= len(split.test) <= 460  # 380 expected


# ---------------------------------------------------------------------- cold-start items
def test_cold_start_items_known_answer():
    data = events(
        [
            ("a", "old1", 1),
            ("b", "old1", 2),
            ("a", "old2", 3),
            ("b", "old2", 4),
            ("a", "new1", 10),
            ("b", "old1", 11),  # a warm item after the cut: in neither train nor test
            ("b", "new1", 12),
            ("c", "new2", 13),  # c has no training events -> not evaluated
            ("a", "new2", 14),
        ]
    )
    split = cold_start_items(data, cut=10)
    assert decoded(data, split.train.interactions) == [
        ("a", "old1", 1),
        ("a", "old2", 3),
        ("b", "old1", 2),
        ("b", "old2", 4),
    ]
    assert decoded(data, split.test) == [("a", "new1", 10), ("a", "new2", 14), ("b", "new1", 12)]
    assert len(split.validation) == 0


def test_cold_start_items_default_cut():
    data = interleaved()
    split = cold_start_items(data, quantile=0.8)
    assert len(split.test) > 0
    train_items = set(split.train.interactions["item"])
    test_items = set(split.test["item"])
    # no cold item has a training event, and test only holds cold items
    assert not (train_items & test_items)
    first_seen = data.interactions.groupby("item")["timestamp"].min()
    cut = np.quantile(data.interactions["timestamp"], 0.8)
    cold = set(first_seen.index[first_seen >= cut])
    assert test_items <= cold
    assert set(split.test["user"]) <= set(split.train.interactions["user"])


@pytest.mark.parametrize("quantile", [-0.1, 1.5])
def test_cold_start_items_bad_quantile_raises(quantile):
    with pytest.raises(ValueError):
        cold_start_items(checkerboard(10, 10), quantile=quantile)
