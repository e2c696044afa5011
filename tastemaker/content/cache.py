"""A persistent embedding cache: one SQLite file of float32 vectors keyed by text hash.

The key of a text is ``sha256(encoder_id + "\\0" + text)``, so one file may safely hold the
vectors of several encoders, and a refitted encoder (a new ``encoder_id``) never reads stale
vectors. ``hits`` and ``misses`` count distinct texts looked up, so a caller (or a test) can
see that a second ``encode`` of the same texts computed nothing.

SQLite (stdlib) gives atomic writes and safe concurrent readers/writers across processes; a
vector whose stored length does not match the expected dimension is treated as a miss.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_CHUNK = 500  # keys per SELECT ... IN (...), below SQLite's variable limit
_FILE = "vectors.sqlite3"


def default_cache_dir(encoder_id: str) -> Path:
    """``$TASTEMAKER_CACHE/embeddings/<encoder-id>`` (default root ``~/.cache/tastemaker``)."""
    root = Path(os.environ.get("TASTEMAKER_CACHE") or "~/.cache/tastemaker").expanduser()
    return root / "embeddings" / safe_name(encoder_id)


def safe_name(text: str) -> str:
    """A file-system-safe version of an encoder id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "encoder"


def text_key(encoder_id: str, text: str) -> bytes:
    """The cache key of ``text`` under ``encoder_id`` (32 bytes)."""
    return hashlib.sha256(f"{encoder_id}\0{text}".encode("utf-8", "surrogatepass")).digest()


class EmbeddingCache:
    """Vectors of one dimension stored by key in ``directory/vectors.sqlite3``.

    Thread-safe (one connection behind a lock); the file is created on first use.
    """

    def __init__(self, directory: str | Path, encoder_id: str, dimension: int) -> None:
        self.directory = Path(directory).expanduser()
        self.encoder_id = encoder_id
        self.dimension = int(dimension)
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    @property
    def path(self) -> Path:
        return self.directory / _FILE

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL) WITHOUT ROWID")
            conn.commit()
            self._conn = conn
        return self._conn

    def keys_for(self, texts: Sequence[str]) -> list[bytes]:
        return [text_key(self.encoder_id, t) for t in texts]

    def get(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The stored vectors among ``keys`` (distinct keys); updates ``hits``/``misses``."""
        found: dict[bytes, np.ndarray] = {}
        width = self.dimension * 4
        with self._lock:
            conn = self._connection()
            for start in range(0, len(keys), _CHUNK):
                chunk = list(keys[start : start + _CHUNK])
                marks = ",".join("?" * len(chunk))
                for key, blob in conn.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk):
                    if len(blob) == width:
                        found[bytes(key)] = np.frombuffer(blob, dtype=np.float32)
            self.hits += len(found)
            self.misses += len(keys) - len(found)
        return found

    def put(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Store ``vectors`` (one row per key, float32) under ``keys``, replacing old values."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(keys), self.dimension):
            raise ValueError(f"expected {len(keys)} vectors of {self.dimension} dimensions, got {vectors.shape}")
        rows = [(key, row.tobytes()) for key, row in zip(keys, vectors, strict=True)]
        with self._lock:
            conn = self._connection()
            conn.executemany("INSERT OR REPLACE INTO vectors (key, vector) VALUES (?, ?)", rows)
            conn.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._connection().execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def clear(self) -> None:
        """Delete every stored vector and reset the counters."""
        with self._lock:
            conn = self._connection()
            conn.execute("DELETE FROM vectors")
            conn.commit()
            self.hits = self.misses = 0

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.path)!r}, hits={self.hits}, misses={self.misses})"
