"""load_table: your own CSV, Parquet and JSON Lines tables with a column mapping."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from tastemaker.data.loaders.tabular import guess_format, load_table, parse_columns
from tastemaker.errors import DataError, MissingDataError

MAPPING = {"uid": "user", "sku": "item", "stars": "value", "when": "timestamp"}
FRAME = pd.DataFrame(
    {
        "uid": ["a", "a", "b"],
        "sku": ["x", "y", "x"],
        "stars": [5.0, 3.0, 4.0],
        "when": [30, 10, 20],
        "device": ["ios", "web", "ios"],
    }
)


def test_csv_with_mapping_extra_columns_and_catalog(tmp_path: Path) -> None:
    FRAME.to_csv(tmp_path / "events.csv", index=False)
    (tmp_path / "items.csv").write_text('id,name,tags\nx,"Ex, the item",a|b\ny,Why,\n')
    ds = load_table(
        tmp_path / "events.csv",
        columns=MAPPING,
        catalog_path=tmp_path / "items.csv",
        catalog_columns={"id": "item_id", "name": "title", "tags": "categories"},
        event_type="view",
    )
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 2, 3) and ds.name == "events"
    inter = ds.interactions
    assert inter["timestamp"].tolist() == [10, 30, 20] and inter["device"].tolist() == ["web", "ios", "ios"]
    assert set(inter["event_type"]) == {"view"}
    assert ds.catalog["title"].tolist() == ["Ex, the item", "Why"]
    assert ds.catalog["categories"].tolist() == [["a", "b"], []]


def test_standard_names_need_no_mapping_and_iso_dates_parse(tmp_path: Path) -> None:
    path = tmp_path / "events.tsv.gz"
    path.write_bytes(gzip.compress(b"user\titem\ttimestamp\n1\t2\t2020-01-01T00:00:00Z\n"))
    ds = load_table(path)
    assert ds.interactions["timestamp"].tolist() == [1577836800] and ds.interactions["value"].tolist() == [1.0]


def test_csv_errors_name_the_line(tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_text("uid,sku,stars\na,x,5\nb,y,lots\n")
    with pytest.raises(DataError, match=r"e\.csv, line 3: stars 'lots' is not a number"):
        load_table(tmp_path / "e.csv", columns={"uid": "user", "sku": "item", "stars": "value"})
    with pytest.raises(DataError, match=r"missing column\(s\) \['when'\]"):
        load_table(tmp_path / "e.csv", columns={"uid": "user", "sku": "item", "when": "timestamp"})
    with pytest.raises(DataError, match=r"missing column\(s\) \['user', 'item'\]"):
        load_table(tmp_path / "e.csv")


def test_parquet_errors_name_the_row_and_skip_works(tmp_path: Path) -> None:
    frame = FRAME.astype({"uid": object})
    frame.loc[1, "uid"] = None
    frame.to_parquet(tmp_path / "e.parquet")
    with pytest.raises(DataError, match=r"e\.parquet: row 2: uid is missing"):
        load_table(tmp_path / "e.parquet", columns=MAPPING)
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = load_table(tmp_path / "e.parquet", columns=MAPPING, on_error="skip")
    assert ds.n_interactions == 2 and ds.extras["skipped"].reasons == {"bad id": 1}


def test_parquet_datetime_timestamps(tmp_path: Path) -> None:
    frame = FRAME.assign(when=pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03"], utc=True))
    frame.to_parquet(tmp_path / "e.pq")
    ds = load_table(tmp_path / "e.pq", columns=MAPPING)
    assert sorted(ds.interactions["timestamp"].tolist()) == [1577836800, 1577923200, 1578009600]


def test_json_lines(tmp_path: Path) -> None:
    lines = [
        '{"uid": "a", "sku": 1, "stars": 4}',
        '{"uid": "b", "sku": 2, "stars": 2.5, "note": "hi"}',
        '{"uid": "c", "sku": 3, "stars": "many"}',
        "[1, 2]",
        '{"uid": "d", broken',
    ]
    (tmp_path / "e.jsonl").write_text("\n".join(lines) + "\n")
    columns = {"uid": "user", "sku": "item", "stars": "value"}
    with pytest.raises(DataError, match=r"line 5: bad JSON"):  # JSON syntax is checked before values
        load_table(tmp_path / "e.jsonl", columns=columns)
    (tmp_path / "f.jsonl").write_text("\n".join(lines[:3]) + "\n")
    with pytest.raises(DataError, match=r"f\.jsonl, line 3: stars 'many' is not a number"):
        load_table(tmp_path / "f.jsonl", columns=columns)
    with pytest.warns(UserWarning):
        ds = load_table(tmp_path / "e.jsonl", columns=columns, on_error="skip")
    assert ds.n_interactions == 2 and ds.extras["skipped"].count == 3
    assert ds.items.ids.tolist() == ["1", "2"]


def test_helpers(tmp_path: Path) -> None:
    assert parse_columns("userId=user, movieId=item") == {"userId": "user", "movieId": "item"}
    with pytest.raises(ValueError, match="source=standard"):
        parse_columns("userId")
    assert [guess_format(n) for n in ("a.csv.gz", "b.parquet", "c.ndjson")] == ["csv", "parquet", "jsonl"]
    with pytest.raises(ValueError, match="format="):
        guess_format("a.xlsx")
    with pytest.raises(MissingDataError):
        load_table(tmp_path / "absent.csv")
