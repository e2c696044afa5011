"""The embedded default store: one SQLite file in WAL mode.

Durability (the ``synchronous`` setting):

* ``"NORMAL"`` (default): a committed event survives a crash of the process (``kill -9``,
  an exception, an OOM kill), because WAL commits reach the operating system before
  ``append_events`` returns. A power loss or kernel crash may lose the last commits (never
  corrupt the file).
* ``"FULL"`` (or ``"EXTRA"``): the WAL is also fsynced at every commit, so acknowledged
  events survive a power loss too, at the price of one fsync per ``append_events`` call.

Concurrency: each thread has its own connection, so reads run concurrently (WAL readers do
not block the writer nor each other); writes in this process take one lock and run as
``BEGIN IMMEDIATE`` transactions, and other processes wait on SQLite's busy timeout.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tastemaker.store._rows import EVENT_COLUMNS, EventRow
from tastemaker.store.base import Cursor, SQLStore, StoreError

SYNCHRONOUS = ("NORMAL", "FULL", "EXTRA")

_DDL = (
    """CREATE TABLE IF NOT EXISTS items (
        item_id TEXT PRIMARY KEY,
        title TEXT NOT NULL DEFAULT '',
        text TEXT NOT NULL DEFAULT '',
        categories TEXT NOT NULL DEFAULT '[]',
        attributes TEXT NOT NULL DEFAULT '{}',
        available INTEGER NOT NULL DEFAULT 1,
        created_at REAL NOT NULL DEFAULT 0,
        updated_at REAL NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS items_by_created_at ON items (created_at)",
    """CREATE TABLE IF NOT EXISTS users (
        user_id TEXT PRIMARY KEY,
        attributes TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id TEXT NOT NULL,
        item_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        value REAL NOT NULL,
        timestamp REAL NOT NULL,
        context TEXT NOT NULL DEFAULT '{}',
        client_id TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS events_by_user ON events (user_id, id)",
    """CREATE TABLE IF NOT EXISTS assignments (
        experiment TEXT NOT NULL,
        user_id TEXT NOT NULL,
        variant TEXT NOT NULL,
        assigned_at REAL NOT NULL,
        PRIMARY KEY (experiment, user_id)
    )""",
    """CREATE TABLE IF NOT EXISTS states (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at REAL NOT NULL
    )""",
)

# ON CONFLICT DO NOTHING (no target: any unique index) skips a retried (user_id, client_id).
_INSERT_EVENT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"


class SQLiteStore(SQLStore):
    """A :class:`~tastemaker.protocols.Store` in one SQLite file (created if missing).

    ``synchronous`` is ``"NORMAL"`` (safe against process crashes) or ``"FULL"`` (also
    against power loss); see the module docstring. ``busy_timeout`` (seconds) is how long a
    write waits for another process holding the file's write lock.
    """

    _ddl = _DDL

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL", busy_timeout: float = 30.0) -> None:
        super().__init__()
        if str(path) in ("", ":memory:") or str(path).startswith("file:"):
            raise StoreError(
                f"SQLiteStore needs a file path, got {str(path)!r}: an in-memory database is not "
                "durable and not shared between threads (use a temporary file)"
            )
        self.path = Path(path)
        self.synchronous = str(synchronous).upper()
        if self.synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous: expected one of {SYNCHRONOUS}, got {synchronous!r}")
        self.busy_timeout = float(busy_timeout)
        self._write_lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mode = self._connection().execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            self.close()
            raise StoreError(f"{self.path}: SQLite refused WAL mode (got {mode!r}); is it on a network file system?")
        self._init_schema()

    @property
    def location(self) -> str:
        return str(self.path)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; _write issues BEGIN IMMEDIATE itself.
        # check_same_thread=False only so that close() may close every thread's connection.
        connection = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        connection.execute(f"PRAGMA synchronous={self.synchronous}")
        connection.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        return connection

    @contextmanager
    def _write(self) -> Iterator[Cursor]:
        connection = self._connection()
        with self._write_lock:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection.cursor()
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self, snapshot: bool = False) -> Iterator[Cursor]:
        connection = self._connection()
        if not snapshot:
            yield connection.cursor()  # autocommit: each statement reads the latest commit
            return
        connection.execute("BEGIN")
        try:
            yield connection.cursor()
        finally:
            if connection.in_transaction:
                connection.execute("COMMIT")

    def _after_fork(self) -> None:
        self._write_lock = threading.Lock()  # a parent thread may have held it at fork time

    def _insert_events(self, cursor: Cursor, rows: list[EventRow]) -> int:
        cursor.executemany(_INSERT_EVENT, rows)
        return int(cursor.rowcount)  # the rows inserted: a skipped retry is not counted

    def checkpoint(self) -> None:
        """Fold the WAL into the main file and truncate it (e.g. before copying the file)."""
        with self._write_lock:
            self._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
