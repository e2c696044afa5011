"""The FilmTrust loader: the published layout (a zip with a ``filmtrust/`` folder) on synthetic
rows, row errors, and the known answers of the real files in $TASTEMAKER_DATA."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from tastemaker.data.loaders import DATASETS, load_dataset
from tastemaker.errors import DataError, MissingDataError

RATINGS = "1 1 2\n1 2 4\n2 2 3.5\n3 1 0.5\n"
TRUST = "1 2 1\n2 4 1\n4 1 1\n"  # user 4 rated nothing


def _zip(folder: Path, ratings: str = RATINGS, trust: str = TRUST) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "filmtrust.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("filmtrust/readme.txt", "FilmTrust")
        z.writestr("filmtrust/ratings.txt", ratings)
        z.writestr("filmtrust/trust.txt", trust)
    return archive


@pytest.fixture
def data_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("TASTEMAKER_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TASTEMAKER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "data"


def test_reads_the_published_zip(data_env: Path) -> None:
    _zip(data_env / "filmtrust")
    ds = load_dataset("filmtrust")
    assert "filmtrust" in DATASETS and ds.name == "filmtrust"
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (4, 2, 4)
    inter = ds.interactions
    assert ds.users.decode(inter["user"]).tolist() == ["1", "1", "2", "3"]
    assert inter["value"].tolist() == [2.0, 4.0, 3.5, 0.5] and set(inter["event_type"]) == {"rating"}
    assert inter["timestamp"].tolist() == [0, 1, 0, 0]  # no time: the position among the user's rows
    edges = list(zip(ds.users.decode(ds.social["user"]), ds.users.decode(ds.social["friend"]), strict=True))
    assert edges == [("1", "2"), ("2", "4"), ("4", "1")]  # directed, as listed; 4 kept though it rated nothing


def test_an_explicit_path_and_row_errors(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "copy", ratings="1 1 2\n1 x\n")
    with pytest.raises(DataError, match=r"ratings\.txt.*line 2"):
        load_dataset("filmtrust", path=archive)
    with pytest.warns(UserWarning, match="skipped 1 malformed"):
        ds = load_dataset("filmtrust", path=archive, on_error="skip")
    assert ds.n_interactions == 1 and ds.extras["skipped"].count == 1


def test_missing_files_say_what_was_expected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASTEMAKER_DATA", raising=False)
    monkeypatch.setenv("TASTEMAKER_CACHE", str(tmp_path / "cache"))
    with pytest.raises(MissingDataError, match=r"(?s)'ratings\.txt'.*'trust\.txt'.*TASTEMAKER_DATA: not set"):
        load_dataset("filmtrust")


@pytest.mark.realdata
def test_the_real_files(data_root: Path) -> None:
    ds = load_dataset("filmtrust", path=data_root / "filmtrust")
    assert (ds.n_items, ds.n_interactions) == (2071, 35_497)
    rated = np.bincount(ds.interactions["user"], minlength=ds.n_users)
    assert (rated > 0).sum() == 1508 and ds.n_users == 1508 + 134  # 134 users only trust or are trusted
    histogram = ds.interactions["value"].value_counts().sort_index().to_dict()
    assert histogram == {0.5: 1060, 1.0: 1141, 1.5: 1601, 2.0: 3113, 2.5: 4392, 3.0: 7877, 3.5: 7142, 4.0: 9171}
    assert len(ds.social) == 1853 and len(set(ds.social["user"]) | set(ds.social["friend"])) == 874
    assert (rated[np.unique(np.concatenate([ds.social["user"], ds.social["friend"]]))] > 0).sum() == 740
