"""What the service runs: model versions on disk, and the engine that answers requests.

* :class:`ModelRegistry` keeps every trained version under ``models_dir/<version>/`` (an
  artifact plus ``service.json``: metrics, the last event id it was trained on) and an
  ``ACTIVE`` pointer replaced atomically. Activation and rollback only move the pointer.
* :class:`Engine` is one loaded version: the model, an index over its item vectors (when it
  has them), and the logic that turns a request into an explained list. An engine is never
  modified after it is built; the service swaps the whole object in one assignment, so a
  request holds either the old engine or the new one, never a half-loaded mix.

Real time: the model knows what was in its training data; events that arrived later
(store ids above ``trained_until``) are passed as the query's new history, so the seen item
is excluded at once and sequential models fold it in, with no retraining. What a request
reads of the user is :meth:`~tastemaker.store.base.SQLStore.recent_items`: the last
``history_limit`` distinct items, exposure events left out (being shown is not a use).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tastemaker.artifact import load_model, read_manifest
from tastemaker.errors import ArtifactError
from tastemaker.models.base import Recommender
from tastemaker.protocols import EXPOSURE_TYPES, Event, Item, Store
from tastemaker.types import ItemList, Query

_VERBS = {
    "rating": "rated", "rated": "rated", "click": "clicked", "purchase": "bought", "buy": "bought",
    "view": "viewed", "watch": "watched", "play": "played", "like": "liked", "liked": "liked",
    "cart": "added to your cart",
}

log = logging.getLogger("tastemaker.serve")


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    source: str
    reason: str
    title: str = ""


@dataclass(frozen=True)
class Request:
    """A recommendation request, after validation."""

    user_id: str | None
    n: int
    history: tuple[str, ...] = ()  # anonymous sessions: recent item ids, oldest first
    categories: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    context: dict[str, Any] = field(default_factory=dict)


class ModelRegistry:
    """Versions under ``root``: ``v0001``, ``v0002``...; ``ACTIVE`` names the served one."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def versions(self) -> list[dict[str, Any]]:
        out = []
        active = self.active()
        for path in sorted(self.root.glob("v[0-9]*")):
            if not (path / "manifest.json").is_file():
                continue  # an interrupted write
            info = self.info(path.name)
            out.append(info | {"version": path.name, "active": path.name == active})
        return out

    def info(self, version: str) -> dict[str, Any]:
        file = self.root / version / "service.json"
        return json.loads(file.read_text()) if file.is_file() else {}

    def next_version(self) -> str:
        numbers = [int(m.group(1)) for p in self.root.glob("v*") if (m := re.fullmatch(r"v(\d+)", p.name))]
        return f"v{max(numbers, default=0) + 1:04d}"

    def add(self, model: Recommender, info: dict[str, Any]) -> str:
        """Save ``model`` as a new version (not activated); returns its name."""
        with self._lock:
            version = self.next_version()
            path = model.save(self.root / version)
        created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        (path / "service.json").write_text(json.dumps(info | {"created_at": created, "model": model.name}))
        return version

    def active(self) -> str | None:
        file = self.root / "ACTIVE"
        return file.read_text().strip() or None if file.is_file() else None

    def activate(self, version: str) -> None:
        """Point ``ACTIVE`` at ``version`` (atomic rename); the previous one is remembered."""
        if not (self.root / version / "manifest.json").is_file():
            raise ArtifactError(f"no model version {version!r} in {self.root}")
        read_manifest(self.root / version)
        with self._lock:
            previous = self.active()
            history = self._history()
            if previous and previous != version:
                history.append(previous)
            self._write("HISTORY", json.dumps(history[-50:]))
            self._write("ACTIVE", version)

    def previous(self) -> str:
        """The version that was active before the current one (what :meth:`rollback` would
        activate)."""
        history = self._history()
        if not history:
            raise ArtifactError("nothing to roll back to: no earlier active version")
        return str(history[-1])

    def rollback(self, expected: str | None = None) -> str:
        """Re-activate the version that was active before the current one. With ``expected``
        (what :meth:`previous` said, after the caller loaded it), refuse if it changed since."""
        with self._lock:
            history = self._history()
            if not history:
                raise ArtifactError("nothing to roll back to: no earlier active version")
            if expected is not None and history[-1] != expected:
                raise ArtifactError(f"the version to roll back to changed ({expected} -> {history[-1]}); try again")
            version = history.pop()
            self._write("HISTORY", json.dumps(history))
            self._write("ACTIVE", version)
        return version

    def _history(self) -> list[str]:
        file = self.root / "HISTORY"
        return json.loads(file.read_text()) if file.is_file() else []

    def _write(self, name: str, text: str) -> None:
        tmp = self.root / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.root / name)

    def load(self, version: str, exact_below: int = 20_000) -> Engine:
        """The version's engine; its vector index is read from ``<version>/index`` (written
        there the first time, so later starts and activations skip the HNSW build)."""
        info = self.info(version)
        path = self.root / version
        return Engine(version, load_model(path), int(info.get("trained_until", 0)), exact_below, index_dir=path / "index")


