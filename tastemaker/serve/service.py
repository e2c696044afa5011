"""The service's state and operations, independent of HTTP: the routes only call these.

One :class:`Service` per process holds the store, the model registry, the in-memory catalog
view and the active :class:`~tastemaker.serve.engine.Engine`. Swapping models is a single
reference assignment (atomic in CPython): a request that already holds the old engine
finishes with it, the next one gets the new one.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from threadpoolctl import threadpool_limits

from tastemaker.config import model_class
from tastemaker.data.dataset import Dataset
from tastemaker.data.splits import leave_one_out
from tastemaker.errors import TastemakerError
from tastemaker.eval.protocols import evaluate_model
from tastemaker.protocols import Event, Item
from tastemaker.serve.auth import Authenticator
from tastemaker.serve.engine import CatalogView, Engine, ModelRegistry, Recommendation, Request
from tastemaker.serve.experiments import assign_variant, team_draft
from tastemaker.serve.settings import Experiment, Settings
from tastemaker.store import open_store
from tastemaker.types import FitOptions

log = logging.getLogger("tastemaker.serve")


class TrainingError(TastemakerError):
    """A retraining run failed or its model missed the quality floor."""


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # A request is one small matrix-vector product: BLAS threads only add contention.
        threadpool_limits(settings.threads)
        self.store = open_store(settings.store_url)
        self.registry = ModelRegistry(settings.models_dir)
        self.auth = Authenticator(settings)
        if self.auth.open:
            log.warning("no API keys configured: the service is open to anyone who can reach it")
        self.catalog = CatalogView()
        self.catalog.upsert(self.store.list_items(available_only=False, limit=None))  # type: ignore[attr-defined]
        counts = self.store.item_counts()  # type: ignore[attr-defined]
        for item, shown in self.store.item_counts("impression").items():  # type: ignore[attr-defined]
            counts[item] -= shown  # being shown is not being liked
        self.catalog.popularity.update(counts)
        self.engine = Engine(None, None)
        self._engines: dict[str, Engine] = {}
        active = self.registry.active()
        if active:
            self.engine = self._load(active)
        self._train_lock = threading.Lock()
        self.training: dict[str, Any] = {"state": "idle"}
        self._stop = threading.Event()
        self._scheduler: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        interval = self.settings.training.interval_seconds
        if interval > 0:
            self._scheduler = threading.Thread(target=self._schedule, args=(interval,), daemon=True, name="retrain")
            self._scheduler.start()

    def close(self) -> None:
        self._stop.set()
        if self._scheduler is not None:
            self._scheduler.join(timeout=5)
        self.store.close()

    def _schedule(self, interval: float) -> None:
        last_seen = self.engine.trained_until
        while not self._stop.wait(interval):
            if self.store.max_event_id() > last_seen:  # type: ignore[attr-defined]
                try:
                    self.train()
                except TastemakerError as exc:
                    log.warning("scheduled retraining failed: %s", exc)
                last_seen = self.engine.trained_until

    # ------------------------------------------------------------------ catalog and events
    def upsert_items(self, items: Sequence[Item]) -> int:
        """Store the items; new ones join the active model at once where it can represent an
        item by its content (see :meth:`Engine.add_items`). Items added this way are not in
        the saved version: the next retraining includes them for real."""
        count = self.store.upsert_items(items)
        self.catalog.upsert(items)
        try:
            self.engine.add_items(items)
        except Exception as exc:  # noqa: BLE001 — the items are stored; only their early debut failed
            log.warning("new items could not join the served model before retraining: %s", exc)
        return count

    def delete_item(self, item_id: str) -> bool:
        found = self.store.delete_item(item_id)
        if found:
            self.catalog.remove(item_id)
        return found

    def set_available(self, item_id: str, available: bool) -> bool:
        found = self.store.set_available(item_id, available)
        if found:
            self.catalog.set_available(item_id, available)
        return found

    def ingest(self, events: Sequence[Event]) -> int:
        """Durably append, then update the counters the next request reads."""
        count = self.store.append_events(events)
        self.catalog.count([e.item_id for e in events])
        return count

    # ------------------------------------------------------------------ recommendations
    def engine_for(self, version: str) -> Engine:
        if version in ("active", self.engine.version):
            return self.engine
        if version not in self._engines:
            self._engines[version] = self._load(version)
        return self._engines[version]

    def recommend(self, request: Request) -> tuple[list[Recommendation], str | None, str | None, list[str] | None]:
        """(items, model version, A/B variant, interleaving teams)."""
        experiment = self._experiment_for(request)
        if experiment is None:
            engine = self.engine
            return engine.recommend(self.store, request, self.catalog), engine.version, None, None
        if request.user_id is None:
            raise ValueError("experiments need a user id")
        if experiment.name.startswith("interleave"):
            a, b = (self.engine_for(v.model_version) for v in experiment.variants[:2])
            list_a = a.recommend(self.store, request, self.catalog)
            list_b = b.recommend(self.store, request, self.catalog)
            rng = random.Random(f"{request.user_id}:{time.time_ns()}")
            ids, teams = team_draft([r.item_id for r in list_a], [r.item_id for r in list_b], request.n, rng)
            by_id = {r.item_id: r for r in list_b} | {r.item_id: r for r in list_a}
            return [by_id[i] for i in ids], f"{a.version}|{b.version}", experiment.name, teams
        variant_name = self.store.assign(experiment.name, request.user_id, assign_variant(experiment, request.user_id))  # type: ignore[attr-defined]
        variant = next(v for v in experiment.variants if v.name == variant_name)
        engine = self.engine_for(variant.model_version)
        return engine.recommend(self.store, request, self.catalog), engine.version, variant_name, None

    def _experiment_for(self, request: Request) -> Experiment | None:
        name = request.context.get("experiment") if request.context else None
        for exp in self.settings.experiments:
            if name == exp.name or (name is None and not exp.name.startswith("interleave")):
                return exp
        return None

    def log_impressions(self, user_id: str | None, request_id: str, items: Sequence[Recommendation], variant: str | None, teams: Sequence[str] | None) -> None:
        """Experiment traffic logs what was shown, so click-through can be computed."""
        if user_id is None or variant is None:
            return
        now = time.time()
        self.store.append_events(
            [
                Event(user_id, r.item_id, "impression", 1.0, now,
                      {"request_id": request_id, "variant": variant} | ({"team": teams[k]} if teams else {}))
                for k, r in enumerate(items)
            ]
        )

    def import_dataset(self, data: Dataset, batch: int = 50_000) -> int:
        """Load a dataset's catalog and events into the store (e.g. to start a demo)."""
        cat = data.catalog
        created = cat["created_at"].fillna(0.0).to_numpy()
        self.upsert_items(
            [Item(str(i), str(t), str(x), tuple(map(str, c)), {}, True, float(ts))
             for i, t, x, c, ts in zip(cat["item_id"], cat["title"], cat["text"], cat["categories"], created, strict=True)]
        )
        inter = data.interactions
        users = data.users.decode(inter["user"].to_numpy())
        items = data.items.decode(inter["item"].to_numpy())
        events = [
            Event(str(u), str(i), str(t), float(v), float(ts))
            for u, i, t, v, ts in zip(users, items, inter["event_type"], inter["value"], inter["timestamp"], strict=True)
        ]
        for start in range(0, len(events), batch):
            self.ingest(events[start : start + batch])
        return len(events)

    # ------------------------------------------------------------------ training
    def train(self, model: str | None = None, params: dict[str, Any] | None = None, activate: bool = True) -> dict[str, Any]:
        """Fit on everything in the store, check the quality floor on a leave-one-out holdout,
        save as a new version and (by default) swap it in. One run at a time."""
        if not self._train_lock.acquire(blocking=False):
            raise TrainingError("a training run is already in progress")
        try:
            self.training = {"state": "running", "started": time.time()}
            cfg = self.settings.training
            name = model or cfg.model
            cls = model_class(name)
            chosen = cfg.params if params is None else params
            until = self.store.max_event_id()  # type: ignore[attr-defined]
            data = self.store.to_dataset(until_id=until)  # type: ignore[attr-defined]
            if data.n_interactions == 0:
                raise TrainingError("the store has no events to train on")
            options = FitOptions(threads=cfg.threads, progress=False)
            split = leave_one_out(data)
            metrics: dict[str, float] = {}
            if len(split.test):
                candidate = cls(**chosen).fit(split.train_with_validation(), options)
                metrics = evaluate_model(candidate, split.test, ks=(10,), diversity=False)[0]
                if metrics["ndcg@10"] < cfg.min_ndcg10:
                    raise TrainingError(
                        f"new {name} model has holdout NDCG@10 {metrics['ndcg@10']:.4f} < floor {cfg.min_ndcg10}; not activated"
                    )
            fitted = cls(**chosen).fit(data, options)
            info = {"trained_until": until, "metrics": metrics, "params": chosen, "n_events": data.n_interactions}
            version = self.registry.add(fitted, info)
            if activate:
                self.activate(version)
            self.training = {"state": "done", "version": version, "metrics": metrics, "finished": time.time()}
            return {"version": version, "activated": activate} | info
        except Exception as exc:
            self.training = {"state": "failed", "error": str(exc), "finished": time.time()}
            raise
        finally:
            self._train_lock.release()

    def _load(self, version: str) -> Engine:
        """A version's engine, with the catalog items that arrived after it was trained added
        where the model can represent them by content (so a restart does not drop them)."""
        engine = self.registry.load(version, self.settings.ann_exact_below)
        if engine.model is not None and hasattr(engine.model, "add_items"):
            known = engine.model.items_
            later = [item_id for item_id in self.catalog.item_ids() if item_id not in known]  # from memory
            if later:  # only these are read back from the store (their text and attributes)
                try:
                    engine.add_items([it for it in self.store.get_items(later) if it is not None])  # type: ignore[attr-defined]
                except Exception as exc:  # noqa: BLE001 — they still come with the next retraining
                    log.warning("items added after %s could not join it: %s", version, exc)
        return engine

    def train_in_background(self, **kwargs: Any) -> str:
        job = uuid.uuid4().hex[:12]

        def run() -> None:
            try:
                self.train(**kwargs)
            except Exception as exc:  # recorded in self.training
                log.warning("training job %s failed: %s", job, exc)

        threading.Thread(target=run, daemon=True, name=f"train-{job}").start()
        return job

    def activate(self, version: str) -> None:
        engine = self._load(version)  # load fully before anyone can see it
        self.registry.activate(version)
        self.engine = engine  # the swap: one reference assignment

    def rollback(self) -> str:
        version = self.registry.rollback()
        self.engine = self._load(version)
        return version

    def status(self) -> dict[str, Any]:
        return {
            "model_version": self.engine.version,
            "training": self.training,
            "events": self.store.count_events(),
            "items": len(self.catalog.ranked_by_popularity()),
            "settings": {"store": self.settings.store_url.split("@")[-1], "models_dir": str(self.settings.models_dir)},
            "experiments": [e.model_dump() for e in self.settings.experiments],
        }
