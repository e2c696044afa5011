"""Row validation for the text loaders: every bad row is reported with its file and line.

Defined behaviour (tested in tests/data/test_validate.py):

* A malformed row (a wrong number of fields, a number that does not parse or is not finite, an
  integer with a fraction, an empty id, text that is invalid in the file's encoding, bad JSON)
  raises :class:`~tastemaker.errors.DataError` naming the file, the 1-based line and the problem.
* With ``on_error="skip"`` such rows are dropped instead. :class:`RowErrors` counts them by
  reason and keeps the first few messages; :meth:`RowErrors.extras` puts that
  :class:`SkipReport` in ``dataset.extras["skipped"]`` and warns once with a summary.
* An empty file (nothing but whitespace) raises ``DataError("<file>: empty file")``; so do a
  header with no rows under it and a file in which every row was skipped.
* A file with a header that lacks a needed column raises a DataError naming the missing
  columns and the file. Blank lines are ignored everywhere.

Speed: a delimited file is first parsed by pyarrow's CSV reader with every column as text, and
the needed columns are checked and converted vectorised. Only when that finds a problem does a
line-by-line pass run, to name the offending lines; clean files pay almost nothing for checks.
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from tastemaker.errors import DataError

if TYPE_CHECKING:  # the loaders import this module, so no import of them at run time
    from tastemaker.data.loaders._files import Member

OnError = Literal["raise", "skip"]
Kind = Literal["id", "int", "float", "time", "text"]
MAX_EXAMPLES = 10
_UNIT_SEPARATOR = "\x1f"  # stands in for multi-character separators such as MovieLens' "::"
Problem = tuple[int, str, str]  # (row or line number, message, reason)
_EPOCH = pd.Timestamp(0, tz="UTC")


@dataclass(frozen=True)
class Field:
    """A column a loader needs: its name (in the header, or given to a header-less column) and
    its kind. ``id``: non-empty text, whitespace trimmed; ``int``/``float``: a finite number (an
    ``int`` may be written ``5.0``); ``time``: unix seconds or ISO-8601 date-times, converted to
    int64 unix seconds; ``text``: anything, kept as is ("" where empty)."""

    name: str
    kind: Kind = "text"


@dataclass
class SkipReport:
    """What ``on_error="skip"`` left out: how many rows, how many per reason, first messages."""

    count: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)


class RowErrors:
    """Where a loader sends each malformed row: raised at once, or recorded and skipped."""

    def __init__(self, on_error: OnError = "raise") -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
        self.on_error = on_error
        self.report = SkipReport()

    def add(self, problem: str, *, file: str, line: int | None, reason: str) -> None:
        """Raise :class:`DataError` for this row, or record it when skipping."""
        error = DataError(problem, file=file, line=line)
        if self.on_error == "raise":
            raise error
        self.report.count += 1
        self.report.reasons[reason] = self.report.reasons.get(reason, 0) + 1
        if len(self.report.examples) < MAX_EXAMPLES:
            self.report.examples.append(str(error))

    def extras(self, dataset: str) -> dict[str, Any]:
        """``{"skipped": SkipReport}`` when skipping (warning if anything was skipped), else {}."""
        if self.on_error != "skip":
            return {}
        if self.report.count:
            reasons = ", ".join(f"{n} {r}" for r, n in self.report.reasons.items())
            warnings.warn(
                f"{dataset}: skipped {self.report.count} malformed rows ({reasons}); first: {self.report.examples[0]}",
                stacklevel=3,
            )
        return {"skipped": self.report}


# ---------------------------------------------------------------------------------- columns
def check_columns(
    columns: Mapping[str, pa.Array | pa.ChunkedArray],
    fields: Sequence[Field],
    *,
    file: str,
    lines: Sequence[int] | np.ndarray | None,
    errors: RowErrors,
) -> tuple[dict[str, Any], np.ndarray]:
    """Check and convert each field's column (vectorised), sending every bad value to ``errors``.

    ``lines`` gives each row's line number for the messages; ``None`` says "row N" instead.
    Returns the converted columns and the mask of good rows.
    """
    converted, good, problems = _inspect(columns, fields)
    for row, problem, reason in problems:
        if lines is None:
            errors.add(f"row {row + 1}: {problem}", file=file, line=None, reason=reason)
        else:
            errors.add(problem, file=file, line=int(lines[row]), reason=reason)
    return converted, good


def _inspect(
    columns: Mapping[str, pa.Array | pa.ChunkedArray], fields: Sequence[Field]
) -> tuple[dict[str, Any], np.ndarray, list[Problem]]:
    n_rows = len(columns[fields[0].name]) if fields else 0
    good = np.ones(n_rows, dtype=bool)
    converted: dict[str, Any] = {}
    problems: list[Problem] = []
    for spec in fields:
        raw = columns[spec.name]
        values, bad, what = _convert(spec, raw.combine_chunks() if isinstance(raw, pa.ChunkedArray) else raw)
        converted[spec.name] = values
        if bad is not None:
            for row in np.flatnonzero(bad).tolist():
                value = raw[row].as_py()
                problem = f"{spec.name} is missing" if value is None else f"{spec.name} {value!r} {what}"
                problems.append((row, problem, f"bad {spec.kind}"))
            good &= ~bad
    return converted, good, sorted(problems, key=lambda p: p[0])


def _convert(spec: Field, values: pa.Array) -> tuple[Any, np.ndarray | None, str]:
    """(converted values, mask of bad rows or None, what is wrong with a bad value)."""
    numeric = spec.kind in ("int", "float", "time")
    whole = spec.kind in ("int", "time")
    if whole and pa.types.is_integer(values.type) and values.null_count == 0:
        return values.cast(pa.int64()).to_numpy(), None, ""
    if numeric and (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
        numbers = pc.fill_null(pc.cast(values, pa.float64()), np.nan).to_numpy(zero_copy_only=False)
        return _numbers(numbers, spec.kind)
    if spec.kind == "time" and pa.types.is_timestamp(values.type):
        numbers = pc.cast(pc.cast(values, pa.timestamp("s", tz=values.type.tz)), pa.int64())
        numbers = pc.fill_null(pc.cast(numbers, pa.float64()), np.nan).to_numpy(zero_copy_only=False)
        return _numbers(numbers, "time")
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = pc.cast(values, pa.string())
    text = pc.fill_null(values, "")
    if spec.kind == "text":
        return text.to_pandas(), None, ""
    trimmed = pc.utf8_trim_whitespace(text)
    if spec.kind == "id":
        bad = pc.equal(pc.utf8_length(trimmed), 0).to_numpy(zero_copy_only=False)
        return trimmed.to_pandas(), (bad if bad.any() else None), "is empty"
    try:  # pyarrow's strict parses are fast (and exact for int64); pandas' lenient one decides when they fail
        if whole:
            return pc.cast(trimmed, pa.int64()).to_numpy(zero_copy_only=False), None, ""
    except pa.ArrowInvalid:
        pass
    try:
        numbers = pc.cast(trimmed, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        numbers = pd.to_numeric(trimmed.to_pandas(), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if spec.kind == "time" and np.isnan(numbers).all():  # ISO-8601, e.g. "2019-11-24 00:03:13.44+00:00"
        stamps = pd.to_datetime(trimmed.to_pandas(), format="ISO8601", utc=True, errors="coerce")
        numbers = np.floor((stamps - _EPOCH).dt.total_seconds().to_numpy(dtype=np.float64, na_value=np.nan))
    return _numbers(numbers, spec.kind)


def _numbers(numbers: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray | None, str]:
    bad = ~np.isfinite(numbers)
    if kind == "float":
        return numbers.astype(np.float64), (bad if bad.any() else None), "is not a number"
    safe = np.where(bad, 0.0, numbers)
    bad |= safe != np.floor(safe)
    what = "is not an integer" if kind == "int" else "is not unix seconds or an ISO-8601 date-time"
    return safe.astype(np.int64), (bad if bad.any() else None), what


# ---------------------------------------------------------------------------------- delimited
def read_delimited(
    member: Member,
    fields: Sequence[Field],
    *,
    errors: RowErrors,
    sep: str = ",",
    header: bool = False,
    quoting: bool = False,
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Read a delimited text file (plain or .gz) and check its rows.

    Without ``header`` the file has exactly ``len(fields)`` columns, named by ``fields``. With
    ``header`` the first non-blank line names the columns; ``fields`` are the needed ones (a
    missing one is a DataError), and every other column is kept as int64, float64 or text,
    whichever parses ("" counts as missing). ``quoting`` turns on CSV double quotes (MovieLens
    CSV); tab and pipe formats leave it off, as their text holds bare quotes. ``sep`` may be
    longer than one character (``"::"``). The fields come back converted per their kind.
    """
    raw = member.read_bytes()
    if encoding.replace("-", "").lower() == "utf8":
        raw = raw.removeprefix(b"\xef\xbb\xbf")
    if len(sep) > 1:
        raw = raw.replace(sep.encode(encoding), _UNIT_SEPARATOR.encode())
        sep = _UNIT_SEPARATOR
    if not raw.strip():
        raise DataError("empty file", file=member.label)
    names = [f.name for f in fields]
    if header:
        columns = _header_of(raw, sep, quoting, encoding)
        missing = [n for n in names if n not in columns]
        if missing:
            raise DataError(f"missing column(s) {missing}; the header has {columns}", file=member.label)
    else:
        columns = names
    reader = _ArrowReader(sep, quoting, encoding, columns, header)
    try:
        table: pa.Table | None = reader.read(raw)
    except (pa.ArrowInvalid, UnicodeDecodeError):
        table = None
    if table is not None:
        if table.num_rows == 0:
            raise DataError("empty file: a header and no rows", file=member.label)
        converted, good, _ = _inspect({n: table.column(n) for n in names}, fields)
        if good.all():
            return _frame(table, converted)
    return _slow_read(raw, fields, reader, columns, file=member.label, errors=errors)


