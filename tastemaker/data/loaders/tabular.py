"""Your own tables: interactions (and optionally a catalog) in CSV, Parquet or JSON Lines.

``columns`` maps source column names to the standard ones (``{"userId": "user", "movieId":
"item", "rating": "value"}``); a column already named ``user``, ``item``, ``timestamp``,
``event_type`` or ``value`` needs no mapping, and every other column is kept as an extra
column. ``user`` and ``item`` are required; a mapped column missing from the file is a
DataError naming it. Checks per standard column: ids non-empty, ``value`` a finite number,
``timestamp`` unix seconds or ISO-8601 date-times (missing: the file order per user).

The catalog (``catalog_path``, mapped by ``catalog_columns``) needs ``item_id``; ``title``,
``text``, ``categories`` and ``created_at`` are optional. Categories given as text are split on
``|`` (the MovieLens convention); lists are kept.

Formats: ``csv`` (a header row; ``sep``; double quotes; ``.tsv`` means tab), ``parquet`` and
``jsonl`` (one JSON object per line), each guessed from the extension when ``format`` is None;
csv and jsonl may be gzipped; the catalog's format comes from its own extension (else the
interactions'). CSV and JSON Lines errors name the line (JSON syntax is checked before the
values); Parquet errors name the row (1-based). ``on_error`` works as in every loader (see
:mod:`tastemaker.data.validate`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tastemaker.data.dataset import Dataset
from tastemaker.data.loaders._files import Member
from tastemaker.data.validate import (
    Field,
    Kind,
    OnError,
    RowErrors,
    check_columns,
    read_delimited,
    read_header,
    read_json_lines,
)
from tastemaker.errors import DataError, MissingDataError

Format = Literal["csv", "parquet", "jsonl"]
INTERACTION_KINDS: dict[str, Kind] = {
    "user": "id",
    "item": "id",
    "timestamp": "time",
    "value": "float",
    "event_type": "text",
}
CATALOG_KINDS: dict[str, Kind] = {"item_id": "id", "title": "text", "text": "text", "created_at": "time"}
_EXTENSIONS: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


def load_table(
    path: str | Path,
    format: Format | None = None,
    *,
    columns: Mapping[str, str] | None = None,
    catalog_path: str | Path | None = None,
    catalog_columns: Mapping[str, str] | None = None,
    sep: str | None = None,
    on_error: OnError = "raise",
    name: str | None = None,
    event_type: str = "interaction",
) -> Dataset:
    """A Dataset from an interaction table and an optional catalog table (see the module doc).
    ``sep`` defaults to "," (tab for .tsv); ``event_type`` fills a missing event_type column."""
    errors = RowErrors(on_error)
    fmt = format or guess_format(path)
    inter = _read(path, fmt, columns or {}, INTERACTION_KINDS, ("user", "item"), sep, errors)
    catalog = None
    if catalog_path is not None:
        catalog_fmt = _EXTENSIONS.get(Path(str(catalog_path).removesuffix(".gz")).suffix.lower(), fmt)
        catalog = _read(catalog_path, catalog_fmt, catalog_columns or {}, CATALOG_KINDS, ("item_id",), sep, errors)
        if "categories" in catalog.columns:
            catalog["categories"] = [_categories(c) for c in catalog["categories"].tolist()]
    name = name or Path(path).name.split(".")[0]
    return Dataset.from_frames(inter, catalog, name=name, event_type=event_type, extras=errors.extras(name))


def guess_format(path: str | Path) -> Format:
    """The format for a file name: .csv/.tsv/.txt, .parquet/.pq, .jsonl/.ndjson/.json (+ .gz)."""
    suffix = Path(str(path).removesuffix(".gz")).suffix.lower()
    if suffix not in _EXTENSIONS:
        raise ValueError(f"{path}: cannot tell the format from {suffix!r}; pass format='csv', 'parquet' or 'jsonl'")
    return _EXTENSIONS[suffix]


def parse_columns(spec: str) -> dict[str, str]:
    """``"userId=user,movieId=item"`` -> ``{"userId": "user", "movieId": "item"}`` (for the CLI)."""
    pairs = [p.split("=", 1) for p in spec.split(",") if p.strip()]
    if any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
        raise ValueError(f"expected source=standard pairs separated by commas, got {spec!r}")
    return {source.strip(): standard.strip() for source, standard in pairs}


def _read(
    path: str | Path,
    fmt: Format,
    mapping: Mapping[str, str],
    kinds: dict[str, Kind],
    required: tuple[str, ...],
    sep: str | None,
    errors: RowErrors,
) -> pd.DataFrame:
    file = Path(path).expanduser()
    if not file.is_file():
        raise MissingDataError(f"{file}: no such file")
    member = Member(file)
    if fmt == "csv":
        sep = sep or ("\t" if file.name.removesuffix(".gz").endswith(".tsv") else ",")
        present = read_header(member, sep=sep, quoting=True)
        fields = _fields(present, mapping, kinds, required, member.label)
        frame = read_delimited(member, fields, errors=errors, sep=sep, header=True, quoting=True)
    elif fmt == "parquet":
        try:
            table = pq.read_table(file)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"not a readable Parquet file ({exc})", file=member.label) from exc
        fields = _fields(table.column_names, mapping, kinds, required, member.label)
        frame = _checked(
            table.to_pandas(), {f.name: table.column(f.name) for f in fields}, fields, None, member.label, errors
        )
    else:
        records = read_json_lines(member, errors=errors)
        good: list[tuple[int, dict[str, object]]] = []
        for line, record in records:
            if isinstance(record, dict):
                good.append((line, record))
            else:
                errors.add("expected a JSON object", file=member.label, line=line, reason="bad JSON")
        frame = pd.DataFrame.from_records([r for _, r in good])
        fields = _fields(list(frame.columns), mapping, kinds, required, member.label)
        text = {
            f.name: pa.array(["" if v is None else str(v) for v in frame[f.name].tolist()], type=pa.string())
            for f in fields
        }
        frame = _checked(frame, text, fields, np.array([line for line, _ in good]), member.label, errors)
    return frame.rename(columns=dict(mapping))


def _fields(
    present: list[str], mapping: Mapping[str, str], kinds: dict[str, Kind], required: tuple[str, ...], file: str
) -> list[Field]:
    """The source columns to check, each with the kind of the standard column it becomes."""
    source_of = {standard: source for source, standard in mapping.items()}
    missing = [s for s in mapping if s not in present]
    missing += [r for r in required if r not in source_of and r not in present]
    if missing:
        raise DataError(f"missing column(s) {missing}; the columns are {present}", file=file)
    fields = []
    for standard, kind in kinds.items():
        source = source_of.get(standard, standard if standard in present and standard not in mapping else None)
        if source is not None:
            fields.append(Field(source, kind))
    return fields


def _checked(
    frame: pd.DataFrame,
    columns: dict[str, pa.Array | pa.ChunkedArray],
    fields: list[Field],
    lines: np.ndarray | None,
    file: str,
    errors: RowErrors,
) -> pd.DataFrame:
    if frame.empty:
        raise DataError("empty file: no rows", file=file)
    converted, good = check_columns(columns, fields, file=file, lines=lines, errors=errors)
    frame = frame.assign(**converted)[good].reset_index(drop=True)
    if frame.empty:
        raise DataError("empty file: no valid rows", file=file)
    return frame


def _categories(value: object) -> list[str]:
    if isinstance(value, str):
        return [c for c in (part.strip() for part in value.split("|")) if c]
    if isinstance(value, list | tuple | np.ndarray):
        return [str(c) for c in value]
    return []
