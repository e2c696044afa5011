"""Finding, opening and downloading dataset files; loader-level errors on a synthetic ml-100k."""

from __future__ import annotations

import gzip
import hashlib
import zipfile
from pathlib import Path

import pytest

from tastemaker.data.loaders import DATASETS, load_dataset, movielens
from tastemaker.data.loaders._files import FileSet, Remote, cache_root, fetch, locate
from tastemaker.errors import DataError, MissingDataError

GENRES = "unknown|0\nAction|1\nComedy|2\n\n"
ITEMS = "1|Misérables, Les (1995)|01-Jan-1995||http://x|0|0|1\n2|Heat (1995)|15-Dec-1995||http://y|0|1|0\n"
USERS = "1|24|M|technician|85711\n2|53|F|other|94043\n"
RATINGS = "1\t1\t5\t874724710\n2\t1\t3\t874724711\n2\t2\t4\t874724712\n"


@pytest.fixture(autouse=True)
def no_data_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test starts with no $TASTEMAKER_DATA and an empty cache of its own."""
    monkeypatch.delenv("TASTEMAKER_DATA", raising=False)
    monkeypatch.setenv("TASTEMAKER_CACHE", str(tmp_path / "cache"))


def fake_ml100k(folder: Path, ratings: str = RATINGS) -> Path:
    """A tiny ml-100k in the published layout (synthetic rows, same formats)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text(ratings)
    (folder / "u.item").write_bytes(ITEMS.encode("latin-1"))
    (folder / "u.genre").write_text(GENRES)
    (folder / "u.user").write_text(USERS)
    return folder