class _ArrowReader:
    """pyarrow's CSV reader set up for one format, reading every column as text."""

    def __init__(self, sep: str, quoting: bool, encoding: str, columns: list[str], header: bool) -> None:
        self.sep, self.quoting, self.encoding, self.header = sep, quoting, encoding, header
        self.parse = pacsv.ParseOptions(
            delimiter=sep, quote_char='"' if quoting else False, newlines_in_values=quoting, ignore_empty_lines=True
        )
        self.read_options = pacsv.ReadOptions(
            column_names=None if header else columns, encoding=encoding, block_size=1 << 24
        )
        self.convert = pacsv.ConvertOptions(
            column_types={c: pa.string() for c in columns}, strings_can_be_null=False, quoted_strings_can_be_null=False
        )

    def read(self, raw: bytes) -> pa.Table:
        return pacsv.read_csv(
            pa.py_buffer(raw), read_options=self.read_options, parse_options=self.parse, convert_options=self.convert
        )


def read_header(member: Member, *, sep: str = ",", quoting: bool = False, encoding: str = "utf-8") -> list[str]:
    """The column names in the first non-blank line of a delimited file ([] for an empty file)."""
    raw = member.read_bytes().removeprefix(b"\xef\xbb\xbf")
    if len(sep) > 1:
        raw, sep = raw.replace(sep.encode(encoding), _UNIT_SEPARATOR.encode()), _UNIT_SEPARATOR
    return _header_of(raw, sep, quoting, encoding) if raw.strip() else []


