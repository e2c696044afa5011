"""What the SQL stores share: every public method, written once over a small backend hook set.

A backend (``sqlite.py``, ``postgres.py``) supplies its DDL, how to connect, how to run a
write transaction and a read, and how to insert many events fast. SQL here is written with
``?`` placeholders; a backend whose driver wants another style rewrites it in :meth:`_sql`.

Connections are per thread (``threading.local``), so reads from a FastAPI thread pool and its
event loop run concurrently; each backend serializes or locks writes as its engine needs.
"""

from __future__ import annotations

import math
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, suppress
from typing import TYPE_CHECKING, Any, Protocol

from tastemaker.errors import TastemakerError
from tastemaker.protocols import EXPOSURE_TYPES, Event, Item
from tastemaker.store._rows import (
    EVENT_COLUMNS,
    ITEM_COLUMNS,
    EventRow,
    check_ids,
    check_limit,
    check_number,
    check_text,
    decode_json,
    event_from_row,
    event_rows,
    item_from_row,
    item_rows,
    user_rows,
)

if TYPE_CHECKING:
    import pandas as pd

    from tastemaker.data.dataset import Dataset

#: The schema this code writes. Opening a store written by a newer version raises
#: :class:`StoreSchemaError` instead of guessing; an older one is migrated on open.
SCHEMA_VERSION = 2

#: Statements that bring a store of version ``v - 1`` to version ``v`` (run in order on open).
#: Version 2: client event ids (``Event.event_id``), unique per user, for idempotent retries.
_MIGRATIONS: dict[int, tuple[str, ...]] = {2: ("ALTER TABLE events ADD COLUMN client_id TEXT",)}

#: Created after the migrations, since they may index migrated columns. The index is partial:
#: events without a client id (most bulk imports) cost nothing extra.
_INDEXES = (
    "CREATE UNIQUE INDEX IF NOT EXISTS events_by_client ON events (user_id, client_id) WHERE client_id IS NOT NULL",
)

#: Ids per ``IN (...)`` query (SQLite allows 32766 parameters; this stays far below).
_ID_BATCH = 500

#: Connections inherited through fork(), kept referenced so they are never closed in the child.
_INHERITED: list[Any] = []


class StoreError(TastemakerError, RuntimeError):
    """The store cannot do what was asked (closed, unsupported location, bad schema...)."""


class StoreSchemaError(StoreError):
    """The stored schema version is not one this code can read."""


