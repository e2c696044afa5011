"""open_store: URL to backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from tastemaker.store import SQLiteStore, StoreError, open_store


def test_sqlite_urls_and_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absolute = open_store(f"sqlite:///{tmp_path}/a.db")  # sqlite:////abs/path: four slashes
    assert isinstance(absolute, SQLiteStore) and absolute.path == tmp_path / "a.db"
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///sub/b.db?synchronous=FULL")
    assert isinstance(relative, SQLiteStore) and relative.path == Path("sub/b.db") and relative.synchronous == "FULL"
    assert (tmp_path / "sub" / "b.db").exists()
    plain = open_store(tmp_path / "c.db", synchronous="FULL")
    assert isinstance(plain, SQLiteStore) and plain.synchronous == "FULL"
    for store in (absolute, relative, plain):
        store.close()


def test_bad_urls() -> None:
    with pytest.raises(StoreError, match="unsupported store URL scheme 'redis'"):
        open_store("redis://localhost")
    with pytest.raises(StoreError, match="sqlite:///"):
        open_store("sqlite://host/x.db")
