"""Loaders for public recommender datasets, one module per format, and :func:`load_dataset`.

Every loader reads the files as published (a directory, the publisher's .zip archive, or
plain/.gz files) and returns a :class:`~tastemaker.data.dataset.Dataset`. Where the files are
is decided by :func:`~tastemaker.data.loaders._files.locate`: the explicit ``path``, then
``$TASTEMAKER_DATA/<name>/``, then the download cache (``$TASTEMAKER_CACHE/<name>/``, by
default ``~/.cache/tastemaker/<name>/``), then a download with ``download=True`` where the
publisher has a URL, then (movielens-latest-small only) the copy bundled with tastemaker.
Missing files raise :class:`~tastemaker.errors.MissingDataError` saying what was expected,
where it looked and how to fix it. Malformed rows raise
:class:`~tastemaker.errors.DataError`, or are skipped with ``on_error="skip"`` (see
:mod:`tastemaker.data.validate`). For your own files, see :func:`tabular.load_table`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from tastemaker.data.dataset import Dataset
from tastemaker.data.loaders.amazon import load_amazon2018
from tastemaker.data.loaders.filmtrust import load_filmtrust
from tastemaker.data.loaders.lastfm import load_lastfm_2k
from tastemaker.data.loaders.movielens import load_movielens_1m, load_movielens_100k, load_movielens_latest_small
from tastemaker.data.loaders.obd import load_open_bandit
from tastemaker.data.loaders.dialogues import load_dialogues
from tastemaker.data.loaders.redial import load_redial
from tastemaker.data.loaders.s3rec import load_s3rec
from tastemaker.data.loaders.sasrec import load_sasrec_lines, load_sasrec_video_games
from tastemaker.data.loaders.tabular import load_table
from tastemaker.data.loaders.unisrec import load_unisrec

_LOADERS: dict[str, Callable[..., Dataset]] = {
    "movielens-100k": load_movielens_100k,
    "movielens-1m": load_movielens_1m,
    "movielens-latest-small": load_movielens_latest_small,
    "amazon2018-magazine-subscriptions": load_amazon2018,
    "amazon-s3rec-sequences": load_s3rec,
    "sasrec-video-games": load_sasrec_video_games,
    "amazon-scientific-unisrec": load_unisrec,
    "hetrec2011-lastfm-2k": load_lastfm_2k,
    "filmtrust": load_filmtrust,
    "open-bandit-dataset-small": load_open_bandit,
    "redial": load_redial,
}
DATASETS: tuple[str, ...] = tuple(_LOADERS)
"""The names :func:`load_dataset` knows (also the folder names under ``$TASTEMAKER_DATA``)."""


def load_dataset(
    name: str,
    path: str | Path | None = None,
    *,
    on_error: Literal["raise", "skip"] = "raise",
    download: bool = False,
    cache_dir: str | Path | None = None,
    **kwargs: Any,
) -> Dataset:
    """Load a public dataset by name (one of :data:`DATASETS`).

    ``kwargs`` go to the format's loader: ``category`` (amazon2018-*), ``subset``
    (amazon-s3rec-sequences: Beauty, Yelp, LastFM), ``domain`` (UniSRec), ``policy`` and
    ``campaign`` (open-bandit-dataset-small), ``split`` (redial).
    """
    if name not in _LOADERS:
        raise ValueError(
            f"unknown dataset {name!r}; known: {', '.join(DATASETS)} "
            "(for your own files use tastemaker.data.loaders.load_table)"
        )
    return _LOADERS[name](path, on_error=on_error, download=download, cache_dir=cache_dir, **kwargs)


__all__ = ["DATASETS", "load_dataset", "load_dialogues", "load_sasrec_lines", "load_table"]
