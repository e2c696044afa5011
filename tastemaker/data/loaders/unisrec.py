"""UniSRec downstream datasets (Hou et al., KDD 2022), e.g. Amazon "Scientific".

RecBole atomic files, tab-separated, UTF-8 (``Scientific.zip`` holds them under
``Scientific/``):

* ``<D>.train.inter``, ``<D>.valid.inter``, ``<D>.test.inter``: header row, then
  ``user index \\t history (space-separated item indices, the latest 50) \\t target index``.
  Leave-one-out: a user's last item is the test target, the one before the valid target, and
  every earlier item from the second on is a train target; train rows come longest history
  first. The loader rebuilds each user's full sequence: the shortest row's history, then the
  targets in time order. It checks that the test history ends the rebuilt sequence; if not, the
  files do not describe one sequence per user and DataError is raised.
* ``<D>.user2index``, ``<D>.item2index``: ``external id \\t index``, no header; ids are the
  Amazon reviewerIDs and ASINs, which become the dataset's ids.
* ``<D>.text``: header row, then ``ASIN \\t "title. category path. brand."``. ``text`` keeps it
  whole; ``title`` is the part before the first ". " (a title holding ". " gets cut short).

There are no timestamps: ``timestamp`` is the position in the user's sequence (0, 1, ...),
``event_type="interaction"``, ``value=1``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tastemaker.data.dataset import Dataset
from tastemaker.data.loaders._files import FileSet, locate
from tastemaker.data.validate import Field, OnError, RowErrors, read_delimited
from tastemaker.errors import DataError

_INTER = [Field("user_id:token", "id"), Field("item_id_list:token_seq"), Field("item_id:token", "id")]


def load_unisrec(
    path: str | Path | None = None,
    *,
    domain: str = "Scientific",
    on_error: OnError = "raise",
    download: bool = False,
    cache_dir: str | Path | None = None,
) -> Dataset:
    """A UniSRec downstream dataset (see the module doc); ``domain`` names its files."""
    name = f"amazon-{domain.lower()}-unisrec"
    suffixes = ["train.inter", "valid.inter", "test.inter", "user2index", "item2index", "text"]
    files = locate(name, path, [f"{domain}.{s}" for s in suffixes], download=download, cache_dir=cache_dir)
    errors = RowErrors(on_error)
    parts = [
        _read_inter(files, f"{domain}.{stage}.inter", rank, errors)
        for rank, stage in enumerate(("train", "valid", "test"))
    ]
    sequences = _sequences(parts, files.get(f"{domain}.test.inter").label)
    users = _index(files, f"{domain}.user2index", errors)
    items = _index(files, f"{domain}.item2index", errors)
    user_codes = np.repeat(np.array(list(sequences), dtype=object), [len(s) for s in sequences.values()])
    item_codes = np.array([i for seq in sequences.values() for i in seq], dtype=object)
    interactions = pd.DataFrame(
        {"user": _lookup(users, user_codes, "user2index"), "item": _lookup(items, item_codes, "item2index")}
    )
    text = read_delimited(
        files.get(f"{domain}.text"),
        [Field("item_id:token", "id"), Field("text:token_seq")],
        errors=errors,
        sep="\t",
        header=True,
    )
    full = text["text:token_seq"].str.strip()
    catalog = pd.DataFrame(
        {"item_id": text["item_id:token"], "title": full.str.split(". ", n=1, regex=False).str[0], "text": full}
    )
    return Dataset.from_frames(interactions, catalog, name=name, extras=errors.extras(name))


def _read_inter(files: FileSet, pattern: str, rank: int, errors: RowErrors) -> pd.DataFrame:
    table = read_delimited(files.get(pattern), _INTER, errors=errors, sep="\t", header=True)
    table = table.rename(
        columns={"user_id:token": "user", "item_id_list:token_seq": "history", "item_id:token": "target"}
    )[["user", "history", "target"]]
    table["stage"] = rank
    return table


def _sequences(parts: list[pd.DataFrame], label: str) -> dict[str, list[str]]:
    """Each user's full item sequence (indices as text), in time order."""
    train, valid, test = parts
    rows = pd.concat([train.iloc[::-1], valid, test], ignore_index=True)  # train rows: longest first
    users = pd.unique(pd.concat([test["user"], rows["user"]])).tolist()  # in the test file's order
    sequences: dict[str, list[str]] = {}
    for user, history, target in zip(
        rows["user"].tolist(), rows["history"].tolist(), rows["target"].tolist(), strict=True
    ):
        sequences.setdefault(user, history.split()).append(target)
    for user, history in zip(test["user"].tolist(), test["history"].tolist(), strict=True):
        expected = history.split()
        if sequences[user][-1 - len(expected) : -1] != expected:
            raise DataError(
                f"user {user}: the test history does not end the sequence rebuilt from the train and valid rows",
                file=label,
            )
    return {user: sequences[user] for user in users}


def _index(files: FileSet, pattern: str, errors: RowErrors) -> pd.Series:
    table = read_delimited(files.get(pattern), [Field("id", "id"), Field("index", "id")], errors=errors, sep="\t")
    return pd.Series(table["id"].to_numpy(dtype=object), index=table["index"].to_numpy(dtype=object))


def _lookup(mapping: pd.Series, indices: np.ndarray, what: str) -> np.ndarray:
    found = mapping.reindex(indices)
    if found.isna().any():
        unknown = pd.unique(indices[found.isna().to_numpy()])[:5].tolist()
        raise DataError(f"index(es) {unknown} are not in the {what} file")
    codes: np.ndarray = found.to_numpy(dtype=object)
    return codes