def _header_of(raw: bytes, sep: str, quoting: bool, encoding: str) -> list[str]:
    first = next(line for line in raw.split(b"\n") if line.strip())
    text = first.rstrip(b"\r").decode(encoding, errors="replace")
    return next(csv.reader([text], delimiter=sep)) if quoting else text.split(sep)


def _frame(table: pa.Table, converted: dict[str, Any]) -> pd.DataFrame:
    """The table as pandas: needed columns as converted, the others as int, float or text."""
    data: dict[str, Any] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        data[name] = converted[name] if name in converted else _infer(column)
    return pd.DataFrame(data)


def _infer(column: pa.ChunkedArray) -> pd.Series:
    values = pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)
    for target in (pa.int64(), pa.float64()):
        try:
            return pc.cast(values, target).to_pandas()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return column.to_pandas()


def _slow_read(
    raw: bytes, fields: Sequence[Field], reader: _ArrowReader, columns: list[str], *, file: str, errors: RowErrors
) -> pd.DataFrame:
    """Line by line: report every bad row (the first raises), then re-read the good ones."""
    lines = raw.split(b"\n")
    header_line = next(n for n, line in enumerate(lines, start=1) if line.strip()) if reader.header else 0
    problems: list[Problem] = []
    decoded: list[str] = []
    numbers: list[int] = []
    for number, line in enumerate(lines, start=1):
        if line.strip() and number != header_line:
            try:
                decoded.append(line.rstrip(b"\r").decode(reader.encoding))
                numbers.append(number)
            except UnicodeDecodeError as exc:
                problems.append((number, f"not valid {reader.encoding} text ({exc.reason})", "bad encoding"))
    records, spans = _split_records(decoded, numbers, reader.sep, reader.quoting, file)
    shaped = [i for i, record in enumerate(records) if len(record) == len(columns)]
    problems += [
        (spans[i][0], f"expected {len(columns)} fields, found {len(r)}", "wrong field count")
        for i, r in enumerate(records)
        if len(r) != len(columns)
    ]
    positions = {f.name: columns.index(f.name) for f in fields}
    arrays = {n: pa.array([records[i][p] for i in shaped], type=pa.string()) for n, p in positions.items()}
    _, good, value_problems = _inspect(arrays, fields)
    problems += [(spans[shaped[row]][0], message, reason) for row, message, reason in value_problems]
    for number, problem, reason in sorted(problems, key=lambda p: p[0]):
        errors.add(problem, file=file, line=number, reason=reason)
    body = [lines[n - 1] for row in np.flatnonzero(good).tolist() for n in spans[shaped[row]]]
    if not body:
        raise DataError(f"empty file: no valid rows ({len(problems)} skipped)", file=file)
    head = [lines[header_line - 1]] if reader.header else []
    try:
        table = reader.read(b"\n".join(head + body))
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise DataError(f"could not parse the file: {exc}", file=file) from exc
    converted, _ = check_columns(
        {f.name: table.column(f.name) for f in fields}, fields, file=file, lines=None, errors=RowErrors("raise")
    )
    return _frame(table, converted)


