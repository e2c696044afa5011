"""SQLiteStore: the conformance suite plus what is specific to SQLite."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest

from tastemaker.protocols import Event
from tastemaker.store import SCHEMA_VERSION, SQLiteStore, StoreError, StoreSchemaError
from tastemaker.testing.store import StoreConformance


class TestSQLiteStore(StoreConformance):
    def make_store(self, location: Path) -> SQLiteStore:
        return SQLiteStore(location / "store.db")


def test_wal_mode_and_synchronous(tmp_path: Path) -> None:
    for setting, code in (("NORMAL", 1), ("full", 2)):
        store = SQLiteStore(tmp_path / f"{setting}.db", synchronous=setting)
        connection = store._connection()
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == code
        store.close()
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore(tmp_path / "off.db", synchronous="OFF")


def test_in_memory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="file path"):
        SQLiteStore(":memory:")


def test_tables_and_indexes(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "s.db").close()
    db = sqlite3.connect(tmp_path / "s.db")
    tables = ("items", "users", "events", "assignments")
    columns = {t: [r[1] for r in db.execute(f"PRAGMA table_info({t})")] for t in tables}
    assert columns == {
        "items": ["item_id", "title", "text", "categories", "attributes", "available", "created_at", "updated_at"],
        "users": ["user_id", "attributes", "created_at"],
        "events": ["id", "user_id", "item_id", "event_type", "value", "timestamp", "context", "client_id"],
        "assignments": ["experiment", "user_id", "variant", "assigned_at"],
    }
    assert [r[2] for r in db.execute("PRAGMA index_info(events_by_user)")] == ["user_id", "id"]
    assert [r[2] for r in db.execute("PRAGMA index_info(events_by_client)")] == ["user_id", "client_id"]
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "s.db").close()
    with sqlite3.connect(tmp_path / "s.db") as db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreSchemaError, match=rf"schema version {SCHEMA_VERSION + 1}, newer .*upgrade tastemaker"):
        SQLiteStore(tmp_path / "s.db")


def test_a_connection_per_thread_closed_together(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    seen: list[object] = []

    def use() -> None:
        store.append_events([Event("u", "i")])
        seen.append(store._connection())

    threads = [threading.Thread(target=use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in seen}) == 4 and store.count_events() == 4
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        seen[0].execute("SELECT 1")  # type: ignore[attr-defined]


def test_two_stores_on_one_file_share_writes(tmp_path: Path) -> None:
    first, second = SQLiteStore(tmp_path / "s.db"), SQLiteStore(tmp_path / "s.db")
    first.append_events([Event("u", "a")])
    second.append_events([Event("u", "b")])
    assert [e.item_id for e in first.history("u")] == ["a", "b"]
    first.close()
    second.close()


def _append_in_child(store: SQLiteStore) -> None:
    store.append_events([Event("child", "i")])


def test_a_forked_child_opens_its_own_connections(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    store.append_events([Event("parent", "i")])  # the parent's connection exists before the fork
    child = multiprocessing.get_context("fork").Process(target=_append_in_child, args=(store,))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert store.event_count_by_user() == {"parent": 1, "child": 1}
    store.close()


def test_a_version_1_store_is_migrated_on_open(tmp_path: Path) -> None:
    """A store written before client event ids (schema 1) opens, keeps its events, and then
    deduplicates retries like a new one."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            CREATE TABLE schema_version (version INTEGER NOT NULL);
            INSERT INTO schema_version VALUES (1);
            CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL, item_id TEXT NOT NULL,
                event_type TEXT NOT NULL, value REAL NOT NULL, timestamp REAL NOT NULL, context TEXT NOT NULL DEFAULT '{}');
            INSERT INTO events (user_id, item_id, event_type, value, timestamp) VALUES ('u', 'old', 'click', 1, 5);
            """
        )
    store = SQLiteStore(path)
    assert store.schema_version() == SCHEMA_VERSION == 2
    assert store.history("u") == [Event("u", "old", "click", 1.0, 5.0)]
    assert store.append_events([Event("u", "new", event_id="x")] * 2) == 1
    store.close()
    assert SQLiteStore(path).history("u")[-1] == Event("u", "new", event_id="x")