@dataclass(frozen=True)
class _Served:
    """What a request reads, published as one value: the model, its vector index and how many
    of its items it was trained with. Never mutated once published (copy-on-write)."""

    model: Recommender | None
    index: Any
    trained_items: int


class Engine:
    """One model version, ready to answer. ``model`` is None for the no-model fallback.

    A model with user and item vectors (ALS, BPR, two-tower) is served through a vector index
    over its item vectors: exact search below ``exact_below`` items, FAISS HNSW above
    (benchmarks/ann.py). Other models, and requests with a category filter, score the whole
    catalog exactly through ``model.recommend``.

    With ``index_dir`` the index is persisted: loaded from there when it holds one of the
    right kind and size, else built and written there (to a temporary name, then renamed, so
    a crash mid-write leaves no half index).

    Concurrency: a request reads ``(model, index)`` once, as one published value, and needs
    no lock. :meth:`add_items` grows a *copy* of both (the slow part, e.g. encoding text, runs
    while requests go on with the current pair) and then publishes the copy in one
    assignment; writers take turns on a lock of their own."""

    def __init__(
        self,
        version: str | None,
        model: Recommender | None,
        trained_until: int = 0,
        exact_below: int = 20_000,
        index_dir: Path | None = None,
    ) -> None:
        self.version = version
        self.trained_until = trained_until
        index = None
        if model is not None and hasattr(model, "user_vectors") and hasattr(model, "item_vectors"):
            index = _vector_index(np.asarray(model.item_vectors(), dtype=np.float32), exact_below, index_dir)
        self._served = _Served(model, index, len(model.items_) if model is not None else 0)
        self._writer = threading.Lock()

    @property
    def model(self) -> Recommender | None:
        return self._served.model

    @property
    def index(self) -> Any:
        return self._served.index

    # ------------------------------------------------------------------ new items
    def add_items(self, items: Sequence[Item]) -> int:
        """Make items the model has never seen recommendable at once, without retraining, when
        the model can represent an item from its content (``model.add_items``: two-tower, HLLM,
        content retrieval, SASRec over semantic IDs); their vectors join the index. Returns how
        many were added (0 for models that cannot). Requests are never blocked meanwhile."""
        with self._writer:
            served = self._served
            model = served.model
            if model is None or not hasattr(model, "add_items"):
                return 0
            fresh = {it.item_id: it for it in items}
            new = [it for it in fresh.values() if it.item_id not in model.items_]
            if not new:
                return 0
            import pandas as pd

            frame = pd.DataFrame({
                "item_id": [it.item_id for it in new],
                "title": [it.title for it in new],
                "categories": [list(it.categories) for it in new],
                "text": [it.text for it in new],
                **{key: [it.attributes.get(key) for it in new] for key in ("brand", "tags", "description") if any(key in it.attributes for it in new)},
            })
            grown = copy.deepcopy(model)  # tens of ms; the requests in flight keep the original
            before = len(grown.items_)
            grown.add_items(frame)  # type: ignore[attr-defined]
            after = len(grown.items_)
            index = served.index
            if index is not None and after > before:
                index = copy.deepcopy(index)
                vectors = np.asarray(grown.item_vectors(), dtype=np.float32)[before:after]  # type: ignore[attr-defined]
                index.add(np.arange(before, after, dtype=np.int64), vectors)
                index.search(vectors[:1], 1)  # settle its lazy search state before anyone shares it
            self._served = _Served(grown, index, served.trained_items)  # the swap: one assignment
            return after - before

    # ------------------------------------------------------------------ requests
    def recommend(self, store: Store, request: Request, catalog: CatalogView, history_limit: int = 500) -> list[Recommendation]:
        """The explained top-n for a request; falls back to popular/fresh items and says so.
        ``history_limit`` bounds the distinct items read of the user's history."""
        served = self._served  # one consistent (model, index) for the whole request
        history = self._history(store, request, history_limit)
        recent_ids = [e.event.item_id for e in history]
        blocked = set(request.exclude) | catalog.unavailable
        allowed = catalog.with_categories(request.categories) if request.categories else None
        if served.model is None:
            return self._fallback(catalog, request, set(recent_ids) | blocked, allowed, "no trained model yet")
        new_ids = [e.event.item_id for e in history if e.seq > self.trained_until] if request.user_id else recent_ids
        query = Query(
            user=request.user_id,
            history=new_ids,
            include=None if allowed is None else sorted(allowed),
            exclude=sorted(blocked | set(recent_ids)),
        )
        items = self._retrieve(served, query, request.n)
        if len(items) == 0 or set(items.sources) == {"popular-fallback"}:
            why = "no history yet" if not recent_ids else "nothing in your history is known to the model"
            return self._fallback(catalog, request, set(recent_ids) | blocked, allowed, why)
        reasons = self._reasons(served, items.item_codes, history, catalog)
        return [
            Recommendation(str(i), float(s), src, r, catalog.title(str(i)))
            for i, s, src, r in zip(items.item_ids, items.scores, items.sources, reasons, strict=True)
        ]

    @staticmethod
    def _retrieve(served: _Served, query: Query, n: int) -> ItemList:
        """Through the vector index where there is one and no category filter; else exact."""
        model, index = served.model, served.index
        assert model is not None
        if index is None or query.include is not None:
            (items,) = model.recommend([query], n=n)
            return items
        batch = model._resolve([query])
        if len(batch.history.indices) == 0 and not batch.use_user_state[0]:
            (items,) = model.recommend([query], n=n)  # nothing to go on: the model's fallback
            return items
        user_vector = model.user_vectors(batch)  # type: ignore[attr-defined]
        seen = batch.history.indices
        blocked = model.items_.encode(query.exclude, missing="drop")
        ids, scores = index.search(user_vector, n, exclude=[np.union1d(seen, blocked).astype(np.int64)])
        keep = ids[0] >= 0
        codes = ids[0][keep].astype(np.int32)
        return ItemList(model.items_.decode(codes), codes, scores[0][keep], sources=(model.name,) * len(codes))

    def similar(self, item_id: str, n: int, catalog: CatalogView) -> list[Recommendation]:
        """Items like ``item_id`` (a one-item session). ``KeyError`` when the catalog has no
        such item (never added, or deleted: the model may still know it, but it is gone)."""
        if item_id not in catalog:
            raise KeyError(item_id)
        model = self._served.model
        if model is None or item_id not in model.items_:
            same = catalog.with_categories(catalog.categories(item_id)) - {item_id} - catalog.unavailable
            ranked = sorted(same, key=lambda i: -catalog.popularity.get(i, 0))[:n]
            return [Recommendation(i, float(catalog.popularity.get(i, 0)), "content", "shares a category", catalog.title(i)) for i in ranked]
        query = Query(history=[item_id], exclude=sorted(catalog.unavailable | {item_id}))
        (items,) = model.recommend([query], n=n)
        title = catalog.title(item_id) or item_id
        return [
            Recommendation(str(i), float(s), model.name, f"similar to {title}", catalog.title(str(i)))
            for i, s in zip(items.item_ids, items.scores, strict=True)
        ]

    # ------------------------------------------------------------------ helpers
    def _history(self, store: Store, request: Request, limit: int) -> list[StoredEvent]:
        if request.user_id is None:
            return [StoredEvent(Event("", i), 0) for i in request.history]
        # distinct items, so repeats cannot push others out; impressions are what we showed
        events = store.recent_items(request.user_id, limit, EXPOSURE_TYPES)  # type: ignore[attr-defined]
        return [StoredEvent(e, i) for i, e in events]

    @staticmethod
    def _reasons(served: _Served, codes: np.ndarray, history: list[StoredEvent], catalog: CatalogView) -> list[str]:
        model = served.model
        assert model is not None
        history = history[-50:]  # the most recent events explain best
        codes_of = model.items_.encode([h.event.item_id for h in history], missing="mark")
        known = [(k, h) for k, h in enumerate(history) if codes_of[k] >= 0]
        if not known:
            return ["popular right now"] * len(codes)
        hist_codes = model.items_.encode([h.event.item_id for _, h in known])
        affinity = model.item_affinity(hist_codes, codes)
        if affinity is None:
            return ["recommended for you"] * len(codes)
        reasons = []
        for code, row in zip(codes, np.asarray(affinity), strict=True):
            _, event = known[int(np.argmax(row))]
            verb = _VERBS.get(event.event.event_type, "liked")
            title = catalog.title(event.event.item_id) or event.event.item_id
            if code >= served.trained_items:  # arrived after training: recommended from its content
                reasons.append(f"new item like {title}, which you {verb}")
            else:
                reasons.append(f"because you {verb} {title}")
        return reasons

    def _fallback(
        self, catalog: CatalogView, request: Request, blocked: set[str], allowed: set[str] | None, why: str
    ) -> list[Recommendation]:
        """Popular items (and fresh ones), each saying why it is there."""
        pool = catalog.ranked_by_popularity()
        out: list[Recommendation] = []
        for item_id in pool:
            if item_id in blocked or (allowed is not None and item_id not in allowed):
                continue
            count = catalog.popularity.get(item_id, 0)
            if count > 0:
                cats = catalog.categories(item_id)
                where = f" in {request.categories[0]}" if request.categories else (f" in {cats[0]}" if cats else "")
                reason = f"popular{where} ({why})"
                source = "popular"
            else:
                reason = f"new in the catalog ({why})"
                source = "fresh"
            out.append(Recommendation(item_id, float(count), source, reason, catalog.title(item_id)))
            if len(out) == request.n:
                break
        return out