def _split_records(
    decoded: list[str], numbers: list[int], sep: str, quoting: bool, file: str
) -> tuple[list[list[str]], list[list[int]]]:
    """Fields of each record, and the line numbers each record spans (quoted fields may span)."""
    if not quoting:
        return [line.split(sep) for line in decoded], [[n] for n in numbers]
    records: list[list[str]] = []
    spans: list[list[int]] = []
    reader = csv.reader((line + "\n" for line in decoded), delimiter=sep)
    consumed = 0
    try:
        for record in reader:
            records.append(record)
            spans.append(numbers[consumed : reader.line_num])
            consumed = reader.line_num
    except csv.Error as exc:
        raise DataError(f"unreadable CSV: {exc}", file=file, line=numbers[min(consumed, len(numbers) - 1)]) from exc
    return records, spans


# ---------------------------------------------------------------------------------- line formats
def read_json_lines(member: Member, *, errors: RowErrors) -> list[tuple[int, Any]]:
    """JSON Lines: (line number, parsed value) for each non-blank line. Bad JSON is a bad row."""
    raw = member.read_bytes()
    if not raw.strip():
        raise DataError("empty file", file=member.label)
    out: list[tuple[int, Any]] = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if line.strip():
            try:
                out.append((number, json.loads(line)))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else exc.reason
                errors.add(f"bad JSON: {reason}", file=member.label, line=number, reason="bad JSON")
    if not out:
        raise DataError("empty file: no valid rows", file=member.label)
    return out


def read_token_lines(member: Member, *, errors: RowErrors, min_tokens: int = 2) -> list[tuple[int, list[str]]]:
    """Whitespace-separated tokens per line, e.g. ``user item item ...`` (S3-Rec). A non-blank
    line with fewer than ``min_tokens`` tokens is a bad row."""
    raw = member.read_bytes()
    if not raw.strip():
        raise DataError("empty file", file=member.label)
    out: list[tuple[int, list[str]]] = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            tokens = line.decode("utf-8").split()
        except UnicodeDecodeError as exc:
            errors.add(f"not valid utf-8 text ({exc.reason})", file=member.label, line=number, reason="bad encoding")
            continue
        if len(tokens) >= min_tokens:
            out.append((number, tokens))
        elif tokens:
            errors.add(
                f"expected at least {min_tokens} fields, found {len(tokens)}",
                file=member.label,
                line=number,
                reason="wrong field count",
            )
    if not out:
        raise DataError("empty file: no valid rows", file=member.label)
    return out
