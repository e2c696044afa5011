"""Dataset.from_frames and friends: behaviour on tiny hand-made frames (known answers)."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tastemaker.data.dataset import Dataset, load_saved_dataset, save_dataset
from tastemaker.errors import DataError

pl = pytest.importorskip("polars")

COLUMNS = {"uid": "user", "iid": "item", "ts": "timestamp", "rating": "value"}


def raw_frame() -> pd.DataFrame:
    # user 7 appears first, so users vocab = ["7", "3"]; items first seen x, y, z
    return pd.DataFrame(
        {
            "uid": [7, 7, 3, 7, 3],
            "iid": ["x", "y", "x", "z", "y"],
            "ts": [50, 10, 20, 30, 5],
            "rating": [4.0, 5.0, 3.0, 1.0, 2.0],
        }
    )


def assert_same_dataset(a: Dataset, b: Dataset) -> None:
    assert a.users == b.users
    assert a.items == b.items
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    pd.testing.assert_frame_equal(a.catalog, b.catalog)


# ---------------------------------------------------------------------- inputs
def test_column_mapping_and_encoding():
    data = Dataset.from_frames(raw_frame(), columns=COLUMNS)
    assert data.users.ids.tolist() == ["7", "3"]
    assert data.items.ids.tolist() == ["x", "y", "z"]
    inter = data.interactions
    assert list(inter.columns[:5]) == ["user", "item", "timestamp", "event_type", "value"]
    assert inter["user"].dtype == np.int32 and inter["item"].dtype == np.int32
    assert inter["timestamp"].dtype == np.int64 and inter["value"].dtype == np.float32
    # sorted by (user code, timestamp): user 7 (code 0): y@10, z@30, x@50; user 3: y@5, x@20
    assert inter["user"].tolist() == [0, 0, 0, 1, 1]
    assert inter["item"].tolist() == [1, 2, 0, 1, 0]
    assert inter["timestamp"].tolist() == [10, 30, 50, 5, 20]
    assert inter["value"].tolist() == [5.0, 1.0, 4.0, 2.0, 3.0]
    assert set(inter["event_type"]) == {"interaction"}
    assert (data.n_users, data.n_items, data.n_interactions) == (2, 3, 5)


def test_pandas_polars_and_arrow_inputs_agree():
    frame = raw_frame()
    from_pandas = Dataset.from_frames(frame, columns=COLUMNS)
    from_polars = Dataset.from_frames(pl.from_pandas(frame), columns=COLUMNS)
    from_arrow = Dataset.from_frames(pa.Table.from_pandas(frame, preserve_index=False), columns=COLUMNS)
    from_batch = Dataset.from_frames(
        pa.RecordBatch.from_pandas(frame, preserve_index=False), columns=COLUMNS
    )
    for other in (from_polars, from_arrow, from_batch):
        assert_same_dataset(from_pandas, other)


def test_missing_optional_columns_get_defaults():
    frame = pd.DataFrame({"user": ["a", "a", "b"], "item": ["i", "j", "i"]})
    data = Dataset.from_frames(frame, event_type="click")
    # no timestamp: the position in each user's sequence
    assert data.interactions["timestamp"].tolist() == [0, 1, 0]
    assert data.interactions["value"].tolist() == [1.0, 1.0, 1.0]
    assert set(data.interactions["event_type"]) == {"click"}


def test_missing_user_or_item_column_names_them():
    with pytest.raises(DataError) as info:
        Dataset.from_frames(pd.DataFrame({"user": [1], "product": [2]}))
    message = str(info.value)
    assert "'item'" in message and "product" in message
    with pytest.raises(DataError, match=r"\['user', 'item'\]"):
        Dataset.from_frames(pd.DataFrame({"a": [1], "b": [2]}))


@pytest.mark.parametrize(
    ("timestamps", "row"),
    [([1, 2, -5, 4], 2), ([1, np.nan, 3, 4], 1), ([1, 2, 3, "yesterday"], 3)],
)
def test_bad_timestamp_names_the_row(timestamps, row):
    frame = pd.DataFrame({"user": [1, 1, 2, 2], "item": [1, 2, 1, 2], "timestamp": timestamps})
    with pytest.raises(DataError, match=rf"row {row}: timestamp"):
        Dataset.from_frames(frame)


def test_non_numeric_value_names_the_row():
    frame = pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 1], "value": [1.0, "lots", 2.0]})
    with pytest.raises(DataError, match=r"row 1: value 'lots' is not a number"):
        Dataset.from_frames(frame)


def test_empty_user_id_names_the_row():
    frame = pd.DataFrame({"user": ["a", None, "b"], "item": [1, 2, 1], "timestamp": [1, 2, 3]})
    with pytest.raises(DataError, match=r"row 1: empty user id"):
        Dataset.from_frames(frame)


def test_rejects_unsupported_input_type():
    with pytest.raises(TypeError):
        Dataset.from_frames(42)


# ---------------------------------------------------------------------- defined behaviour
def test_duplicate_events_kept_by_default_and_dropped_on_request():
    frame = pd.DataFrame(
        {
            "user": ["u", "u", "u", "u"],
            "item": ["a", "a", "a", "b"],
            "timestamp": [5, 5, 6, 5],
            "value": [1.0, 3.0, 2.0, 1.0],
        }
    )
    kept = Dataset.from_frames(frame)
    assert kept.n_interactions == 4
    dropped = Dataset.from_frames(frame, duplicates="drop")
    # rows 0 and 1 share (user, item, timestamp, event_type): the first (value 1.0) stays
    assert dropped.n_interactions == 3
    inter = dropped.interactions
    assert inter["timestamp"].tolist() == [5, 5, 6]
    assert inter["item"].tolist() == [0, 1, 0]
    assert inter["value"].tolist() == [1.0, 1.0, 2.0]


def test_different_event_types_are_not_duplicates():
    frame = pd.DataFrame(
        {"user": ["u", "u"], "item": ["a", "a"], "timestamp": [5, 5], "event_type": ["view", "buy"]}
    )
    assert Dataset.from_frames(frame, duplicates="drop").n_interactions == 2


def test_non_monotonic_timestamps_sorted_stably_per_user():
    frame = pd.DataFrame(
        {
            "user": ["u", "u", "u", "u", "v", "v"],
            "item": ["i1", "i2", "i3", "i4", "i5", "i1"],
            "timestamp": [10, 5, 10, 5, 2, 1],
        }
    )
    data = Dataset.from_frames(frame)
    # items coded i1..i5 = 0..4. user u: i2@5, i4@5 (tie: input order), i1@10, i3@10 (tie)
    sequences = data.sequences()
    assert [s.tolist() for s in sequences] == [[1, 3, 0, 2], [0, 4]]
    assert data.interactions["timestamp"].tolist() == [5, 5, 10, 10, 1, 2]


def test_catalog_only_items_are_in_the_vocabulary_and_missing_items_get_empty_titles():
    frame = pd.DataFrame({"user": ["u", "u", "v"], "item": ["a", "b", "a"], "timestamp": [1, 2, 3]})
    catalog = pd.DataFrame(
        {
            "item_id": ["c", "a"],
            "title": ["Cold item", "Item A"],
            "categories": [["x", "y"], ["z"]],
            "brand": ["acme", "other"],
        }
    )
    data = Dataset.from_frames(frame, catalog=catalog)
    # catalog order first (c, a), then event-only items (b)
    assert data.items.ids.tolist() == ["c", "a", "b"]
    cat = data.catalog
    assert cat["item"].tolist() == [0, 1, 2]
    assert cat["item_id"].tolist() == ["c", "a", "b"]
    assert cat["title"].tolist() == ["Cold item", "Item A", ""]
    assert cat["text"].tolist() == ["", "", ""]
    assert cat["categories"].tolist() == [["x", "y"], ["z"], []]
    assert cat["created_at"].isna().all()
    assert list(cat.columns[:6]) == ["item", "item_id", "title", "text", "categories", "created_at"]
    assert cat["brand"].tolist()[:2] == ["acme", "other"]
    # the cold item has no events
    assert data.item_popularity().tolist() == [0, 2, 1]
    assert data.titles(np.array([2, 1])) == ["", "Item A"]


def test_catalog_needs_an_item_column():
    frame = pd.DataFrame({"user": ["u"], "item": ["a"]})
    with pytest.raises(DataError, match="item_id"):
        Dataset.from_frames(frame, catalog=pd.DataFrame({"name": ["a"]}))
    # 'item' is accepted in place of 'item_id'
    data = Dataset.from_frames(frame, catalog=pd.DataFrame({"item": ["a"], "title": ["A"]}))
    assert data.catalog["title"].tolist() == ["A"]


def test_float_catalog_ids_match_integer_event_ids():
    frame = pd.DataFrame({"user": ["u", "u"], "item": [1, 2]})
    catalog = pd.DataFrame({"item_id": [1.0, 2.0], "title": ["One", "Two"]})
    data = Dataset.from_frames(frame, catalog=catalog)
    assert data.items.ids.tolist() == ["1", "2"]
    assert data.catalog["title"].tolist() == ["One", "Two"]


def test_users_and_social_frames():
    frame = pd.DataFrame({"user": ["a", "b"], "item": ["i", "j"]})
    users = pd.DataFrame({"user_id": ["b", "c"], "age": [30, 40]})
    social = pd.DataFrame({"user": ["a", "b", "zz"], "friend": ["b", "c", "a"]})
    data = Dataset.from_frames(frame, users=users, social=social)
    # interaction users first, then feature-only users
    assert data.users.ids.tolist() == ["a", "b", "c"]
    assert data.user_features["user"].tolist() == [1, 2]
    assert data.user_features["age"].tolist() == [30, 40]
    # an edge with an unknown user (zz) is dropped
    assert data.social["user"].tolist() == [0, 1]
    assert data.social["friend"].tolist() == [1, 2]


# ---------------------------------------------------------------------- views
def repeated_events() -> Dataset:
    frame = pd.DataFrame(
        {
            "user": ["u", "u", "u", "v"],
            "item": ["a", "a", "b", "a"],
            "timestamp": [1, 2, 3, 4],
            "value": [2.0, 2.5, 3.0, 0.5],
        }
    )
    return Dataset.from_frames(frame)


def test_to_csr_binary_value_and_count():
    data = repeated_events()  # users u=0, v=1; items a=0, b=1
    binary = data.to_csr("binary")
    value = data.to_csr("value")
    count = data.to_csr("count")
    for mat in (binary, value, count):
        assert mat.shape == (2, 2)
        assert mat.dtype == np.float32
    # u-a has two events (2.0 and 2.5), u-b one (3.0), v-a one (0.5)
    assert binary.toarray().tolist() == [[1.0, 1.0], [1.0, 0.0]]
    assert value.toarray().tolist() == [[4.5, 3.0], [0.5, 0.0]]
    assert count.toarray().tolist() == [[2.0, 1.0], [1.0, 0.0]]
    assert binary.nnz == 3  # one stored entry per (user, item)


def test_sequences_and_item_popularity_counts_distinct_users():
    data = repeated_events()
    assert [s.tolist() for s in data.sequences()] == [[0, 0, 1], [0]]
    # item a: users u (twice) and v -> 2 distinct users; item b: u -> 1
    popularity = data.item_popularity()
    assert popularity.tolist() == [2, 1]
    assert popularity.dtype == np.int64


def test_sequences_for_a_user_without_events_is_empty():
    frame = pd.DataFrame({"user": ["a"], "item": ["i"]})
    data = Dataset.from_frames(frame, users=pd.DataFrame({"user_id": ["a", "b"]}))
    assert [s.tolist() for s in data.sequences()] == [[0], []]


# ---------------------------------------------------------------------- persistence
def test_save_and_load_round_trip(tmp_path):
    frame = pd.DataFrame(
        {
            "user": ["zed", "amy", "zed", "bob", "amy", "zed"],
            "item": ["m2", "m1", "m1", "m3", "m3", "m4"],
            "timestamp": [30, 10, 20, 5, 15, 30],
            "event_type": ["rating", "rating", "click", "rating", "rating", "rating"],
            "value": [4.0, 5.0, 1.0, 2.0, 3.5, 1.0],
        }
    )
    catalog = pd.DataFrame(
        {
            "item_id": ["m9", "m1", "m2"],
            "title": ["Cold", "One", "Two"],
            "categories": [["drama"], ["comedy", "drama"], []],
            "created_at": [100.0, np.nan, 50.0],
        }
    )
    data = Dataset.from_frames(frame, catalog=catalog, name="tiny")
    save_dataset(data, tmp_path / "saved")
    back = load_saved_dataset(tmp_path / "saved")

    assert back.name == "tiny"
    # same vocabulary order: users by first appearance, items catalog first
    assert data.users.ids.tolist() == ["zed", "amy", "bob"]
    assert back.users == data.users
    assert data.items.ids.tolist() == ["m9", "m1", "m2", "m3", "m4"]
    assert back.items == data.items
    for col in ("user", "item", "timestamp", "value"):
        assert back.interactions[col].tolist() == data.interactions[col].tolist()
    assert back.interactions["event_type"].tolist() == data.interactions["event_type"].tolist()
    assert back.catalog["title"].tolist() == ["Cold", "One", "Two", "", ""]
    assert back.catalog["categories"].tolist() == [["drama"], ["comedy", "drama"], [], [], []]
    assert all(type(c) is list for c in back.catalog["categories"])
    np.testing.assert_array_equal(back.catalog["created_at"].to_numpy(), [100.0, np.nan, 50.0, np.nan, np.nan])
    assert back.user_features is None
    assert (back.to_csr("value") != data.to_csr("value")).nnz == 0


def test_save_and_load_keeps_user_features_and_social(tmp_path):
    frame = pd.DataFrame({"user": ["a", "b"], "item": ["i", "j"]})
    users = pd.DataFrame({"user_id": ["b", "c"], "age": [30, 40]})
    social = pd.DataFrame({"user": ["a"], "friend": ["c"]})
    data = Dataset.from_frames(frame, users=users, social=social)
    save_dataset(data, tmp_path / "d")
    back = load_saved_dataset(tmp_path / "d")
    assert back.users.ids.tolist() == ["a", "b", "c"]
    assert back.user_features is not None
    # every user gets a row after the round trip; a has no age
    ages = dict(zip(back.user_features["user_id"], back.user_features["age"], strict=True))
    assert ages["b"] == 30 and ages["c"] == 40 and pd.isna(ages["a"])
    assert back.social["user"].tolist() == [0] and back.social["friend"].tolist() == [2]


def test_load_saved_dataset_refuses_other_directories(tmp_path):
    with pytest.raises(DataError, match="dataset.json"):
        load_saved_dataset(tmp_path)


def test_category_matrix_is_multi_hot_in_code_order():
    events = pd.DataFrame({"user": ["u", "u"], "item": ["a", "b"]})
    catalog = pd.DataFrame({"item_id": ["a", "b", "c"], "categories": [["x", "y"], ["y", "y"], []]})
    mat = Dataset.from_frames(events, catalog=catalog).category_matrix()
    # categories sorted: x -> 0, y -> 1; the repeated "y" of b counts once; c has none
    assert mat.toarray().tolist() == [[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]