def zip_folder(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as z:
        for file in sorted(folder.iterdir()):
            z.write(file, f"{folder.name}/{file.name}")
    return archive


def test_fake_ml100k_loads_from_a_folder_a_zip_and_gz(tmp_path: Path) -> None:
    folder = fake_ml100k(tmp_path / "ml-100k")
    from_dir = load_dataset("movielens-100k", folder)
    assert (from_dir.n_users, from_dir.n_items, from_dir.n_interactions) == (2, 2, 3)
    assert from_dir.titles([from_dir.items.code("1")]) == ["Misérables, Les (1995)"]
    assert from_dir.catalog["categories"].tolist() == [["Comedy"], ["Action"]]
    archive = zip_folder(folder, tmp_path / "ml-100k.zip")
    assert load_dataset("movielens-100k", archive).interactions.equals(from_dir.interactions)
    gz_folder = tmp_path / "gz"
    gz_folder.mkdir()
    for file in folder.iterdir():
        (gz_folder / (file.name + ".gz")).write_bytes(gzip.compress(file.read_bytes()))
    assert load_dataset("movielens-100k", gz_folder).interactions.equals(from_dir.interactions)


def test_a_bad_row_fails_the_whole_load_with_file_and_line(tmp_path: Path) -> None:
    folder = fake_ml100k(tmp_path / "ml-100k", RATINGS + "3\t2\tfour\t874724713\n")
    archive = zip_folder(folder, tmp_path / "ml-100k.zip")
    with pytest.raises(DataError) as caught:
        load_dataset("movielens-100k", archive)
    assert caught.value.file == f"{archive}:ml-100k/u.data" and caught.value.line == 4
    assert "value 'four' is not a number" in str(caught.value)


def test_skip_reports_in_extras_and_warns(tmp_path: Path) -> None:
    folder = fake_ml100k(tmp_path / "ml-100k", RATINGS + "3\t2\tfour\t874724713\n3\t2\n")
    with pytest.warns(UserWarning, match="movielens-100k: skipped 2 malformed rows"):
        ds = load_dataset("movielens-100k", folder, on_error="skip")
    assert ds.n_interactions == 3 and ds.extras["skipped"].count == 2
    assert ds.extras["skipped"].reasons == {"bad float": 1, "wrong field count": 1}


def test_missing_data_message_names_file_places_and_fixes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASTEMAKER_DATA", str(tmp_path / "data"))
    with pytest.raises(MissingDataError) as caught:
        load_dataset("movielens-100k")
    message = str(caught.value)
    assert "expected the file(s) 'u.data'" in message
    assert f"$TASTEMAKER_DATA {tmp_path / 'data' / 'movielens-100k'}: does not exist" in message
    assert f"the download cache {tmp_path / 'cache' / 'movielens-100k'}: does not exist" in message
    assert "set TASTEMAKER_DATA" in message and "pass path=" in message and "download=True" in message
    monkeypatch.delenv("TASTEMAKER_DATA")
    with pytest.raises(MissingDataError, match=r"(?s)'Video.txt'.*TASTEMAKER_DATA: not set") as caught:
        load_dataset("sasrec-video-games")
    assert "download=True" not in str(caught.value)  # no publisher URL to offer
    with pytest.raises(MissingDataError, match="explicit path is the only place"):
        load_dataset("movielens-100k", tmp_path)


def test_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_ml100k(tmp_path / "cache" / "movielens-100k")
    assert load_dataset("movielens-100k").n_interactions == 3  # found in the cache
    fake_ml100k(tmp_path / "data" / "movielens-100k", RATINGS + "1\t2\t1\t874724714\n")
    monkeypatch.setenv("TASTEMAKER_DATA", str(tmp_path / "data"))
    assert load_dataset("movielens-100k").n_interactions == 4  # $TASTEMAKER_DATA comes first
    assert load_dataset("movielens-100k", tmp_path / "cache" / "movielens-100k").n_interactions == 3  # path first
    assert cache_root() == tmp_path / "cache" and cache_root(tmp_path / "x") == tmp_path / "x"


def test_download_goes_to_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = zip_folder(fake_ml100k(tmp_path / "src" / "ml-100k"), tmp_path / "src" / "ml-100k.zip")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.setattr(movielens, "REMOTE_100K", Remote(archive.as_uri(), digest))
    with pytest.raises(MissingDataError, match="download=True fetches file://"):
        load_dataset("movielens-100k")
    ds = load_dataset("movielens-100k", download=True, cache_dir=tmp_path / "mycache")
    assert ds.n_interactions == 3 and (tmp_path / "mycache" / "movielens-100k" / "ml-100k.zip").is_file()


def test_fetch_checks_the_sha256(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"tastemaker" * 1000)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    dest = tmp_path / "cache" / "ok.bin"
    assert fetch(source.as_uri(), digest, dest, progress=False) == dest
    assert dest.read_bytes() == source.read_bytes() and not dest.with_name("ok.bin.part").exists()
    bad = tmp_path / "cache" / "bad.bin"
    with pytest.raises(DataError, match=f"checksum mismatch: expected sha256 {'0' * 64}, got {digest}"):
        fetch(source.as_uri(), "0" * 64, bad, progress=False)
    assert not bad.exists() and not bad.with_name("bad.bin.part").exists()
    with pytest.warns(UserWarning, match="unverified"):
        fetch(source.as_uri(), None, tmp_path / "cache" / "unknown.bin", progress=False)
    with pytest.raises(MissingDataError, match="could not download"):
        fetch((tmp_path / "absent.bin").as_uri(), digest, tmp_path / "cache" / "absent.bin", progress=False)


def test_fileset_finds_members_by_name_path_pattern_and_gz(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt.gz").write_bytes(gzip.compress(b"hello"))
    with zipfile.ZipFile(tmp_path / "data" / "pack.zip", "w") as z:
        z.writestr("obd/random/men/men.csv", "x")
        z.writestr("obd/bts/men/men.csv", "y")
        z.writestr("inner/ratings_PARTIAL.dat", "z")
    files = FileSet(tmp_path / "data")
    assert files.get("a.txt").read_bytes() == b"hello"
    assert files.get("bts/men/men.csv").read_bytes() == b"y"
    assert files.get(("ratings.dat", "ratings*.dat")).label.endswith("pack.zip:inner/ratings_PARTIAL.dat")
    assert files.find("all/all.csv") is None
    with pytest.raises(MissingDataError, match=r"'all/all\.csv'"):
        files.get("all/all.csv")
    single = FileSet(tmp_path / "data" / "a.txt.gz")
    assert single.get("anything", main=True).read_bytes() == b"hello"
    assert single.get("men.csv") is not None  # a single file's siblings are in its set


def test_bundled_movielens_latest_small_needs_no_data_folder() -> None:
    ds = load_dataset("movielens-latest-small")
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (610, 9742, 100_836)


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="movielens-100k"):
        load_dataset("movielens-20m")
    assert len(DATASETS) == 11


def test_locate_refuses_a_download_lacking_the_files(tmp_path: Path) -> None:
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("readme.txt", "nothing here")
    remote = Remote(other.as_uri(), hashlib.sha256(other.read_bytes()).hexdigest())
    with pytest.raises(MissingDataError, match=r"the download file://.*: lacks it"):
        locate("thing", None, ["u.data"], download=True, remote=remote)
