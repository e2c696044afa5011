"""The same store contract on PostgreSQL (psycopg 3), for deployments with several servers.

Install with ``pip install 'tastemaker[postgres]'``. Durability is the server's: a commit
returns once PostgreSQL has flushed its WAL (``synchronous_commit = on``, the default), so
``append_events`` acknowledges only durable events.

Each thread has its own connection (autocommit off, one commit per call). Appends take an
``EXCLUSIVE`` lock on the events table for their transaction: reads go on, but appends commit
one at a time, so event ids become visible in increasing order and ``events_since`` never
skips an event that commits late. Bulk appends use ``COPY``.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tastemaker.errors import MissingExtraError
from tastemaker.store._rows import EVENT_COLUMNS, EventRow
from tastemaker.store.base import Cursor, SQLStore

if TYPE_CHECKING:
    import psycopg

_DDL = (
    """CREATE TABLE IF NOT EXISTS items (
        item_id TEXT PRIMARY KEY,
        title TEXT NOT NULL DEFAULT '',
        text TEXT NOT NULL DEFAULT '',
        categories JSONB NOT NULL DEFAULT '[]',
        attributes JSONB NOT NULL DEFAULT '{}',
        available BOOLEAN NOT NULL DEFAULT TRUE,
        created_at DOUBLE PRECISION NOT NULL DEFAULT 0,
        updated_at DOUBLE PRECISION NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS items_by_created_at ON items (created_at)",
    """CREATE TABLE IF NOT EXISTS users (
        user_id TEXT PRIMARY KEY,
        attributes JSONB NOT NULL DEFAULT '{}',
        created_at DOUBLE PRECISION NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS events (
        id BIGSERIAL PRIMARY KEY,
        user_id TEXT NOT NULL,
        item_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        value DOUBLE PRECISION NOT NULL,
        timestamp DOUBLE PRECISION NOT NULL,
        context JSONB NOT NULL DEFAULT '{}',
        client_id TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS events_by_user ON events (user_id, id)",
    """CREATE TABLE IF NOT EXISTS assignments (
        experiment TEXT NOT NULL,
        user_id TEXT NOT NULL,
        variant TEXT NOT NULL,
        assigned_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (experiment, user_id)
    )""",
    """CREATE TABLE IF NOT EXISTS states (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    )""",
)

_INSERT_EVENT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise MissingExtraError("psycopg", "postgres") from None
    return psycopg


class PostgresStore(SQLStore):
    """A :class:`~tastemaker.protocols.Store` in a PostgreSQL database.

    ``dsn`` is a libpq connection string or URL (``postgresql://user@host:5432/db``).
    ``schema`` (an identifier) keeps the tables in their own PostgreSQL schema, created if
    missing, so that several stores can share one database; by default the tables go in the
    connection's default schema (``public``).
    """

    _ddl = _DDL

    def __init__(self, dsn: str, *, schema: str | None = None, connect_timeout: int = 10) -> None:
        self._psycopg = _import_psycopg()
        super().__init__()
        if schema is not None and not _IDENTIFIER.fullmatch(schema):
            raise ValueError(f"schema: {schema!r} is not a plain identifier (letters, digits, _)")
        self.dsn = dsn
        self.schema = schema
        self.connect_timeout = int(connect_timeout)
        self._init_schema()

    @property
    def location(self) -> str:
        try:
            params = self._psycopg.conninfo.conninfo_to_dict(self.dsn)
        except Exception:  # a malformed DSN fails on connect, with libpq's message
            return "postgresql://?"
        user, host, port, dbname = (params.get(key, "") for key in ("user", "host", "port", "dbname"))
        where = f"postgresql://{user}@{host}:{port}/{dbname}"
        return where + (f" (schema {self.schema})" if self.schema else "")

    def _connect(self) -> psycopg.Connection[Any]:
        from psycopg import sql
        from psycopg.types.string import TextLoader

        connection = self._psycopg.connect(self.dsn, autocommit=False, connect_timeout=self.connect_timeout)
        # JSON columns are read as text and decoded by the shared code, as for SQLite.
        connection.adapters.register_loader("jsonb", TextLoader)
        connection.adapters.register_loader("json", TextLoader)
        if self.schema:
            connection.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
            connection.commit()
        return connection  # type: ignore[no-any-return]

    def _is_usable(self, connection: Any) -> bool:
        return not (connection.closed or connection.broken)

    def _sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def _prepare_schema(self, cursor: Cursor) -> None:
        # Serialize concurrent openers: CREATE ... IF NOT EXISTS races in PostgreSQL.
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (zlib.crc32(f"tastemaker:{self.schema}".encode()),))
        if self.schema:
            from psycopg import sql

            cursor.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))

    @contextmanager
    def _transaction(self) -> Iterator[Cursor]:
        connection = self._connection()
        try:
            with connection.cursor() as cursor:
                yield cursor
            connection.commit()
        except BaseException:
            try:
                connection.rollback()
            except Exception:  # a broken connection: drop it, reconnect next time
                self._forget(connection)
            raise

    def _write(self) -> Any:
        return self._transaction()

    @contextmanager
    def _read(self, snapshot: bool = False) -> Iterator[Cursor]:
        with self._transaction() as cursor:
            if snapshot:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield cursor

    def _insert_events(self, cursor: Cursor, rows: list[EventRow]) -> int:
        cursor.execute("LOCK TABLE events IN EXCLUSIVE MODE")
        if any(row[6] is not None for row in rows):
            # Rows with a client id may be retries: insert one by one (in order, so ids keep
            # the request's order) and let the unique index skip what is already stored.
            written = 0
            for row in rows:
                cursor.execute(_INSERT_EVENT, row)
                written += max(int(cursor.rowcount), 0)
            return written
        if len(rows) == 1:
            cursor.execute(_INSERT_EVENT, rows[0])
        else:
            with cursor.copy(f"COPY events ({EVENT_COLUMNS}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for row in rows:
                    copy.write_row(row)
        return len(rows)
