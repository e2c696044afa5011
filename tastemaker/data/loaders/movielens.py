"""MovieLens (GroupLens Research): ml-100k, ml-1m and ml-latest-small.

Every rating is one interaction: ``event_type="rating"``, ``value`` = the stars, ``timestamp``
= unix seconds. The catalog has the title, a ``year`` column parsed from a trailing "(1995)"
(missing where the title has none) and the genres as ``categories``.

* **movielens-100k** (``ml-100k.zip``): ``u.data`` is ``user \\t item \\t rating \\t time``;
  ``u.item`` is pipe-separated ISO-8859-1 ``id|title|release date|video release date|IMDb
  URL|`` + one 0/1 flag per genre, named by ``u.genre``; the release date becomes
  ``created_at``. ``u.user`` (``id|age|gender|occupation|zip``) becomes the user features.
* **movielens-1m** (``ml-1m.zip``): ``ratings.dat``, ``movies.dat`` (ISO-8859-1, genres
  pipe-separated) and ``users.dat`` (``id::gender::age::occupation code::zip``), all
  ``::``-separated. Any ``ratings*.dat`` serves when ``ratings.dat`` is absent (the shared copy
  holds a partial ``ratings_PARTIAL_....dat.gz`` beside ``ml-1m_movies_users_README.zip``).
* **movielens-latest-small** (``ml-latest-small.zip``, bundled with tastemaker): UTF-8 CSV
  with headers: ``ratings.csv``, ``movies.csv`` (genres pipe-separated; "(no genres listed)"
  gives no category), and, when present, ``tags.csv`` (each movie's distinct tags in file order
  go to a ``tags`` list column and, comma-joined, to ``text``) and ``links.csv`` (``imdb_id``,
  ``tmdb_id`` as text).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tastemaker.data.dataset import Dataset
from tastemaker.data.loaders._files import BUNDLED, FileSet, Remote, locate
from tastemaker.data.validate import Field, OnError, RowErrors, read_delimited

# GroupLens publishes no sha256 for these archives (and the copies in shared/datasets are not
# byte-verified against the official ones), so downloads are kept with a warning, unverified.
GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
REMOTE_100K = Remote(GROUPLENS + "ml-100k.zip")
REMOTE_1M = Remote(GROUPLENS + "ml-1m.zip")
REMOTE_LATEST_SMALL = Remote(GROUPLENS + "ml-latest-small.zip")

_RATINGS = [Field("user", "id"), Field("item", "id"), Field("value", "float"), Field("timestamp", "int")]
_NO_GENRES = "(no genres listed)"


def load_movielens_100k(
    path: str | Path | None = None,
    *,
    on_error: OnError = "raise",
    download: bool = False,
    cache_dir: str | Path | None = None,
) -> Dataset:
    """MovieLens 100K: 100,000 ratings by 943 users of 1,682 movies (see the module doc).
    A single file given as ``path`` (e.g. ``u1.base``) replaces ``u.data``."""
    files = locate(
        "movielens-100k",
        path,
        ["u.data", "u.item", "u.genre", "u.user"],
        download=download,
        cache_dir=cache_dir,
        remote=REMOTE_100K,
    )
    errors = RowErrors(on_error)
    ratings = read_delimited(files.get("u.data", main=True), _RATINGS, errors=errors, sep="\t")
    genre_table = read_delimited(files.get("u.genre"), [Field("genre"), Field("index", "int")], errors=errors, sep="|")
    genres = genre_table.sort_values("index")["genre"].to_numpy(dtype=object)
    fields = [
        Field("item_id", "id"),
        Field("title"),
        Field("release_date"),
        Field("video_release_date"),
        Field("imdb_url"),
    ] + [Field(f"genre_{i}", "int") for i in range(len(genres))]
    items = read_delimited(files.get("u.item"), fields, errors=errors, sep="|", encoding="latin-1")
    flags = items[[f.name for f in fields[5:]]].to_numpy() == 1
    release = pd.to_datetime(items["release_date"], format="%d-%b-%Y", errors="coerce", utc=True)
    catalog = pd.DataFrame(
        {
            "item_id": items["item_id"],
            "title": items["title"],
            "categories": [genres[row].tolist() for row in flags],
            "created_at": (release - pd.Timestamp(0, tz="UTC")).dt.total_seconds(),
            "year": _year(items["title"]),
            "release_date": items["release_date"],
            "imdb_url": items["imdb_url"],
        }
    )
    users = read_delimited(
        files.get("u.user"),
        [Field("user_id", "id"), Field("age", "int"), Field("gender"), Field("occupation"), Field("zip_code")],
        errors=errors,
        sep="|",
    )
    return Dataset.from_frames(
        ratings, catalog, users, name="movielens-100k", event_type="rating", extras=errors.extras("movielens-100k")
    )


def load_movielens_1m(
    path: str | Path | None = None,
    *,
    on_error: OnError = "raise",
    download: bool = False,
    cache_dir: str | Path | None = None,
) -> Dataset:
    """MovieLens 1M: 1,000,209 ratings by 6,040 users of 3,883 listed movies (module doc)."""
    ratings_file = ("ratings.dat", "ratings*.dat")
    files = locate(
        "movielens-1m",
        path,
        [ratings_file, "movies.dat", "users.dat"],
        download=download,
        cache_dir=cache_dir,
        remote=REMOTE_1M,
    )
    errors = RowErrors(on_error)
    ratings = read_delimited(files.get(ratings_file, main=True), _RATINGS, errors=errors, sep="::")
    movies = read_delimited(
        files.get("movies.dat"),
        [Field("item_id", "id"), Field("title"), Field("genres")],
        errors=errors,
        sep="::",
        encoding="latin-1",
    )
    catalog = pd.DataFrame(
        {
            "item_id": movies["item_id"],
            "title": movies["title"],
            "categories": _split_genres(movies["genres"]),
            "year": _year(movies["title"]),
        }
    )
    users = read_delimited(
        files.get("users.dat"),
        [Field("user_id", "id"), Field("gender"), Field("age", "int"), Field("occupation", "int"), Field("zip_code")],
        errors=errors,
        sep="::",
    )
    return Dataset.from_frames(
        ratings, catalog, users, name="movielens-1m", event_type="rating", extras=errors.extras("movielens-1m")
    )


def load_movielens_latest_small(
    path: str | Path | None = None,
    *,
    on_error: OnError = "raise",
    download: bool = False,
    cache_dir: str | Path | None = None,
) -> Dataset:
    """ml-latest-small: 100,836 ratings by 610 users, 9,742 movies, 3,683 tags (module doc).
    Falls back to the copy bundled with tastemaker when no other is found."""
    files = locate(
        "movielens-latest-small",
        path,
        ["ratings.csv", "movies.csv"],
        download=download,
        cache_dir=cache_dir,
        remote=REMOTE_LATEST_SMALL,
        bundled=BUNDLED / "ml-latest-small",
    )
    errors = RowErrors(on_error)
    ratings = read_delimited(
        files.get("ratings.csv", main=True),
        [Field("userId", "id"), Field("movieId", "id"), Field("rating", "float"), Field("timestamp", "int")],
        errors=errors,
        header=True,
        quoting=True,
    )
    ratings = ratings.rename(columns={"userId": "user", "movieId": "item", "rating": "value"})
    movies = read_delimited(
        files.get("movies.csv"),
        [Field("movieId", "id"), Field("title"), Field("genres")],
        errors=errors,
        header=True,
        quoting=True,
    )
    catalog = pd.DataFrame(
        {
            "item_id": movies["movieId"],
            "title": movies["title"].str.strip(),
            "categories": _split_genres(movies["genres"]),
            "year": _year(movies["title"]),
        }
    )
    catalog = _add_tags(catalog, files, errors)
    links = files.find("links.csv")
    if links is not None:
        table = read_delimited(
            links, [Field("movieId", "id"), Field("imdbId"), Field("tmdbId")], errors=errors, header=True, quoting=True
        )
        table = table[["movieId", "imdbId", "tmdbId"]].rename(
            columns={"movieId": "item_id", "imdbId": "imdb_id", "tmdbId": "tmdb_id"}
        )
        catalog = catalog.merge(table, on="item_id", how="left")
    return Dataset.from_frames(
        ratings,
        catalog,
        name="movielens-latest-small",
        event_type="rating",
        extras=errors.extras("movielens-latest-small"),
    )


def _add_tags(catalog: pd.DataFrame, files: FileSet, errors: RowErrors) -> pd.DataFrame:
    """A ``tags`` list column (distinct tags in file order) and ``text`` = the tags, comma-joined."""
    member = files.find("tags.csv")
    tags: dict[str, list[str]] = {}
    if member is not None:
        table = read_delimited(
            member,
            [Field("userId", "id"), Field("movieId", "id"), Field("tag"), Field("timestamp", "int")],
            errors=errors,
            header=True,
            quoting=True,
        )
        for movie, tag in zip(table["movieId"].tolist(), table["tag"].str.strip().tolist(), strict=True):
            if tag and tag not in tags.setdefault(movie, []):
                tags[movie].append(tag)
    catalog = catalog.copy()
    catalog["tags"] = [tags.get(movie, []) for movie in catalog["item_id"].tolist()]
    catalog["text"] = [", ".join(t) for t in catalog["tags"]]
    return catalog


def _split_genres(genres: pd.Series) -> list[list[str]]:
    return [[g for g in text.split("|") if g and g != _NO_GENRES] for text in genres.tolist()]


def _year(titles: pd.Series) -> pd.Series:
    """The year in a trailing "(1995)" of each title; missing where there is none."""
    years = titles.str.extract(r"\((\d{4})\)\s*$", expand=False)
    return pd.to_numeric(years, errors="coerce").astype("Int64")


__all__ = ["load_movielens_1m", "load_movielens_100k", "load_movielens_latest_small"]