def _vector_index(vectors: np.ndarray, exact_below: int, index_dir: Path | None) -> Any:
    """The index over ``vectors`` (row = item code): loaded from ``index_dir`` when it holds a
    matching one, else built (and saved there when ``index_dir`` is given)."""
    from tastemaker.index import build_index, load_index

    kind = "exact" if len(vectors) < exact_below else "hnsw"
    if index_dir is not None and (index_dir / "index.json").is_file():
        try:
            index = load_index(index_dir)
            if index.kind == kind and len(index) == len(vectors) and index.dim == vectors.shape[1]:
                return index
        except ArtifactError as exc:  # unreadable: rebuild it below
            log.warning("rebuilding the vector index: %s", exc)
    index = build_index(np.arange(len(vectors), dtype=np.int64), vectors, kind=kind)
    if index_dir is not None:
        tmp = index_dir.with_name(f".{index_dir.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            index.save(tmp)
            shutil.rmtree(index_dir, ignore_errors=True)
            os.replace(tmp, index_dir)
        except OSError as exc:  # a read-only models dir still serves, it just rebuilds next time
            log.warning("could not persist the vector index in %s: %s", index_dir, exc)
            shutil.rmtree(tmp, ignore_errors=True)
    return index


@dataclass(frozen=True)
class StoredEvent:
    """An event and its store id (``seq``: ids increase in commit order)."""

    event: Event
    seq: int


class CatalogView:
    """The catalog as the service needs it in memory: titles, categories, availability and
    popularity. Updated in place by the item and event endpoints (under a lock)."""

    def __init__(self) -> None:
        self._titles: dict[str, str] = {}
        self._categories: dict[str, tuple[str, ...]] = {}
        self.by_category: dict[str, set[str]] = {}
        self.unavailable: set[str] = set()
        self.popularity: dict[str, int] = {}
        self.created: dict[str, float] = {}
        self._ranked: list[str] | None = None
        self._ranked_at = 0.0
        self.lock = threading.Lock()

    def upsert(self, items: Sequence[Item]) -> None:
        with self.lock:
            for item in items:
                for cat in self._categories.get(item.item_id, ()):
                    self.by_category.get(cat, set()).discard(item.item_id)
                self._titles[item.item_id] = item.title
                self._categories[item.item_id] = tuple(item.categories)
                for cat in item.categories:
                    self.by_category.setdefault(cat, set()).add(item.item_id)
                (self.unavailable.discard if item.available else self.unavailable.add)(item.item_id)
                self.popularity.setdefault(item.item_id, 0)
                self.created[item.item_id] = item.created_at
            self._ranked = None

    def remove(self, item_id: str) -> None:
        with self.lock:
            for cat in self._categories.pop(item_id, ()):
                self.by_category.get(cat, set()).discard(item_id)
            self._titles.pop(item_id, None)
            self.popularity.pop(item_id, None)
            self.unavailable.add(item_id)
            self._ranked = None

    def set_available(self, item_id: str, available: bool) -> None:
        with self.lock:
            (self.unavailable.discard if available else self.unavailable.add)(item_id)

    def count(self, item_ids: Sequence[str]) -> None:
        with self.lock:
            for item_id in item_ids:
                self.popularity[item_id] = self.popularity.get(item_id, 0) + 1
            # no re-sort here: the fallback order refreshes at most every RERANK_SECONDS

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._titles

    def item_ids(self) -> list[str]:
        """Every item in the catalog."""
        with self.lock:
            return list(self._titles)

    def title(self, item_id: str) -> str:
        return self._titles.get(item_id, "")

    def categories(self, item_id: str) -> tuple[str, ...]:
        return self._categories.get(item_id, ())

    def with_categories(self, categories: Sequence[str]) -> set[str]:
        out: set[str] = set()
        for cat in categories:
            out |= self.by_category.get(cat, set())
        return out

    RERANK_SECONDS = 5.0

    def ranked_by_popularity(self) -> list[str]:
        """Most popular first; among items nobody used yet, the newest first."""
        ranked = self._ranked
        if ranked is None or time.monotonic() - self._ranked_at > self.RERANK_SECONDS:
            with self.lock:
                ranked = sorted(self._titles, key=lambda i: (-self.popularity.get(i, 0), -self.created.get(i, 0.0), i))
                self._ranked, self._ranked_at = ranked, time.monotonic()
        return ranked