class Cursor(Protocol):
    """The DB-API subset both drivers (sqlite3, psycopg) provide."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, query: Any, params: Any = ..., /) -> Any: ...

    def executemany(self, query: Any, params_seq: Any, /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


_UPSERT_ITEM = """
INSERT INTO items (item_id, title, text, categories, attributes, available, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (item_id) DO UPDATE SET
    title = excluded.title, text = excluded.text, categories = excluded.categories,
    attributes = excluded.attributes, available = excluded.available,
    created_at = CASE WHEN excluded.created_at = 0 THEN items.created_at ELSE excluded.created_at END,
    updated_at = excluded.updated_at
"""

_UPSERT_USER = """
INSERT INTO users (user_id, attributes, created_at) VALUES (?, ?, ?)
ON CONFLICT (user_id) DO UPDATE SET attributes = excluded.attributes
"""

_VARIANT_STATS = """
SELECT a.variant,
       COUNT(DISTINCT a.user_id),
       COALESCE(SUM(CASE WHEN e.event_type = ? THEN 1 ELSE 0 END), 0),
       COALESCE(SUM(CASE WHEN e.event_type = ? THEN 1 ELSE 0 END), 0),
       COALESCE(SUM(CASE WHEN e.event_type = ? THEN 1 ELSE 0 END), 0)
FROM assignments a
LEFT JOIN events e ON e.user_id = a.user_id AND e.event_type IN (?, ?, ?)
WHERE a.experiment = ?
GROUP BY a.variant
ORDER BY a.variant
"""


class SQLStore(ABC):
    """The :class:`~tastemaker.protocols.Store` contract plus the serving extras, over SQL.

    Contract (both backends, tested by :class:`tastemaker.testing.store.StoreConformance`):

    * ``append_events`` commits all its events in one transaction before it returns and
      returns how many it wrote; an acknowledged event survives a crash of the process.
      Events get increasing ids in commit order (``events_since`` relies on it). An event
      whose ``(user_id, event_id)`` is already stored is skipped (not written, not counted):
      a client retry is a no-op.
    * ``history`` returns a user's most recent ``limit`` events, oldest first, in the order
      they were appended (not re-sorted by their client-given ``timestamp``).
    * ``upsert_items`` inserts new items and replaces every field of existing ones, except
      that ``created_at == 0.0`` (unknown) keeps the stored creation time.
    * Bad input raises ``ValueError`` whose message starts with the field at fault
      (``events[2].value: nan is not a finite number``) and writes nothing.
    * All methods are safe to call from many threads at once.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._connections: list[Any] = []
        self._registry = threading.Lock()
        self._closed = False
        self._pid = os.getpid()

    # ------------------------------------------------------------------ backend hooks
    #: CREATE statements for every table and index, ``IF NOT EXISTS``.
    _ddl: tuple[str, ...] = ()

    @abstractmethod
    def _connect(self) -> Any:
        """A new connection for the calling thread."""

    @abstractmethod
    def _write(self) -> AbstractContextManager[Cursor]:
        """A cursor inside a write transaction, committed when the block exits cleanly."""

    @abstractmethod
    def _read(self, snapshot: bool = False) -> AbstractContextManager[Cursor]:
        """A cursor for reads; ``snapshot`` makes every statement in the block see one state."""

    @abstractmethod
    def _insert_events(self, cursor: Cursor, rows: list[EventRow]) -> int:
        """Insert checked event rows (``EVENT_COLUMNS`` order) inside the current transaction,
        skipping rows whose ``(user_id, client_id)`` is already stored; returns how many were
        written."""

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the data lives, for messages (never includes a password)."""

    def _sql(self, text: str) -> str:
        """``text`` in the driver's placeholder style (``?`` as written)."""
        return text

    def _prepare_schema(self, cursor: Cursor) -> None:  # noqa: B027  (an optional hook)
        """Runs first in the schema transaction (e.g. to lock against concurrent creators)."""

    def _is_usable(self, connection: Any) -> bool:
        return True

    def _after_fork(self) -> None:  # noqa: B027  (an optional hook)
        """Reset per-process state (locks) in a child process that inherited this store."""

    # ------------------------------------------------------------------ connections
    def _connection(self) -> Any:
        """The calling thread's connection, opened on first use."""
        if self._closed:
            raise StoreError(f"{self!r} is closed")
        if os.getpid() != self._pid:
            # Forked: the parent's connections are not ours to use, nor to close (closing an
            # inherited SQLite handle can disturb the parent's locks): keep them, unused.
            _INHERITED.extend(self._connections)
            self._local, self._connections, self._pid = threading.local(), [], os.getpid()
            self._registry = threading.Lock()
            self._after_fork()
        connection = getattr(self._local, "connection", None)
        if connection is None or not self._is_usable(connection):
            if connection is not None:
                self._forget(connection)
            connection = self._connect()
            with self._registry:
                self._connections.append(connection)
            self._local.connection = connection
        return connection

    def _forget(self, connection: Any) -> None:
        with self._registry:
            if connection in self._connections:
                self._connections.remove(connection)
        if getattr(self._local, "connection", None) is connection:
            self._local.connection = None
        with suppress(Exception):  # already broken: nothing more to release
            connection.close()

    def close(self) -> None:
        """Close every thread's connection. Idempotent; the store is unusable afterwards."""
        self._closed = True
        with self._registry:
            connections, self._connections = self._connections, []
        for connection in connections:
            with suppress(Exception):
                connection.close()

    def __enter__(self) -> SQLStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"

    def _init_schema(self) -> None:
        """Create the tables if missing; refuse a newer schema version (closing the store)."""
        try:
            self._create_tables()
        except BaseException:
            self.close()
            raise

    def _create_tables(self) -> None:
        with self._write() as cur:
            self._prepare_schema(cur)
            cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            found = cur.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
            if found is not None and int(found) > SCHEMA_VERSION:
                raise StoreSchemaError(
                    f"{self.location} has store schema version {found}, newer than this tastemaker "
                    f"understands ({SCHEMA_VERSION}): upgrade tastemaker to open it"
                )
            for statement in self._ddl:
                cur.execute(statement)
            if found is not None:  # an existing store: migrate it to this version
                for version in range(int(found) + 1, SCHEMA_VERSION + 1):
                    for statement in _MIGRATIONS.get(version, ()):
                        cur.execute(statement)
            for statement in _INDEXES:
                cur.execute(statement)
            if found is None:
                cur.execute(self._sql("INSERT INTO schema_version (version) VALUES (?)"), (SCHEMA_VERSION,))
            elif int(found) < SCHEMA_VERSION:
                cur.execute(self._sql("UPDATE schema_version SET version = ?"), (SCHEMA_VERSION,))

    def schema_version(self) -> int:
        """The schema version stored at this location."""
        with self._read() as cur:
            return int(cur.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    # ------------------------------------------------------------------ events
    def append_events(self, events: Sequence[Event]) -> int:
        """Write ``events`` in one transaction, durable before returning; returns how many
        were written (events whose ``(user_id, event_id)`` is already stored are skipped).

        Nothing is written if any event is invalid (``ValueError`` naming the field)."""
        rows = event_rows(events)
        if not rows:
            return 0
        with self._write() as cur:
            return self._insert_events(cur, rows)

    def history(self, user_id: str, limit: int = 200) -> list[Event]:
        """The user's most recent ``limit`` events, oldest first (in append order)."""
        return [event for _, event in self.history_with_ids(user_id, limit)]

    def history_with_ids(self, user_id: str, limit: int = 200, before_id: int | None = None) -> list[tuple[int, Event]]:
        """:meth:`history` with each event's id: ``(id, event)``, oldest first. With
        ``before_id``, only events older than that id (to page back through a history)."""
        check_text(user_id, "user_id", required=True)
        if not check_limit(limit, "limit"):
            return []
        where, params = "user_id = ?", [user_id]
        if check_limit(before_id, "before_id") is not None:
            where, params = where + " AND id < ?", [*params, before_id]
        sql = f"SELECT id, {EVENT_COLUMNS} FROM events WHERE {where} ORDER BY id DESC LIMIT ?"
        with self._read() as cur:
            rows = cur.execute(self._sql(sql), [*params, limit]).fetchall()
        return [(int(row[0]), event_from_row(row[1:])) for row in reversed(rows)]

    def recent_items(
        self, user_id: str, limit: int = 500, exclude_types: Sequence[str] = EXPOSURE_TYPES
    ) -> list[tuple[int, Event]]:
        """The user's ``limit`` most recently used distinct items, as ``(id, event)`` of the
        last event on each, oldest first. Events of ``exclude_types`` (by default exposure:
        what was shown, not done) are ignored.

        This is what serving reads as a user's history: repeats of one item use one place of
        the window, so a burst of events on one item cannot push other items out of it."""
        check_text(user_id, "user_id", required=True)
        if not check_limit(limit, "limit"):
            return []
        types = check_ids(list(exclude_types), "exclude_types")
        skip = f" AND event_type NOT IN ({', '.join('?' * len(types))})" if types else ""
        columns = ", ".join(f"e.{c.strip()}" for c in EVENT_COLUMNS.split(","))
        sql = (
            f"SELECT e.id, {columns} FROM events e JOIN ("
            f"SELECT MAX(id) AS last FROM events WHERE user_id = ?{skip} GROUP BY item_id ORDER BY last DESC LIMIT ?"
            ") r ON e.id = r.last ORDER BY e.id"
        )
        with self._read() as cur:
            rows = cur.execute(self._sql(sql), [user_id, *types, limit]).fetchall()
        return [(int(row[0]), event_from_row(row[1:])) for row in rows]

    def delete_user(self, user_id: str) -> dict[str, int]:
        """Forget the user: their events, attributes and experiment assignments, in one
        transaction. Returns how many rows of each went (all 0 for an unknown user)."""
        check_text(user_id, "user_id", required=True)
        counts: dict[str, int] = {}
        with self._write() as cur:
            for table in ("events", "users", "assignments"):
                cur.execute(self._sql(f"DELETE FROM {table} WHERE user_id = ?"), (user_id,))
                counts[table] = max(int(cur.rowcount), 0)
        return counts

    def events_since(self, last_id: int = 0, limit: int | None = None) -> list[tuple[int, Event]]:
        """``(id, event)`` for events with ``id > last_id``, in id order (at most ``limit``).

        Ids increase in commit order, so a reader that passes the last id it saw never misses
        or repeats an event: this is how online learners tail the event log."""
        check_limit(last_id, "last_id")
        limit = check_limit(limit, "limit")
        sql = f"SELECT id, {EVENT_COLUMNS} FROM events WHERE id > ? ORDER BY id"
        params: tuple[int, ...] = (last_id,)
        if limit is not None:
            sql, params = sql + " LIMIT ?", (last_id, limit)
        with self._read() as cur:
            rows = cur.execute(self._sql(sql), params).fetchall()
        return [(int(row[0]), event_from_row(row[1:])) for row in rows]

    def count_events(self) -> int:
        """How many events the store holds."""
        with self._read() as cur:
            return int(cur.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def max_event_id(self) -> int:
        """The id of the last committed event (0 for an empty log)."""
        with self._read() as cur:
            return int(cur.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])

    def item_counts(self, event_type: str | None = None, exclude_types: Sequence[str] = ()) -> dict[str, int]:
        """Events per item (of ``event_type`` only, when given; never of ``exclude_types``),
        for items with any."""
        sql, params = "SELECT item_id, COUNT(*) FROM events", []
        if event_type is not None:
            sql, params = sql + " WHERE event_type = ?", [check_text(event_type, "event_type", required=True)]
        types = check_ids(list(exclude_types), "exclude_types")
        if types:
            sql += (" AND" if params else " WHERE") + f" event_type NOT IN ({', '.join('?' * len(types))})"
            params += types
        with self._read() as cur:
            rows = cur.execute(self._sql(sql + " GROUP BY item_id"), params).fetchall()
        return {str(item): int(count) for item, count in rows}

    def event_count_by_user(
        self, user_ids: Sequence[str] | None = None, event_type: str | None = None
    ) -> dict[str, int]:
        """Events per user (of ``event_type`` only, when given). With ``user_ids``, every one
        of them is a key (0 when it has no event); otherwise only users with events are."""
        where, params = "", []
        if event_type is not None:
            where, params = " WHERE event_type = ?", [check_text(event_type, "event_type", required=True)]
        base = f"SELECT user_id, COUNT(*) FROM events{where}"
        if user_ids is None:
            with self._read() as cur:
                rows = cur.execute(self._sql(base + " GROUP BY user_id"), params).fetchall()
            return {str(user): int(count) for user, count in rows}
        ids = check_ids(user_ids, "user_ids")
        counts = dict.fromkeys(ids, 0)
        joiner = " AND" if where else " WHERE"
        with self._read() as cur:
            for chunk in _chunks(list(dict.fromkeys(ids))):
                sql = f"{base}{joiner} user_id IN ({', '.join('?' * len(chunk))}) GROUP BY user_id"
                for user, count in cur.execute(self._sql(sql), [*params, *chunk]).fetchall():
                    counts[str(user)] = int(count)
        return counts

    # ------------------------------------------------------------------ catalog
    def upsert_items(self, items: Iterable[Item]) -> int:
        """Insert or replace items (see the class docstring for ``created_at``); returns how
        many were written. A repeated id in one call: the last one wins."""
        rows = item_rows(list(items), time.time())
        if rows:
            with self._write() as cur:
                cur.executemany(self._sql(_UPSERT_ITEM), rows)
        return len(rows)

    def get_item(self, item_id: str) -> Item | None:
        """The item, or None if the store has no such id (available or not)."""
        return self.get_items([item_id])[0]

    def get_items(self, item_ids: Sequence[str]) -> list[Item | None]:
        """Items in the order of ``item_ids``, None where an id is unknown."""
        ids = check_ids(item_ids, "item_ids")
        found: dict[str, Item] = {}
        with self._read() as cur:
            for chunk in _chunks(list(dict.fromkeys(ids))):
                sql = f"SELECT {ITEM_COLUMNS} FROM items WHERE item_id IN ({', '.join('?' * len(chunk))})"
                for row in cur.execute(self._sql(sql), chunk).fetchall():
                    found[row[0]] = item_from_row(row)
        return [found.get(item_id) for item_id in ids]

    def list_items(self, available_only: bool = True, limit: int | None = 100, offset: int = 0) -> list[Item]:
        """A page of items ordered by id (``limit=None``: all from ``offset``)."""
        limit, offset = check_limit(limit, "limit"), check_limit(offset, "offset") or 0
        sql = f"SELECT {ITEM_COLUMNS} FROM items{' WHERE available = ?' if available_only else ''} ORDER BY item_id"
        params: list[Any] = [True] if available_only else []
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            params += [limit if limit is not None else 2**62, offset]
        with self._read() as cur:
            return [item_from_row(row) for row in cur.execute(self._sql(sql), params).fetchall()]

    def items_created_since(
        self, timestamp: float, available_only: bool = True, limit: int | None = None
    ) -> list[Item]:
        """Items with ``created_at >= timestamp``, newest first (ties by id)."""
        params: list[Any] = [check_number(timestamp, "timestamp")]
        sql = f"SELECT {ITEM_COLUMNS} FROM items WHERE created_at >= ?"
        if available_only:
            sql, params = sql + " AND available = ?", [*params, True]
        sql += " ORDER BY created_at DESC, item_id"
        if check_limit(limit, "limit") is not None:
            sql, params = sql + " LIMIT ?", [*params, limit]
        with self._read() as cur:
            return [item_from_row(row) for row in cur.execute(self._sql(sql), params).fetchall()]

    def count_items(self, available_only: bool = False) -> int:
        sql = "SELECT COUNT(*) FROM items" + (" WHERE available = ?" if available_only else "")
        with self._read() as cur:
            return int(cur.execute(self._sql(sql), [True] if available_only else []).fetchone()[0])

    def delete_item(self, item_id: str) -> bool:
        """Remove the item; False if there was none. Its events stay (they are history)."""
        check_text(item_id, "item_id", required=True)
        with self._write() as cur:
            cur.execute(self._sql("DELETE FROM items WHERE item_id = ?"), (item_id,))
            return bool(cur.rowcount > 0)

    def set_available(self, item_id: str, available: bool) -> bool:
        """Mark the item (un)available for recommendation; False if there is no such item."""
        check_text(item_id, "item_id", required=True)
        if not isinstance(available, bool):
            raise ValueError(f"available: expected a bool, got {type(available).__name__}")
        with self._write() as cur:
            sql = "UPDATE items SET available = ?, updated_at = ? WHERE item_id = ?"
            cur.execute(self._sql(sql), (available, time.time(), item_id))
            return bool(cur.rowcount > 0)

    # ------------------------------------------------------------------ users
    def upsert_users(self, users: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
        """Insert users or replace their attributes (their ``created_at`` is kept)."""
        rows = user_rows(list(users), time.time())
        if rows:
            with self._write() as cur:
                cur.executemany(self._sql(_UPSERT_USER), rows)
        return len(rows)

    def get_user(self, user_id: str) -> dict[str, Any] | None:
        """The user's attributes, or None for an unknown user."""
        check_text(user_id, "user_id", required=True)
        with self._read() as cur:
            row = cur.execute(self._sql("SELECT attributes FROM users WHERE user_id = ?"), (user_id,)).fetchone()
        return None if row is None else dict(decode_json(row[0]))

    # ------------------------------------------------------------------ named states
    def put_state(self, name: str, value: str) -> None:
        """Store ``value`` (text, e.g. JSON) under ``name``, replacing what was there: durable
        state that is not an event, such as an online policy's snapshot."""
        check_text(name, "name", required=True)
        if not isinstance(value, str):
            raise ValueError(f"state {name!r}: the value must be text, got {type(value).__name__}")
        sql = ("INSERT INTO states (name, value, updated_at) VALUES (?, ?, ?) "
               "ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at")
        with self._write() as cur:
            cur.execute(self._sql(sql), (name, value, time.time()))

    def get_state(self, name: str) -> str | None:
        """What :meth:`put_state` stored under ``name`` (None if nothing)."""
        check_text(name, "name", required=True)
        with self._read() as cur:
            row = cur.execute(self._sql("SELECT value FROM states WHERE name = ?"), (name,)).fetchone()
        return None if row is None else str(row[0])

    # ------------------------------------------------------------------ experiments
    def assign(self, experiment: str, user_id: str, variant: str) -> str:
        """Assign the user to ``variant`` unless already assigned; returns the stored variant.

        The first assignment wins, also under concurrent calls, so a user never switches."""
        params = (
            check_text(experiment, "experiment", required=True),
            check_text(user_id, "user_id", required=True),
        )
        check_text(variant, "variant", required=True)
        existing = self.assignment(experiment, user_id)
        if existing is not None:
            return existing
        insert = "INSERT INTO assignments (experiment, user_id, variant, assigned_at) VALUES (?, ?, ?, ?) "
        insert += "ON CONFLICT (experiment, user_id) DO NOTHING"
        with self._write() as cur:
            cur.execute(self._sql(insert), (*params, variant, time.time()))
            select = "SELECT variant FROM assignments WHERE experiment = ? AND user_id = ?"
            return str(cur.execute(self._sql(select), params).fetchone()[0])

    def assignment(self, experiment: str, user_id: str) -> str | None:
        """The user's variant in ``experiment``, or None if unassigned."""
        params = (check_text(experiment, "experiment", required=True), check_text(user_id, "user_id", required=True))
        with self._read() as cur:
            sql = "SELECT variant FROM assignments WHERE experiment = ? AND user_id = ?"
            row = cur.execute(self._sql(sql), params).fetchone()
        return None if row is None else str(row[0])

    def interleaving_sessions(
        self, experiment: str, exposure_type: str = "impression", click_type: str = "click"
    ) -> list[tuple[dict[str, str], list[str]]]:
        """Per interleaved response of ``experiment``: (item -> team shown, clicked items).

        Impressions carry ``{"request_id", "variant": experiment, "team"}`` in their context;
        a click counts for a response when its context names that ``request_id``. Grouped in
        Python over the events of the two types (fine for experiment-sized logs)."""
        check_text(experiment, "experiment", required=True)
        sql = "SELECT event_type, item_id, context FROM events WHERE event_type IN (?, ?) ORDER BY id"
        with self._read() as cur:
            rows = cur.execute(self._sql(sql), (exposure_type, click_type)).fetchall()
        shown: dict[str, dict[str, str]] = {}
        clicks: dict[str, list[str]] = {}
        for event_type, item_id, raw in rows:
            context = decode_json(raw)
            request = context.get("request_id")
            if not isinstance(request, str):
                continue
            if event_type == exposure_type and context.get("variant") == experiment and "team" in context:
                shown.setdefault(request, {})[str(item_id)] = str(context["team"])
            elif event_type == click_type:
                clicks.setdefault(request, []).append(str(item_id))
        return [(teams, clicks.get(request, [])) for request, teams in shown.items()]

    def variant_stats(
        self,
        experiment: str,
        exposure_type: str = "impression",
        click_type: str = "click",
        conversion_type: str = "purchase",
    ) -> dict[str, dict[str, float]]:
        """Per variant: assigned ``users``, and the ``impressions``, ``clicks`` and
        ``conversions`` (event counts of the three types) of those users, with
        ``ctr = clicks / impressions`` and ``conversion_rate = conversions / users``
        (0.0 when the denominator is 0). Computed in SQL by joining events with assignments;
        every event of an assigned user counts (the server assigns before it shows anything)."""
        types = (
            check_text(exposure_type, "exposure_type", required=True),
            check_text(click_type, "click_type", required=True),
            check_text(conversion_type, "conversion_type", required=True),
        )
        params = (*types, *types, check_text(experiment, "experiment", required=True))
        with self._read() as cur:
            rows = cur.execute(self._sql(_VARIANT_STATS), params).fetchall()
        stats: dict[str, dict[str, float]] = {}
        for variant, users, impressions, clicks, conversions in rows:
            users, impressions, clicks, conversions = int(users), int(impressions), int(clicks), int(conversions)
            stats[str(variant)] = {
                "users": users,
                "impressions": impressions,
                "clicks": clicks,
                "conversions": conversions,
                "ctr": clicks / impressions if impressions else 0.0,
                "conversion_rate": conversions / users if users else 0.0,
            }
        return stats

    # ------------------------------------------------------------------ retraining
    def to_dataset(
        self,
        name: str = "store",
        until_id: int | None = None,
        event_types: Sequence[str] | None = None,
        exclude_types: Sequence[str] = EXPOSURE_TYPES,
    ) -> Dataset:
        """The events (with ``id <= until_id``, when given), items and users as a
        :class:`~tastemaker.data.dataset.Dataset`, read from one consistent snapshot (for
        retraining). ``extras["last_event_id"]`` is the id of the last event read (included
        or not), so a model knows which events it was trained on.

        Which events train: only those of ``event_types`` when given, and never those of
        ``exclude_types`` (by default the exposure types: an impression records what was
        shown, and is never a training positive).

        Interactions keep their type and value (timestamps become whole seconds, as in every
        dataset). The catalog holds all items, with an ``available`` column, ``created_at``
        0.0 read as NaN (unknown), and each top-level attribute as a column (one that clashes
        with a standard column is prefixed ``attribute_``); user attributes become
        ``user_features`` columns the same way."""
        import pandas as pd

        from tastemaker.data.dataset import Dataset

        until = check_limit(until_id, "until_id")
        conditions, params = [], []
        if until is not None:
            conditions, params = ["id <= ?"], [until]
        if event_types is not None:
            wanted = check_ids(list(event_types), "event_types")
            conditions.append(f"event_type IN ({', '.join('?' * len(wanted))})" if wanted else "1 = 0")
            params += wanted
        skipped = check_ids(list(exclude_types), "exclude_types")
        if skipped:
            conditions.append(f"event_type NOT IN ({', '.join('?' * len(skipped))})")
            params += skipped
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        with self._read(snapshot=True) as cur:
            sql = f"SELECT id, user_id, item_id, timestamp, event_type, value FROM events{where} ORDER BY id"
            events = cur.execute(self._sql(sql), params).fetchall()
            last = cur.execute(self._sql("SELECT COALESCE(MAX(id), 0) FROM events" + (" WHERE id <= ?" if until is not None else "")),
                               [until] if until is not None else []).fetchone()[0]
            items = cur.execute(f"SELECT {ITEM_COLUMNS} FROM items ORDER BY item_id").fetchall()
            users = cur.execute("SELECT user_id, attributes FROM users ORDER BY user_id").fetchall()
        last_event_id = int(last)
        columns = ["user", "item", "timestamp", "event_type", "value"]
        interactions = pd.DataFrame([row[1:] for row in events], columns=columns)
        interactions = interactions.astype({"user": object, "item": object, "timestamp": float, "value": float})
        catalog = pd.DataFrame(
            {
                "item_id": pd.Series([row[0] for row in items], dtype=object),
                "title": [row[1] for row in items],
                "text": [row[2] for row in items],
                "categories": [list(decode_json(row[3])) for row in items],
                "created_at": [float(row[6]) if float(row[6]) > 0 else math.nan for row in items],
                "available": pd.Series([bool(row[5]) for row in items], dtype=bool),
            }
        )
        catalog = _with_attributes(catalog, [decode_json(row[4]) for row in items])
        user_frame = None
        if users:
            user_frame = pd.DataFrame({"user_id": pd.Series([row[0] for row in users], dtype=object)})
            user_frame = _with_attributes(user_frame, [decode_json(row[1]) for row in users])
        extras = {"last_event_id": last_event_id}
        return Dataset.from_frames(interactions, catalog=catalog, users=user_frame, name=name, extras=extras)


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), _ID_BATCH):
        yield values[start : start + _ID_BATCH]


def _with_attributes(frame: pd.DataFrame, attributes: list[dict[str, Any]]) -> pd.DataFrame:
    """``frame`` plus one column per top-level attribute key."""
    import pandas as pd

    if not any(attributes):
        return frame
    extra = pd.DataFrame(attributes, index=frame.index)
    taken = {*frame.columns, "item", "user"}
    extra.columns = [f"attribute_{c}" if c in taken else c for c in extra.columns]
    return pd.concat([frame, extra], axis=1)
