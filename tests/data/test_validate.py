"""Row validation on small files written to tmp_path: each bad row names its file and line."""

from __future__ import annotations

import gzip
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tastemaker.data.loaders._files import Member
from tastemaker.data.validate import (
    Field,
    OnError,
    RowErrors,
    SkipReport,
    read_delimited,
    read_header,
    read_json_lines,
    read_token_lines,
)
from tastemaker.errors import DataError

RATINGS = [Field("user", "id"), Field("item", "id"), Field("value", "float"), Field("timestamp", "int")]
GOOD = "1\t10\t4\t100\n1\t11\t5\t101\n2\t10\t3\t102\n"


def write(tmp_path: Path, name: str, text: str | bytes) -> Member:
    path = tmp_path / name
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return Member(path)


def read_tsv(member: Member, on_error: OnError = "raise") -> tuple[pd.DataFrame, RowErrors]:
    errors = RowErrors(on_error)
    return read_delimited(member, RATINGS, errors=errors, sep="\t"), errors


def test_clean_file_converts_each_kind(tmp_path: Path) -> None:
    frame, _ = read_tsv(write(tmp_path, "r.tsv", GOOD))
    assert frame["user"].tolist() == ["1", "1", "2"] and frame["value"].tolist() == [4.0, 5.0, 3.0]
    assert frame["timestamp"].dtype == np.int64 and frame["value"].dtype == np.float64


@pytest.mark.parametrize(
    ("bad_line", "problem"),
    [
        ("3\t12\tfive\t103", "value 'five' is not a number"),
        ("3\t12\t4\t10.5", "timestamp '10.5' is not an integer"),
        ("3\t12\t4", "expected 4 fields, found 3"),
        ("3\t12\t4\t103\textra", "expected 4 fields, found 5"),
        ("\t12\t4\t103", "user '' is empty"),
        ("3\t12\tnan\t103", "value 'nan' is not a number"),
    ],
)
def test_a_bad_row_names_file_line_and_problem(tmp_path: Path, bad_line: str, problem: str) -> None:
    member = write(tmp_path, "r.tsv", GOOD + "\n" + bad_line + "\n2\t11\t1\t104\n")  # a blank line before it
    with pytest.raises(DataError) as caught:
        read_tsv(member)
    assert caught.value.line == 5 and caught.value.file == str(member.location)
    assert caught.value.problem == problem
    assert str(caught.value) == f"{member.location}, line 5: {problem}"


def test_skip_drops_bad_rows_and_reports_them(tmp_path: Path) -> None:
    member = write(tmp_path, "r.tsv", GOOD + "3\tx\tbad\t1\n4\t1\n5\t1\t2\t3\n\t1\t2\t3\n")
    frame, errors = read_tsv(member, on_error="skip")
    assert frame["user"].tolist() == ["1", "1", "2", "5"]
    report = errors.report
    assert report.count == 3 and report.reasons == {"bad float": 1, "wrong field count": 1, "bad id": 1}
    assert report.examples[0].endswith("line 4: value 'bad' is not a number")
    with pytest.warns(UserWarning, match="skipped 3 malformed rows"):
        extras = errors.extras("test")
    assert isinstance(extras["skipped"], SkipReport)


def test_skip_with_nothing_bad_reports_zero_without_warning(tmp_path: Path) -> None:
    _, errors = read_tsv(write(tmp_path, "r.tsv", GOOD), on_error="skip")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert errors.extras("test")["skipped"].count == 0
    assert RowErrors("raise").extras("test") == {}


def test_every_row_bad_is_an_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no valid rows"):
        read_tsv(write(tmp_path, "r.tsv", "a\tb\tc\td\n"), on_error="skip")


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    member = write(tmp_path, "r.tsv", text)
    with pytest.raises(DataError) as caught:
        read_tsv(member)
    assert str(caught.value) == f"{member.location}: empty file"


def test_header_only_is_empty(tmp_path: Path) -> None:
    member = write(tmp_path, "r.csv", "user,item,value,timestamp\n")
    with pytest.raises(DataError, match="empty file"):
        read_delimited(member, RATINGS, errors=RowErrors(), header=True)


def test_missing_columns_are_named(tmp_path: Path) -> None:
    member = write(tmp_path, "r.csv", "user,item,score\n1,2,3\n")
    with pytest.raises(DataError) as caught:
        read_delimited(member, RATINGS, errors=RowErrors(), header=True)
    assert "['value', 'timestamp']" in str(caught.value) and str(member.location) in str(caught.value)


