"""What the service runs: pipeline versions on disk, and the engine that answers requests.

* :class:`ModelRegistry` keeps every trained version under ``models_dir/<version>/`` (a
  pipeline artifact plus ``service.json``: metrics, the last event id it was trained on) and
  an ``ACTIVE`` pointer replaced atomically. Activation and rollback only move the pointer.
* :class:`Engine` is one loaded version: a thin adapter over its
  :class:`~tastemaker.pipeline.Pipeline` (the same object the library and the CLI use, so
  they give the same lists). The service swaps whole engines in one assignment, so a
  request holds either the old engine or the new one, never a half-loaded mix.

Real time: the model knows what was in its training data; events that arrived later
(store ids above ``trained_until``) are passed as the query's new history, so the seen item
is excluded at once and sequential models fold it in, with no retraining. What a request
reads of the user is :meth:`~tastemaker.store.base.SQLStore.recent_items`: the last
``history_limit`` distinct items, exposure events left out (being shown is not a use).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tastemaker.errors import ArtifactError
from tastemaker.pipeline import Pipeline, is_pipeline
from tastemaker.pipeline.pipeline import read_pipeline_manifest
from tastemaker.pipeline.explore import GreedyExplorer
from tastemaker.protocols import EXPOSURE_TYPES, Event, Item, Store
from tastemaker.types import ItemList, Query

log = logging.getLogger("tastemaker.serve")


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    source: str
    reason: str
    title: str = ""
    #: P(the explorer shows this item at this position) and the explorer's policy (the
    #: impression log carries both, for off-policy evaluation)
    propensity: float = 1.0
    policy: str = "greedy"
    policy_version: str = "0"


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

    def add(self, model: Pipeline, info: dict[str, Any]) -> str:
        """Save the fitted pipeline as a new version (not activated); returns its name."""
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
        read_pipeline_manifest(self.root / version)
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

    def load(self, version: str) -> Engine:
        """The version's engine: its pipeline, verified (every file's checksum) as it loads."""
        info = self.info(version)
        path = self.root / version
        if not is_pipeline(path):
            raise ArtifactError(
                f"{path} holds a single model saved by an earlier tastemaker, not a pipeline: "
                "train a new version (POST /v1/admin/train)"
            )
        return Engine(version, Pipeline.load(path), int(info.get("trained_until", 0)))


class Engine:
    """One pipeline version, ready to answer: a thin adapter from a service request to
    :meth:`Pipeline.recommend <tastemaker.pipeline.Pipeline.recommend>` and back.
    ``pipeline`` is None for the no-model fallback (popular and fresh items from the live
    catalog counts).

    What the adapter adds is what only the service knows: the store's history of the user
    (the distinct items newer than the pipeline's snapshot become ``Query.history``; the
    older ones are in the pipeline already), the live catalog's unavailable items and
    category filter (``Query.exclude``/``include``), and the event type of each history item
    (``Query.context["event_types"]``, for "because you *watched* X").

    Concurrency: a request reads the published pipeline once and needs no lock. New items
    (:meth:`add_items`) join a *copy* (the slow part, e.g. encoding text, runs while requests
    go on) that is then published in one assignment; writers take turns on a lock."""

    def __init__(self, version: str | None, pipeline: Pipeline | None, trained_until: int = 0) -> None:
        self.version = version
        self.trained_until = trained_until
        self.pipeline = pipeline
        self._writer = threading.Lock()

    @property
    def model(self) -> Pipeline | None:
        """The served pipeline (None before the first training)."""
        return self.pipeline

    # ------------------------------------------------------------------ new items
    def add_items(self, items: Sequence[Item]) -> int:
        """Make items the pipeline has never seen recommendable at once, without retraining,
        by every stage that can place an item by its content (a content model source, the
        fresh source). Returns how many were new to the pipeline. Requests never wait."""
        with self._writer:
            pipeline = self.pipeline
            if pipeline is None:
                return 0
            new = [it for it in {it.item_id: it for it in items}.values() if it.item_id not in pipeline.context_.items]
            if not new:
                return 0
            import pandas as pd

            frame = pd.DataFrame({
                "item_id": [it.item_id for it in new],
                "title": [it.title for it in new],
                "categories": [list(it.categories) for it in new],
                "text": [it.text for it in new],
                "created_at": [it.created_at if it.created_at > 0 else float("nan") for it in new],
                **{key: [it.attributes.get(key) for it in new] for key in ("brand", "tags", "description") if any(key in it.attributes for it in new)},
            })
            grown = copy.deepcopy(pipeline)  # tens of ms; the requests in flight keep the original
            added = grown.add_items(frame)
            self.pipeline = grown  # the swap: one assignment
            return added

    def add_events(self, events: Sequence[Event]) -> None:
        """Events (no exposure) for the stages that learn from them as they arrive; the next
        request sees them. Writers take turns on the same lock as new items."""
        pipeline = self.pipeline
        if pipeline is None or not pipeline.takes_events:
            return
        used = [e for e in events if e.event_type not in EXPOSURE_TYPES]
        if used:
            with self._writer:
                self.pipeline.add_events([e.user_id for e in used], [e.item_id for e in used],  # type: ignore[union-attr]
                                         [e.timestamp for e in used])

    # ------------------------------------------------------------------ requests
    def query(self, store: Store, request: Request, catalog: CatalogView, history_limit: int = 500) -> tuple[Query, list[StoredEvent]]:
        """The pipeline query for a service request, and the user's history it was built from."""
        history = self._history(store, request, history_limit)
        recent_ids = [e.event.item_id for e in history]
        blocked = set(request.exclude) | catalog.unavailable
        allowed = catalog.with_categories(request.categories) if request.categories else None
        new_ids = [e.event.item_id for e in history if e.seq > self.trained_until] if request.user_id else recent_ids
        event_types = {e.event.item_id: e.event.event_type for e in history}
        return Query(
            user=request.user_id,
            history=new_ids,
            include=None if allowed is None else sorted(allowed),
            exclude=sorted(blocked | set(recent_ids)),
            context={"event_types": event_types, "now": time.time()},  # "now": for age filters
        ), history

    def recommend(
        self, store: Store, request: Request, catalog: CatalogView, history_limit: int = 500,
        timings: dict[str, float] | None = None, gate: AbstractContextManager[Any] | None = None,
    ) -> list[Recommendation]:
        """The explained top-n for a request; falls back to popular/fresh items and says so.
        ``history_limit`` bounds the distinct items read of the user's history; ``timings``
        receives the seconds spent in each pipeline stage; ``gate`` (e.g. a semaphore) is held
        while the pipeline scores (not while the store is read)."""
        pipeline = self.pipeline  # one consistent pipeline for the whole request
        query, history = self.query(store, request, catalog, history_limit)
        if pipeline is None:
            blocked = set(query.exclude)
            allowed = None if query.include is None else set(query.include)
            return self._fallback(catalog, request, blocked, allowed, "no trained model yet")
        with gate if gate is not None else nullcontext():
            (slate,) = pipeline.slates([query], n=request.n, timings=timings)
        out = self._out(slate.items, catalog)
        if not isinstance(pipeline.explorer, GreedyExplorer):
            out = [dataclasses.replace(r, propensity=float(p), policy=slate.policy, policy_version=slate.policy_version)
                   for r, p in zip(out, slate.propensities, strict=True)]
        return out

    def similar(self, item_id: str, n: int, catalog: CatalogView) -> list[Recommendation]:
        """Items like ``item_id`` (a one-item session). ``KeyError`` when the catalog has no
        such item (never added, or deleted: the pipeline may still know it, but it is gone)."""
        if item_id not in catalog:
            raise KeyError(item_id)
        pipeline = self.pipeline
        if pipeline is None or item_id not in pipeline.context_.items:
            same = catalog.with_categories(catalog.categories(item_id)) - {item_id} - catalog.unavailable
            ranked = sorted(same, key=lambda i: -catalog.popularity.get(i, 0))[:n]
            return [Recommendation(i, float(catalog.popularity.get(i, 0)), "content", "shares a category", catalog.title(i)) for i in ranked]
        query = Query(history=[item_id], exclude=sorted(catalog.unavailable | {item_id}))
        (items,) = pipeline.recommend([query], n=n)
        title = catalog.title(item_id) or item_id
        return [
            Recommendation(str(i), float(sc), src, f"similar to {title}", catalog.title(str(i)))
            for i, sc, src in zip(items.item_ids, items.scores, items.sources, strict=True)
        ]

    @staticmethod
    def _out(items: ItemList, catalog: CatalogView) -> list[Recommendation]:
        return [
            Recommendation(str(i), float(sc), src, reason, catalog.title(str(i)))
            for i, sc, src, reason in zip(items.item_ids, items.scores, items.sources, items.reasons, strict=True)
        ]

    # ------------------------------------------------------------------ helpers
    def _history(self, store: Store, request: Request, limit: int) -> list[StoredEvent]:
        if request.user_id is None:
            return [StoredEvent(Event("", i), 0) for i in request.history]
        # distinct items, so repeats cannot push others out; impressions are what we showed
        events = store.recent_items(request.user_id, limit, EXPOSURE_TYPES)  # type: ignore[attr-defined]
        return [StoredEvent(e, i) for i, e in events]

    def _fallback(
        self, catalog: CatalogView, request: Request, blocked: set[str], allowed: set[str] | None, why: str
    ) -> list[Recommendation]:
        """Popular items (and fresh ones) from the live catalog, each saying why it is there."""
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
