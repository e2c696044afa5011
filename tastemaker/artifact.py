"""One versioned artifact directory per fitted model. No pickle anywhere.

Layout::

    manifest.json   format, format_version, created_at, library_version, model class and
                    config, schema (array names/dtypes/shapes, vocabulary sizes), schema_hash,
                    and the sha256 of every other file
    users.parquet   user vocabulary (column ``id``) in code order
    items.parquet   item vocabulary (``id``, ``title``) in code order
    arrays.npz      the model's fitted arrays (loaded with allow_pickle=False)

Writing goes to a temporary sibling directory that is renamed into place, so a reader never
sees a half-written artifact. Loading verifies the format version, every file checksum and
the schema hash, and refuses a mismatch with :class:`~tastemaker.errors.ArtifactError`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

import tastemaker
from tastemaker.data.vocab import Vocabulary
from tastemaker.errors import ArtifactError

if TYPE_CHECKING:
    from tastemaker.models.base import Recommender

FORMAT = "tastemaker-artifact"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_COMMON = ("seen_indptr", "seen_indices", "item_popularity", "sequence_indptr", "sequence_items")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _schema(arrays: dict[str, np.ndarray], n_users: int, n_items: int, config: dict[str, Any]) -> dict[str, Any]:
    return {
        "n_users": n_users,
        "n_items": n_items,
        "config": config,
        "arrays": {k: [str(v.dtype), list(v.shape)] for k, v in sorted(arrays.items())},
    }


def _schema_hash(schema: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()


def save_model(model: Recommender, path: str | Path) -> Path:
    """Write ``model`` to ``path`` atomically (an existing artifact there is replaced)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = dict(model._arrays())
    clash = set(arrays) & set(_COMMON)
    if clash:
        raise ValueError(f"model arrays may not use the reserved names {sorted(clash)}")
    seen = model.user_items_
    arrays.update(
        seen_indptr=seen.indptr.astype(np.int64),
        seen_indices=seen.indices.astype(np.int32),
        item_popularity=np.asarray(model.item_popularity_, dtype=np.int64),
    )
    if model.sequential:
        arrays.update(sequence_indptr=model.sequence_indptr_, sequence_items=model.sequence_items_)
    config = model.config.model_dump(mode="json")
    schema = _schema(arrays, len(model.users_), len(model.items_), config)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes 0700; a server running as another user must read it
        pq.write_table(pa.table({"id": pa.array(model.users_.ids.astype(str))}), tmp / "users.parquet")
        pq.write_table(
            pa.table(
                {"id": pa.array(model.items_.ids.astype(str)), "title": pa.array(model.item_titles_.astype(str))}
            ),
            tmp / "items.parquet",
        )
        np.savez(tmp / "arrays.npz", **arrays)
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "library_version": tastemaker.__version__,
            "model": {"class": f"{type(model).__module__}:{type(model).__qualname__}", "config": config},
            "schema": schema,
            "schema_hash": _schema_hash(schema),
            "files": files,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if path.exists():
            # Swap: move the old one aside first, so `path` is always a whole artifact or absent
            # for only the instant between two renames.
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the artifact at ``path``, checked for format and version."""
    path = Path(path)
    file = path / MANIFEST
    if not file.is_file():
        raise ArtifactError(f"{path} is not an artifact: {MANIFEST} is missing")
    try:
        manifest = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{file} is corrupted: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise ArtifactError(f"{file}: not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: artifact format version {manifest.get('format_version')} is not supported "
            f"by this tastemaker {tastemaker.__version__} (it reads version {FORMAT_VERSION}); retrain the model"
        )
    return manifest


def load_model(path: str | Path) -> Recommender:
    """Load and verify the artifact at ``path``."""
    from tastemaker.models.base import Recommender

    path = Path(path)
    manifest = read_manifest(path)
    for name, digest in manifest["files"].items():
        file = path / name
        if not file.is_file():
            raise ArtifactError(f"{path}: file {name} listed in the manifest is missing")
        if _sha256(file) != digest:
            raise ArtifactError(f"{path}: {name} is corrupted (checksum mismatch)")
    module_name, _, qualname = manifest["model"]["class"].partition(":")
    if not module_name.startswith("tastemaker."):
        raise ArtifactError(f"{path}: refusing to import model class from {module_name!r}")
    try:
        cls = getattr(importlib.import_module(module_name), qualname)
    except (ImportError, AttributeError) as exc:
        raise ArtifactError(f"{path}: model class {manifest['model']['class']} is not available: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Recommender)):
        raise ArtifactError(f"{path}: {qualname} is not a Recommender")

    users = Vocabulary(pq.read_table(path / "users.parquet").column("id").to_pylist(), name="user")
    items_table = pq.read_table(path / "items.parquet")
    items = Vocabulary(items_table.column("id").to_pylist(), name="item")
    with np.load(path / "arrays.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    config = manifest["model"]["config"]
    schema = _schema(arrays, len(users), len(items), config)
    if _schema_hash(schema) != manifest["schema_hash"]:
        raise ArtifactError(f"{path}: contents do not match the manifest's schema (schema hash mismatch)")

    model = cls(cls.Config(**config))
    model.users_ = users
    model.items_ = items
    model.item_titles_ = np.asarray(items_table.column("title").to_pylist(), dtype=object).astype(str)
    model.user_items_ = sp.csr_matrix(
        (np.ones(len(arrays["seen_indices"]), dtype=np.float32), arrays.pop("seen_indices"), arrays.pop("seen_indptr")),
        shape=(len(users), len(items)),
    )
    model.item_popularity_ = arrays.pop("item_popularity")
    if cls.sequential:
        model.sequence_indptr_ = arrays.pop("sequence_indptr")
        model.sequence_items_ = arrays.pop("sequence_items")
    model._set_arrays(arrays)
    return model
