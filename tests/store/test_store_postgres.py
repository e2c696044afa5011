"""PostgresStore against a real server (tests/store/conftest.py starts one)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from tastemaker.errors import MissingExtraError
from tastemaker.protocols import Event
from tastemaker.store import SCHEMA_VERSION, PostgresStore, StoreSchemaError, open_store
from tastemaker.testing.store import StoreConformance


def schema_for(location: Path) -> str:
    """One PostgreSQL schema per test directory: tests are isolated and reopenable."""
    return "t_" + hashlib.sha1(str(location).encode()).hexdigest()[:20]


class TestPostgresStore(StoreConformance):
    @pytest.fixture(autouse=True)
    def _server(self, postgres_dsn: str) -> None:
        self.dsn = postgres_dsn

    def make_store(self, location: Path) -> PostgresStore:
        return PostgresStore(self.dsn, schema=schema_for(location))


@pytest.fixture
def store(postgres_dsn: str, tmp_path: Path) -> PostgresStore:
    return PostgresStore(postgres_dsn, schema=schema_for(tmp_path))


def test_tables_are_jsonb_and_bigserial(store: PostgresStore) -> None:
    with store._read() as cur:
        rows = cur.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = %s",
            (store.schema,),
        ).fetchall()
        default = cur.execute(
            "SELECT column_default FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = 'events' AND column_name = 'id'",
            (store.schema,),
        ).fetchone()[0]
    types = {(t, c): d for t, c, d in rows}
    assert types[("events", "id")] == "bigint" and default.startswith("nextval(")
    assert types[("events", "context")] == types[("items", "attributes")] == types[("items", "categories")] == "jsonb"
    assert types[("items", "available")] == "boolean"
    store.close()


def test_newer_schema_is_refused(store: PostgresStore, postgres_dsn: str) -> None:
    with store._write() as cur:
        cur.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    store.close()
    with pytest.raises(StoreSchemaError, match=r"newer than this tastemaker understands .*upgrade"):
        PostgresStore(postgres_dsn, schema=store.schema)


def test_open_store_url(postgres_dsn: str, tmp_path: Path) -> None:
    with_password = postgres_dsn.replace("postgres@", "postgres:s3cret@", 1)  # the test server trusts loopback
    store = open_store(with_password, schema=schema_for(tmp_path))
    assert isinstance(store, PostgresStore) and store.count_events() == 0
    assert "s3cret" not in repr(store) and "s3cret" not in store.location
    assert store.schema is not None and store.schema in repr(store)
    store.close()


def test_reconnects_after_the_connection_drops(store: PostgresStore, postgres_dsn: str) -> None:
    import psycopg

    store.append_events([Event("u", "a")])
    pid = store._connection().info.backend_pid
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(psycopg.OperationalError):
        store.count_events()  # the call that finds the connection dead fails...
    store.append_events([Event("u", "b")])  # ...and the next one reconnects
    assert [e.item_id for e in store.history("u")] == ["a", "b"]
    store.close()


def test_missing_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # makes `import psycopg` raise ImportError
    with pytest.raises(MissingExtraError, match=r"tastemaker\[postgres\]"):
        PostgresStore("postgresql://nowhere/db")