def test_header_csv_keeps_and_types_other_columns(tmp_path: Path) -> None:
    text = ',user,item,value,timestamp,score,label\n0,1,2,3,4,0.5,a\n1,1,3,4,5,,"b, c"\n'
    frame = read_delimited(write(tmp_path, "r.csv", text), RATINGS, errors=RowErrors(), header=True, quoting=True)
    assert frame[""].tolist() == [0, 1] and frame["label"].tolist() == ["a", "b, c"]
    assert frame["score"].iloc[0] == 0.5 and np.isnan(frame["score"].iloc[1])
    assert read_header(write(tmp_path, "h.csv", text)) == ["", "user", "item", "value", "timestamp", "score", "label"]


def test_quoted_newlines_keep_line_numbers(tmp_path: Path) -> None:
    text = 'user,item,value,timestamp,note\n1,2,3,4,"two\nlines"\n1,3,x,5,ok\n'
    with pytest.raises(DataError) as caught:
        read_delimited(write(tmp_path, "r.csv", text), RATINGS, errors=RowErrors(), header=True, quoting=True)
    assert caught.value.line == 4


def test_gzip_crlf_and_multichar_separator(tmp_path: Path) -> None:
    member = write(tmp_path, "r.dat.gz", GOOD.replace("\t", "::").replace("\n", "\r\n"))
    frame = read_delimited(member, RATINGS, errors=RowErrors(), sep="::")
    assert frame["timestamp"].tolist() == [100, 101, 102]
    bad = write(tmp_path, "b.dat", "1::2::3::4\n1::2::3\n")
    with pytest.raises(DataError, match="line 2: expected 4 fields, found 3"):
        read_delimited(bad, RATINGS, errors=RowErrors(), sep="::")


def test_encodings(tmp_path: Path) -> None:
    fields = [Field("id", "id"), Field("title")]
    latin = write(tmp_path, "latin.txt", "1|Misérables, Les (1995)\n".encode("latin-1"))
    assert (
        read_delimited(latin, fields, errors=RowErrors(), sep="|", encoding="latin-1")["title"][0]
        == "Misérables, Les (1995)"
    )
    broken = write(tmp_path, "utf8.txt", b"1|ok\n2|Mis\xe9rables\n3|fine\n")
    with pytest.raises(DataError, match="line 2: not valid utf-8 text"):
        read_delimited(broken, fields, errors=RowErrors(), sep="|")
    errors = RowErrors("skip")
    assert read_delimited(broken, fields, errors=errors, sep="|")["id"].tolist() == ["1", "3"]


def test_time_kind_reads_unix_seconds_or_iso_dates(tmp_path: Path) -> None:
    fields = [Field("t", "time")]
    iso = write(tmp_path, "iso.csv", "t\n2019-11-24 00:03:13.442536+00:00\n1970-01-01T00:01:00Z\n")
    assert read_delimited(iso, fields, errors=RowErrors(), header=True)["t"].tolist() == [1574553793, 60]
    with pytest.raises(DataError, match="line 3: t 'yesterday'"):
        read_delimited(
            write(tmp_path, "bad.csv", "t\n2019-11-24\nyesterday\n"), fields, errors=RowErrors(), header=True
        )


def test_json_lines(tmp_path: Path) -> None:
    member = write(tmp_path, "m.json", '{"a": 1}\n\n{"a": 2\n[3]\n')
    with pytest.raises(DataError, match=r"line 3: bad JSON"):
        read_json_lines(member, errors=RowErrors())
    errors = RowErrors("skip")
    assert read_json_lines(member, errors=errors) == [(1, {"a": 1}), (4, [3])]
    assert errors.report.reasons == {"bad JSON": 1}
    with pytest.raises(DataError, match="empty file"):
        read_json_lines(write(tmp_path, "e.json", "\n"), errors=RowErrors())


def test_token_lines(tmp_path: Path) -> None:
    member = write(tmp_path, "seq.txt", "1 5 6 7\n2\n3 8\n")
    with pytest.raises(DataError, match="line 2: expected at least 2 fields, found 1"):
        read_token_lines(member, errors=RowErrors())
    assert [line for line, _ in read_token_lines(member, errors=RowErrors("skip"))] == [1, 3]


def test_clean_files_take_the_fast_path(tmp_path: Path) -> None:
    rows = 300_000
    text = "".join(f"{u}\t{u % 977}\t{u % 5 + 1}\t{u}\n" for u in range(rows))
    member = write(tmp_path, "big.tsv", text)
    start = time.perf_counter()
    frame, _ = read_tsv(member)
    assert len(frame) == rows and time.perf_counter() - start < 3.0


def test_on_error_must_be_known() -> None:
    with pytest.raises(ValueError, match="on_error"):
        RowErrors("ignore")  # type: ignore[arg-type]
