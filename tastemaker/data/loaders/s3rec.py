"""S3-Rec benchmark sequences (Zhou et al., CIKM 2020): Amazon Beauty, Yelp and LastFM.

Files per subset (``s3rec_data.zip`` holds them under ``data/``):

* ``<Subset>.txt``: one user per line, ``user item item ...``, items in interaction order.
  There are no timestamps, so ``timestamp`` is each event's position in its user's sequence
  (0, 1, 2, ...); ``event_type="interaction"``, ``value=1``. A line with a user and no item is
  a bad row.
* ``<Subset>_item2attributes.json``: one JSON object ``{"item": [attribute id, ...]}``. The
  catalog gets an ``attributes`` column (the ids as strings, as listed: LastFM's lists repeat
  ids) and ``categories`` = the distinct ones, so attribute-aware code can treat them alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from tastemaker.data.dataset import Dataset
from tastemaker.data.loaders._files import locate
from tastemaker.data.validate import OnError, RowErrors, read_token_lines
from tastemaker.errors import DataError

SUBSETS = ("Beauty", "Yelp", "LastFM")


def load_s3rec(
    path: str | Path | None = None,
    *,
    subset: str = "Beauty",
    on_error: OnError = "raise",
    download: bool = False,
    cache_dir: str | Path | None = None,
) -> Dataset:
    """One S3-Rec subset (``"Beauty"``, ``"Yelp"`` or ``"LastFM"``; see the module doc)."""
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS}, not {subset!r}")
    sequences_file, attributes_file = f"{subset}.txt", f"{subset}_item2attributes.json"
    files = locate(
        "amazon-s3rec-sequences", path, [sequences_file, attributes_file], download=download, cache_dir=cache_dir
    )
    errors = RowErrors(on_error)
    rows = read_token_lines(files.get(sequences_file, main=True), errors=errors, min_tokens=2)
    lengths = np.fromiter((len(tokens) - 1 for _, tokens in rows), dtype=np.int64, count=len(rows))
    interactions = pd.DataFrame(
        {
            "user": np.repeat(np.array([tokens[0] for _, tokens in rows], dtype=object), lengths),
            "item": np.array([item for _, tokens in rows for item in tokens[1:]], dtype=object),
        }
    )
    member = files.get(attributes_file)
    try:
        mapping = json.loads(member.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        line = exc.lineno if isinstance(exc, json.JSONDecodeError) else None
        raise DataError(f"bad JSON: {exc}", file=member.label, line=line) from exc
    if not isinstance(mapping, dict):
        raise DataError("expected a JSON object {item: [attribute, ...]}", file=member.label)
    attributes = [[str(a) for a in (values if isinstance(values, list) else [values])] for values in mapping.values()]
    categories = [list(dict.fromkeys(values)) for values in attributes]  # LastFM's lists repeat ids
    catalog = pd.DataFrame({"item_id": list(mapping), "attributes": attributes, "categories": categories})
    name = f"amazon-s3rec-sequences/{subset}"
    return Dataset.from_frames(interactions, catalog, name=name, extras=errors.extras(name))
