"""Amazon Review Data 2018 (Ni, Li, McAuley; UCSD), one category at a time.

Files, as published per category (``Magazine_Subscriptions`` below; plain or .gz):

* ``<Category>.csv``, the "ratings only" file: no header, ``item,user,rating,timestamp``
  (ASIN, reviewer id, 1-5 stars, unix seconds). Each row is an interaction with
  ``event_type="rating"`` and ``value`` = the stars.
* ``meta_<Category>.json``: JSON Lines, one product per line. The catalog takes ``title``
  (dropped, i.e. "", when it is scraped HTML starting with ``<``), ``text`` = the non-empty
  ``description`` paragraphs joined by newlines with HTML tags removed, ``categories`` = the
  ``category`` path, and ``brand``. HTML entities (``&amp;``) are decoded. A product listed
  twice keeps its first row; a line that is not a JSON object with a non-empty ``asin`` is a
  bad row. Rated items without metadata get an empty catalog row.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pandas as pd

from tastemaker.data.dataset import Dataset
from tastemaker.data.loaders._files import locate
from tastemaker.data.validate import Field, OnError, RowErrors, read_delimited, read_json_lines

_TAG = re.compile(r"<[^>]*>")
_RATINGS = [Field("item", "id"), Field("user", "id"), Field("value", "float"), Field("timestamp", "int")]


def load_amazon2018(
    path: str | Path | None = None,
    *,
    category: str = "Magazine_Subscriptions",
    on_error: OnError = "raise",
    download: bool = False,
    cache_dir: str | Path | None = None,
) -> Dataset:
    """One category of Amazon Review Data 2018 (see the module doc).

    The dataset name, and so the folder looked for under ``$TASTEMAKER_DATA``, is
    ``amazon2018-<category in lower case, "_" as "-">``, e.g. amazon2018-magazine-subscriptions.
    """
    name = "amazon2018-" + category.lower().replace("_", "-")
    ratings_file, meta_file = f"{category}.csv", f"meta_{category}.json"
    files = locate(name, path, [ratings_file, meta_file], download=download, cache_dir=cache_dir)
    errors = RowErrors(on_error)
    ratings = read_delimited(files.get(ratings_file, main=True), _RATINGS, errors=errors)
    meta = files.get(meta_file)
    rows = []
    for line, record in read_json_lines(meta, errors=errors):
        asin = record.get("asin") if isinstance(record, dict) else None
        if not isinstance(asin, str) or not asin.strip():
            errors.add("expected a JSON object with a non-empty 'asin'", file=meta.label, line=line, reason="no asin")
            continue
        rows.append(_product(asin.strip(), record))
    catalog = pd.DataFrame(rows, columns=["item_id", "title", "text", "categories", "brand"])
    return Dataset.from_frames(ratings, catalog, name=name, event_type="rating", extras=errors.extras(name))


def _product(asin: str, record: dict[str, Any]) -> tuple[str, str, str, list[str], str]:
    title = _clean(record.get("title"))
    description = record.get("description") or []
    paragraphs = [description] if isinstance(description, str) else list(description)
    text = "\n".join(p for p in (_clean(d) for d in paragraphs) if p)
    categories = [c for c in (_clean(c) for c in record.get("category") or []) if c]
    raw_title = str(record.get("title") or "").lstrip()
    return asin, ("" if raw_title.startswith("<") else title), text, categories, _clean(record.get("brand"))


def _clean(value: object) -> str:
    """Text without HTML tags or entities, whitespace collapsed; "" for anything not a string."""
    if not isinstance(value, str):
        return ""
    return " ".join(html.unescape(_TAG.sub(" ", value)).split())
