"""Durable state behind the service: catalog, users, events and experiment assignments.

:class:`SQLiteStore` (one file, the embedded default) and :class:`PostgresStore` implement
the same contract (:class:`tastemaker.protocols.Store` plus the extras documented on
:class:`~tastemaker.store.base.SQLStore`), and both pass
:class:`tastemaker.testing.store.StoreConformance`. :func:`open_store` picks one from a URL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from tastemaker.protocols import Event, Item, Store
from tastemaker.store.base import SCHEMA_VERSION, SQLStore, StoreError, StoreSchemaError
from tastemaker.store.importing import import_dataset
from tastemaker.store.postgres import PostgresStore  # psycopg itself loads only when one is made
from tastemaker.store.sqlite import SQLiteStore

__all__ = [
    "SCHEMA_VERSION",
    "Event",
    "Item",
    "PostgresStore",
    "SQLStore",
    "SQLiteStore",
    "Store",
    "StoreError",
    "StoreSchemaError",
    "import_dataset",
    "open_store",
]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")


def open_store(url: str | Path, **options: Any) -> SQLStore:
    """The store at ``url``.

    * ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or a plain path:
      :class:`SQLiteStore` (query options such as ``?synchronous=FULL`` are passed on);
    * ``postgresql://user@host:port/db`` (also ``postgres://``): :class:`PostgresStore`,
      where the ``schema`` keyword selects a PostgreSQL schema.

    ``options`` are keyword arguments for the store's constructor.
    """
    text = str(url)
    if text.startswith("sqlite://"):
        if not text.startswith("sqlite:///"):
            raise StoreError(f"{text!r}: a SQLite URL is sqlite:///relative.db or sqlite:////absolute.db")
        path, _, query = text[len("sqlite:///") :].partition("?")
        return SQLiteStore(path, **{**dict(parse_qsl(query)), **options})
    if text.startswith(_POSTGRES_SCHEMES):
        dsn = text.replace("postgresql+psycopg://", "postgresql://", 1)
        return PostgresStore(dsn, **options)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise StoreError(f"unsupported store URL scheme {scheme!r}: use sqlite:///path.db, a path, or postgresql://...")
    return SQLiteStore(text, **options)
