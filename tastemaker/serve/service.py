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

from tastemaker.pipeline import ModelSource, Pipeline
from tastemaker.pipeline.config import load_pipeline_config
from tastemaker.data.dataset import Dataset
from tastemaker.data.splits import leave_one_out
from tastemaker.errors import TastemakerError
from tastemaker.eval.protocols import selection_metrics
from tastemaker.protocols import EXPOSURE_TYPES, Event, Item
from tastemaker.serve.auth import Authenticator
from tastemaker.serve.engine import CatalogView, Engine, ModelRegistry, Recommendation, Request
from tastemaker.serve.online import OnlineLearner
from tastemaker.serve.experiments import assign_variant, team_draft
from tastemaker.serve.settings import Experiment, Settings
from tastemaker.store import import_dataset, open_store
from tastemaker.store.importing import dataset_items
from tastemaker.types import FitOptions

log = logging.getLogger("tastemaker.serve")


class TrainingError(TastemakerError):
    """A retraining run failed or its model missed the quality floor."""


class Service:
    def __init__(self, settings: Settings, warn_if_open: bool = True) -> None:
        self.settings = settings
        # how many requests score at once (see Settings.scoring_concurrency)
        self._scoring = threading.BoundedSemaphore(settings.scoring_concurrency)
        #: the app's per-stage latency histogram (labels: stage); None outside an app
        self.stage_histogram: Any = None
        # A request is one small matrix-vector product: BLAS threads only add contention.
        threadpool_limits(settings.threads)
        self.store = open_store(settings.store_url)
        self.registry = ModelRegistry(settings.models_dir)
        self.auth = Authenticator(settings)
        if self.auth.open and warn_if_open:
            log.warning("no API keys configured: the service is open to anyone who can reach it")
        self.catalog = CatalogView()
        self.catalog.upsert(self.store.list_items(available_only=False, limit=None))  # type: ignore[attr-defined]
        # being shown is not being liked: exposure events never count as popularity
        self.catalog.popularity.update(self.store.item_counts(exclude_types=EXPOSURE_TYPES))  # type: ignore[attr-defined]
        self.engine = Engine(None, None)
        self._engines: dict[str, Engine] = {}
        active = self.registry.active()
        if active:
            self.engine = self._load(active)
        # a bandit explorer learns from the event log: snapshot + replay, exactly once
        self.online = OnlineLearner(self.store, settings.online_rewards)
        self.online.attach(self.engine)
        self._train_lock = threading.Lock()
        self._chats: dict[str, Any] = {}  # per served version: its chat engine (tastemaker.chat)
        self._chat_lock = threading.Lock()
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
        self.online.close()
        self.store.close()

    def _schedule(self, interval: float) -> None:
        """Retrain every ``interval`` seconds when events arrived since the last attempt. A
        failed run (any exception: a quality gate, a ``LinAlgError``...) is logged and the
        schedule goes on; the thread only ends with the service."""
        last_seen = self.engine.trained_until
        while not self._stop.wait(interval):
            try:
                newest = self.store.max_event_id()  # type: ignore[attr-defined]
                if newest > last_seen:
                    last_seen = newest  # a run that fails is not retried until new events come
                    self.train()
            except TrainingError as exc:
                log.warning("scheduled retraining: %s", exc)
            except Exception:  # noqa: BLE001 - the schedule must outlive any one bad run
                log.exception("scheduled retraining failed; the schedule goes on")

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

    def delete_user(self, user_id: str) -> dict[str, int]:
        """Remove the user's events, attributes and assignments from the store, so the next
        model trained knows nothing of them. The active model keeps what it learned until then."""
        return self.store.delete_user(user_id)  # type: ignore[attr-defined,no-any-return]

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
        """Durably append, then update the counters the next request reads. Returns how many
        were written: events whose ``(user_id, event_id)`` is stored already are retries."""
        written = self.store.append_events(events)
        # popularity counts uses, never exposure; a skipped retry must not count twice, so
        # when some were skipped only the events without a client id (never skipped) count
        counted = events if written == len(events) else [e for e in events if e.event_id is None]
        self.catalog.count([e.item_id for e in counted if e.event_type not in EXPOSURE_TYPES])
        self.online.catch_up()  # a click teaches the explorer before this call returns
        try:
            self.engine.add_events(counted)  # e.g. a graph source's edges, for the next request
        except Exception as exc:  # noqa: BLE001 - the events are stored; the next retraining has them
            log.warning("events could not reach the served pipeline before retraining: %s", exc)
        return written

    # ------------------------------------------------------------------ recommendations
    def engine_for(self, version: str) -> Engine:
        if version in ("active", self.engine.version):
            return self.engine
        if version not in self._engines:
            self._engines[version] = self._load(version)
        return self._engines[version]

    def recommend(self, request: Request) -> tuple[list[Recommendation], str | None, str | None, list[str] | None]:
        """(items, model version, A/B variant, interleaving teams). The seconds spent in each
        pipeline stage go to ``stage_histogram`` (the app's Prometheus series)."""
        timings: dict[str, float] | None = {} if self.stage_histogram is not None else None
        try:
            return self._recommend(request, timings)
        finally:
            for stage, seconds in (timings or {}).items():
                self.stage_histogram.labels(stage).observe(seconds)

    def _recommend(
        self, request: Request, timings: dict[str, float] | None
    ) -> tuple[list[Recommendation], str | None, str | None, list[str] | None]:
        experiment = self._experiment_for(request)
        if experiment is None:
            engine = self.engine
            return engine.recommend(self.store, request, self.catalog, self.settings.history_limit, timings, self._scoring), engine.version, None, None
        if request.user_id is None:
            raise ValueError("experiments need a user id")
        if experiment.name.startswith("interleave"):
            a, b = (self.engine_for(v.model_version) for v in experiment.variants[:2])
            list_a = a.recommend(self.store, request, self.catalog, self.settings.history_limit, timings, self._scoring)
            list_b = b.recommend(self.store, request, self.catalog, self.settings.history_limit, timings, self._scoring)
            rng = random.Random(f"{request.user_id}:{time.time_ns()}")
            ids, teams = team_draft([r.item_id for r in list_a], [r.item_id for r in list_b], request.n, rng)
            by_id = {r.item_id: r for r in list_b} | {r.item_id: r for r in list_a}
            return [by_id[i] for i in ids], f"{a.version}|{b.version}", experiment.name, teams
        variant_name = self.store.assign(experiment.name, request.user_id, assign_variant(experiment, request.user_id))  # type: ignore[attr-defined]
        variant = next(v for v in experiment.variants if v.name == variant_name)
        engine = self.engine_for(variant.model_version)
        return engine.recommend(self.store, request, self.catalog, self.settings.history_limit, timings, self._scoring), engine.version, variant_name, None

    def chat(self, session_id: str, message: str, user_id: str | None = None) -> tuple[Any, str | None]:
        """One conversational turn over the active pipeline (``tastemaker.chat``): (the reply,
        the model version). Dialogue states and user memories live in the store, so a
        conversation survives a restart. ``LookupError`` before the first training."""
        engine = self.engine
        if engine.pipeline is None:
            raise LookupError("no trained model yet: POST /v1/admin/train first")
        chat = self._chats.get(engine.version or "")
        if chat is None:
            from tastemaker.chat.serving import ChatService

            with self._chat_lock:
                chat = self._chats.get(engine.version or "")
                if chat is None:  # built once per served version (the catalog's linker, the encoder)
                    chat = ChatService(engine.pipeline, self.store)
                    self._chats = {engine.version or "": chat}
        with self._chat_lock:  # the engine's encoder and caches are not shared across threads
            return chat.turn(session_id, message, user_id), engine.version

    def _experiment_for(self, request: Request) -> Experiment | None:
        name = request.context.get("experiment") if request.context else None
        for exp in self.settings.experiments:
            if name == exp.name or (name is None and not exp.name.startswith("interleave")):
                return exp
        return None

    def log_impressions(self, user_id: str | None, request_id: str, items: Sequence[Recommendation], variant: str | None, teams: Sequence[str] | None) -> None:
        """Log what was shown: for experiments (so click-through can be computed per variant)
        and for a bandit explorer (each item with its position, propensity, policy and policy
        version: what the policy learns from and off-policy evaluation reads). Anonymous
        sessions are not logged (the store keys events by user)."""
        explored = bool(items) and items[0].policy != "greedy"
        if user_id is None or (variant is None and not explored):
            return
        now = time.time()
        events = []
        for k, r in enumerate(items):
            context: dict[str, Any] = {"request_id": request_id, "position": k}
            if variant is not None:
                context["variant"] = variant
            if teams:
                context["team"] = teams[k]
            # every logged impression says who chose it and how likely it was: OPE reads them
            context |= {"propensity": r.propensity, "policy": r.policy, "policy_version": r.policy_version}
            events.append(Event(user_id, r.item_id, EXPOSURE_TYPES[0], 1.0, now, context))
        self.store.append_events(events)
        if explored:
            self.online.catch_up()

    def import_dataset(self, data: Dataset, batch: int = 50_000, progress: bool = False) -> int:
        """Load a dataset's catalog, users and events into the store (e.g. to start a demo or
        seed your own data), then refresh what requests read; returns the events written."""
        items = dataset_items(data)
        _, written = import_dataset(self.store, data, batch=batch, progress=progress)
        self.catalog.upsert(items)
        self.engine.add_items(items)
        self.catalog.popularity.update(self.store.item_counts(exclude_types=EXPOSURE_TYPES))  # type: ignore[attr-defined]
        return written

    # ------------------------------------------------------------------ training
    def train(
        self, model: str | None = None, params: dict[str, Any] | None = None, activate: bool = True,
        pipeline: str | None = None,
    ) -> dict[str, Any]:
        """Fit a pipeline on the store's training events, check the quality gate on a
        leave-one-out holdout, save it as a new version and (by default) swap it in (see
        :meth:`plan` for what is trained). One run at a time: a second call while one runs
        raises :class:`TrainingError`."""
        if not self._train_lock.acquire(blocking=False):
            raise TrainingError("a training run is already in progress")
        try:
            return self._train(model, params, activate, pipeline)
        finally:
            self._train_lock.release()

    def train_in_background(
        self, model: str | None = None, params: dict[str, Any] | None = None, activate: bool = True,
        pipeline: str | None = None,
    ) -> str:
        """Start :meth:`train` in a thread and return its job id. What to train is checked
        first (``ValueError``/``TypeError``), and a run already in progress is a
        :class:`TrainingError`, so a job that could not run is never reported as started."""
        self.plan(model, params, pipeline)
        if not self._train_lock.acquire(blocking=False):
            raise TrainingError("a training run is already in progress")
        job = uuid.uuid4().hex[:12]
        self.training = {"state": "running", "job": job, "started": time.time()}

        def run() -> None:
            try:
                self._train(model, params, activate, pipeline, job)
            except Exception as exc:  # recorded in self.training by _train
                log.warning("training job %s failed: %s", job, exc)
            finally:
                self._train_lock.release()

        try:
            threading.Thread(target=run, daemon=True, name=f"train-{job}").start()
        except BaseException:
            self._train_lock.release()
            raise
        return job

    def plan(self, model: str | None = None, params: dict[str, Any] | None = None, pipeline: str | None = None) -> Pipeline:
        """The (unfitted) pipeline to train: the pipeline file ``pipeline`` (a path or a
        shipped name), else, when no model is named, ``training.pipeline`` if set; else a
        one-source pipeline over ``model`` (default ``training.model``) with ``params``
        (default ``training.params``). A bad name, key or value raises ``ValueError`` here,
        before any work."""
        cfg = self.settings.training
        chosen_file = pipeline or (cfg.pipeline if model is None and params is None else None)
        if chosen_file:
            return load_pipeline_config(chosen_file)
        source = ModelSource(model=model or cfg.model, params=cfg.params if params is None else params,
                             exact_below=self.settings.ann_exact_below)
        return Pipeline([source])

    def _train(
        self, model: str | None, params: dict[str, Any] | None, activate: bool, pipeline: str | None = None,
        job: str | None = None,
    ) -> dict[str, Any]:
        """The training run itself; the caller holds ``_train_lock``."""
        started = time.time()
        self.training = {"state": "running", "job": job, "started": started}
        try:
            cfg = self.settings.training
            planned = self.plan(model, params, pipeline)
            until = self.store.max_event_id()  # type: ignore[attr-defined]
            # exposure (impressions) never trains; event_types narrows it further
            data = self.store.to_dataset(until_id=until, event_types=cfg.event_types)  # type: ignore[attr-defined]
            if data.n_interactions == 0:
                raise TrainingError("the store has no training events (impressions never train)")
            options = FitOptions(threads=cfg.threads, progress=False)
            metrics = self._gate(planned, data, options)
            fitted = planned.clone().fit(data, options)
            stages = [{"role": role, "name": stage.name, "kind": stage.kind, "config": stage.config.model_dump(mode="json")}
                      for role, stage in fitted.stages if role != "fallback"]
            sources = fitted.sources
            info = {"trained_until": until, "metrics": metrics, "pipeline": fitted.name, "stages": stages,
                    "params": sources[0].config.model_dump(mode="json").get("params", {}) if len(sources) == 1 else {},
                    "n_events": data.n_interactions, "event_types": cfg.event_types}
            version = self.registry.add(fitted, info)
            if activate:
                self.activate(version)
            self.training = {"state": "done", "job": job, "version": version, "metrics": metrics,
                             "started": started, "finished": time.time()}
            return {"version": version, "activated": activate} | info
        except Exception as exc:
            error = str(exc) if isinstance(exc, TrainingError) else f"{type(exc).__name__}: {exc}"
            self.training = {"state": "failed", "job": job, "error": error, "started": started, "finished": time.time()}
            if isinstance(exc, TrainingError):
                raise
            log.exception("training failed")
            raise TrainingError(f"training failed: {error}") from exc

    def _gate(self, planned: Pipeline, data: Dataset, options: FitOptions) -> dict[str, float]:
        """Holdout metrics of the candidate pipeline; raises :class:`TrainingError` (and logs
        it) when it misses ``min_ndcg10`` or, with ``beat_popularity``, does worse than the
        most-popular baseline. Both are ranked pessimistically (ties and NaN earn nothing)."""
        cfg = self.settings.training
        split = leave_one_out(data)
        if not len(split.test):
            return {}
        train = split.train_with_validation()
        candidate = planned.clone().fit(train, options)
        metrics = selection_metrics(candidate, split.test)[0]
        ndcg = float(metrics["ndcg@10"])
        problems = []
        if ndcg < cfg.min_ndcg10:
            problems.append(f"below the floor training.min_ndcg10 = {cfg.min_ndcg10}")
        only = [s.config.model for s in planned.sources if isinstance(s, ModelSource)]
        if cfg.beat_popularity and only != ["most-popular"]:
            baseline = Pipeline([ModelSource(model="most-popular")]).fit(train, options)
            popular = float(selection_metrics(baseline, split.test)[0]["ndcg@10"])
            metrics["most-popular ndcg@10"] = popular
            if ndcg < popular:
                problems.append(f"worse than the most-popular baseline ({popular:.4f}; training.beat_popularity)")
        if problems:
            message = f"new {planned.name} pipeline has holdout NDCG@10 {ndcg:.4f}, {' and '.join(problems)}: not activated"
            log.warning("training refused: %s", message)
            raise TrainingError(message)
        return metrics

    def _load(self, version: str) -> Engine:
        """A version's engine, with the catalog items that arrived after it was trained added
        where the model can represent them by content (so a restart does not drop them)."""
        engine = self.registry.load(version)
        if engine.pipeline is not None:
            known = engine.pipeline.items_
            later = [item_id for item_id in self.catalog.item_ids() if item_id not in known]  # from memory
            if later:  # only these are read back from the store (their text and attributes)
                try:
                    engine.add_items([it for it in self.store.get_items(later) if it is not None])  # type: ignore[attr-defined]
                except Exception as exc:  # noqa: BLE001 — they still come with the next retraining
                    log.warning("items added after %s could not join it: %s", version, exc)
        return engine

    def activate(self, version: str) -> bool:
        """Serve ``version``; False (and no reload) when it is the one served already."""
        if version == self.engine.version and version == self.registry.active():
            return False
        engine = self._load(version)  # load fully before anyone can see it
        self.registry.activate(version)
        self.engine = engine  # the swap: one reference assignment
        self.online.attach(engine)
        return True

    def rollback(self) -> str:
        """Serve the version active before this one. It is loaded first: a version that
        cannot load raises and the pointer (and the served model) stay where they were."""
        version = self.registry.previous()
        engine = self._load(version)
        self.registry.rollback(version)
        self.engine = engine
        self.online.attach(engine)
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
