"""Known answers for every public-dataset loader, on the real files in $TASTEMAKER_DATA.

The figures come from the README of each folder in shared/datasets. Each configuration is
loaded once per module (the ``loaded`` fixture), and the whole load is timed.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tastemaker.data.dataset import Dataset
from tastemaker.data.loaders import DATASETS, load_dataset
from tastemaker.errors import MissingDataError

pytestmark = pytest.mark.realdata

CONFIGS: dict[str, tuple[str, dict[str, str]]] = {
    "ml-100k": ("movielens-100k", {}),
    "ml-1m": ("movielens-1m", {}),
    "ml-latest-small": ("movielens-latest-small", {}),
    "magazines": ("amazon2018-magazine-subscriptions", {}),
    "beauty": ("amazon-s3rec-sequences", {"subset": "Beauty"}),
    "yelp": ("amazon-s3rec-sequences", {"subset": "Yelp"}),
    "lastfm-s3rec": ("amazon-s3rec-sequences", {"subset": "LastFM"}),
    "video": ("sasrec-video-games", {}),
    "scientific": ("amazon-scientific-unisrec", {}),
    "lastfm": ("hetrec2011-lastfm-2k", {}),
    "obd-random-men": ("open-bandit-dataset-small", {"policy": "random", "campaign": "men"}),
    "obd-random-women": ("open-bandit-dataset-small", {"policy": "random", "campaign": "women"}),
    "obd-bts-men": ("open-bandit-dataset-small", {"policy": "bts", "campaign": "men"}),
    "redial-test": ("redial", {"split": "test"}),
    "redial-all": ("redial", {"split": "all"}),
}
LOAD_BUDGET_S = 30.0  # every configuration above, on 2 cores; the module stays well under 60 s


@pytest.fixture(scope="module")
def loaded(data_root: Path) -> dict[str, Dataset]:
    datasets, seconds = {}, {}
    for key, (name, kwargs) in CONFIGS.items():
        start = time.perf_counter()
        datasets[key] = load_dataset(name, **kwargs)
        seconds[key] = time.perf_counter() - start
    print("\nload times (s): " + ", ".join(f"{k} {v:.2f}" for k, v in seconds.items()))
    assert sum(seconds.values()) < LOAD_BUDGET_S, seconds
    return datasets


def _histogram(ds: Dataset) -> dict[float, int]:
    return {float(k): int(v) for k, v in sorted(Counter(ds.interactions["value"].tolist()).items())}


def _title(ds: Dataset, item_id: str) -> str:
    return ds.titles([ds.items.code(item_id)])[0]


def _row(ds: Dataset, item_id: str) -> pd.Series:
    return ds.catalog.iloc[ds.items.code(item_id)]


def _utc(ts: int) -> str:
    return pd.Timestamp(ts, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M:%S")


def test_every_name_is_a_shared_folder(data_root: Path) -> None:
    assert set(DATASETS) <= {p.name for p in data_root.iterdir()}


def test_movielens_100k(loaded: dict[str, Dataset]) -> None:
    ds = loaded["ml-100k"]
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (943, 1682, 100_000)
    assert _histogram(ds) == {1.0: 6110, 2.0: 11370, 3.0: 27145, 4.0: 34174, 5.0: 21201}
    assert set(ds.interactions["event_type"]) == {"rating"}
    ts = ds.interactions["timestamp"]
    assert (_utc(ts.min()), _utc(ts.max())) == ("1997-09-20 03:05:10", "1998-04-22 23:10:38")
    assert _title(ds, "543") == "Misérables, Les (1995)"  # ISO-8859-1 decoded
    toy = _row(ds, "1")
    assert toy["title"] == "Toy Story (1995)" and toy["year"] == 1995
    assert toy["categories"] == ["Animation", "Children's", "Comedy"]
    assert toy["created_at"] == pd.Timestamp("1995-01-01", tz="UTC").timestamp()
    assert _row(ds, "267")["categories"] == ["unknown"] and np.isnan(_row(ds, "267")["created_at"])
    users = ds.user_features.set_index("user_id")
    assert len(users) == 943 and users.loc["1", "occupation"] == "technician" and users.loc["1", "age"] == 24


def test_movielens_1m_partial(loaded: dict[str, Dataset]) -> None:
    ds = loaded["ml-1m"]
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (6040, 3883, 487_650)  # users.dat lists all 6,040
    assert ds.interactions["user"].nunique() == 2999 and ds.interactions["item"].nunique() == 3615
    assert _histogram(ds) == {1.0: 27472, 2.0: 53838, 3.0: 127216, 4.0: 170579, 5.0: 108545}
    ts = ds.interactions["timestamp"]
    assert (_utc(ts.min()), _utc(ts.max())) == ("2000-10-04 00:52:14", "2003-02-27 23:31:15")
    assert _title(ds, "73") == "Misérables, Les (1995)"
    assert _row(ds, "1")["categories"] == ["Animation", "Children's", "Comedy"]
    assert ds.user_features.set_index("user_id").loc["2", ["gender", "age", "occupation"]].tolist() == ["M", 56, 16]


def test_movielens_latest_small(loaded: dict[str, Dataset]) -> None:
    ds = loaded["ml-latest-small"]
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (610, 9742, 100_836)
    assert ds.interactions["item"].nunique() == 9724
    assert _histogram(ds)[0.5] == 1370 and _histogram(ds)[4.0] == 26818
    assert _title(ds, "99149") == "Misérables, Les (2012)"  # UTF-8, quoted in the CSV
    assert _row(ds, "1")["tags"] == ["pixar", "fun"] and _row(ds, "1")["text"] == "pixar, fun"
    assert _row(ds, "1")["imdb_id"] == "0114709"
    assert _row(ds, "114335")["categories"] == []  # "(no genres listed)"
    assert (ds.catalog["categories"].map(len) == 0).sum() == 34
    babylon = ds.catalog[ds.catalog["title"] == "Babylon 5"]
    assert babylon["categories"].tolist() == [["Sci-Fi"]] and babylon["year"].isna().all()


def test_amazon_magazines(loaded: dict[str, Dataset]) -> None:
    ds = loaded["magazines"]
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (72_098, 2428, 89_689)
    assert _histogram(ds) == {1.0: 11029, 2.0: 5223, 3.0: 6971, 4.0: 12676, 5.0: 53790}
    cat = ds.catalog
    assert cat["brand"].isna().sum() == 108  # rated items without a metadata row
    assert (cat["title"] != "").sum() == 157  # the rest are scraped HTML, dropped
    assert not cat["title"].str.startswith("<").any()
    assert (cat["text"] != "").sum() == 1965
    assert any("Arts, Music & Photography" in c for c in cat["categories"])  # &amp; decoded
    assert _row(ds, "B00005N7P0")["categories"][0] == "Magazine Subscriptions"


@pytest.mark.parametrize(
    ("key", "users", "items", "events", "attributes"),
    [
        ("beauty", 22_363, 12_101, 198_502, 637),
        ("yelp", 30_431, 20_033, 316_354, 1001),
        ("lastfm-s3rec", 1090, 3646, 52_551, 388),
    ],
)
def test_s3rec(loaded: dict[str, Dataset], key: str, users: int, items: int, events: int, attributes: int) -> None:
    ds = loaded[key]
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (users, items, events)
    assert len({a for row in ds.catalog["attributes"] for a in row}) == attributes
    positions = ds.interactions.groupby("user")["timestamp"].agg(["min", "max", "size"])
    assert (positions["min"] == 0).all() and (positions["max"] == positions["size"] - 1).all()
    if key == "beauty":
        first = ds.users.code("1")
        assert ds.items.decode(ds.sequences()[first]).tolist() == ["1", "2", "3", "4", "5"]
        assert _row(ds, "4")["categories"] == ["1", "2", "3"]


def test_sasrec_video_games(loaded: dict[str, Dataset]) -> None:
    ds = loaded["video"]
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (31_013, 23_715, 287_107)
    assert ds.items.decode(ds.sequences()[ds.users.code("1")][:3]).tolist() == ["6393", "13504", "14087"]


def test_unisrec_scientific(loaded: dict[str, Dataset]) -> None:
    ds = loaded["scientific"]
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (8442, 4385, 59_427)
    lengths = [len(s) for s in ds.sequences()]
    assert min(lengths) == 5 and max(lengths) > 51  # full sequences, beyond the 50-item history cap
    first = ds.items.decode(ds.sequences()[ds.users.code("ABW8NXS7SV55K")]).tolist()
    assert len(first) == 14 and first[:3] == ["B00TNNWMXI", "B00IBZE2EQ", "B010Y25PQC"]
    row = _row(ds, "B0000223SI")
    assert row["title"] == "PORTER-CABLE 740000801 4 1/2-Inch x 10yd 80 Grit Adhesive-Backed Sanding Roll"
    assert row["text"].endswith("Sanding Rolls. PORTER-CABLE.")


def test_lastfm(loaded: dict[str, Dataset]) -> None:
    ds = loaded["lastfm"]
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (1892, 17_632, 92_834)
    values = ds.interactions["value"].to_numpy(dtype=np.float64)
    assert (values.min(), values.max(), values.sum()) == (1, 352_698, 69_183_975)
    assert set(ds.interactions["event_type"]) == {"play"}
    edges = set(zip(ds.social["user"].tolist(), ds.social["friend"].tolist(), strict=True))
    assert len(ds.social) == 25_434 and all((b, a) in edges for a, b in edges)
    assert ds.social["user"].nunique() == 1892
    assert _title(ds, "1") == "MALICE MIZER" and "j-rock" in _row(ds, "1")["categories"]
    assert any("tropicália" in c for c in ds.catalog["categories"])  # tags.dat is ISO-8859-1


@pytest.mark.parametrize(
    ("key", "items", "clicks", "propensity"),
    [("obd-random-men", 34, 46, 1 / 34), ("obd-random-women", 46, 46, 1 / 46), ("obd-bts-men", 34, 69, None)],
)
def test_open_bandit(loaded: dict[str, Dataset], key: str, items: int, clicks: int, propensity: float | None) -> None:
    ds = loaded[key]
    inter = ds.interactions
    assert ds.n_interactions == 10_000 and ds.n_items == items and int(inter["click"].sum()) == clicks
    assert set(inter["event_type"]) == {"impression"} and (inter["value"] == inter["click"]).all()
    assert set(inter["position"]) == {1, 2, 3}
    if propensity is not None:
        assert np.allclose(inter["propensity_score"], propensity)
    else:
        assert round(inter["propensity_score"].min(), 5) == 0.00016
        assert round(inter["propensity_score"].max(), 5) == 0.72529
    assert _utc(inter["timestamp"].min()).startswith("2019-11-24 00:0")
    contexts = ds.extras["contexts"]
    assert contexts.shape == (10_000, 1 + 4 + items) and sorted(inter["row"]) == list(range(10_000))
    assert {"item_feature_0", "item_feature_3"} <= set(ds.catalog.columns)


def test_open_bandit_all_campaign_is_missing(data_root: Path) -> None:
    with pytest.raises(MissingDataError, match=r"all/all\.csv"):
        load_dataset("open-bandit-dataset-small", campaign="all")


def test_redial(loaded: dict[str, Dataset]) -> None:
    ds = loaded["redial-test"]
    dialogues = ds.extras["dialogues"]
    assert len(dialogues) == 1342 and dialogues["messages"].map(len).sum() == 23_952
    assert set(dialogues["split"]) == {"test"}
    assert ds.n_items == 6924 and ds.n_interactions == 7064
    assert ds.interactions["event_type"].value_counts().to_dict() == {"liked": 5694, "mentioned": 1047, "disliked": 323}
    assert _title(ds, "151656") == "Police Academy (1984)"
    first = ds.interactions[ds.interactions["conversation_id"] == "20001"]
    assert ds.items.decode(first["item"]).tolist()[:2] == ["111776", "151656"]  # order of first mention
    everything = loaded["redial-all"].extras["dialogues"]
    assert everything["split"].value_counts().to_dict() == {"test": 1342, "train": 500, "valid": 100}


def test_path_may_be_the_archive_or_an_extracted_folder(
    data_root: Path, tmp_path: Path, loaded: dict[str, Dataset]
) -> None:
    import zipfile

    archive = data_root / "movielens-100k" / "ml-100k.zip"
    from_zip = load_dataset("movielens-100k", archive)
    with zipfile.ZipFile(archive) as z:  # extracted to a temporary folder outside the project
        z.extractall(tmp_path, members=[m for m in z.namelist() if m.startswith("ml-100k/u")])
    from_dir = load_dataset("movielens-100k", tmp_path / "ml-100k")
    for ds in (from_zip, from_dir):
        assert ds.interactions.equals(loaded["ml-100k"].interactions)
    fold = load_dataset("movielens-100k", tmp_path / "ml-100k" / "u1.test")  # a single file: the ratings
    assert fold.n_interactions == 20_000 and fold.n_items == 1682
