"""Feeds the served pipeline's bandit explorer from the store's event log.

The event log is the source of truth. :class:`OnlineLearner` applies events to the explorer's
policy exactly once, in id order, as it tails the log (``events_since``); the service calls
:meth:`OnlineLearner.catch_up` right after it appends events, so a click changes the next
response at once. Two kinds of events teach the policy:

* an **impression** the explorer logged (``event_type`` "impression", ``context["policy"]`` =
  the explorer's label, with ``position``, ``propensity``, ``policy_version`` and
  ``request_id``): one observation with reward 0 (``Feedback(shown=True)``);
* a **reward** event (``rewards``: event type -> reward, by default click and conversion 1)
  on an item the explorer showed that user (found among the user's last ``lookback`` events,
  matched on ``request_id`` when the event names one): the reward is added to that impression
  (``Feedback(shown=False)``), which is additive, so the order of arrival does not matter.

The context (the user's vector) and the arm's features are recomputed from the explorer's
vector source when the event is applied. A snapshot of the policy and the last event id it
has seen is kept in the store (``put_state``, under ``online:<version>:<explorer>``) every
``snapshot_every`` events and on close; on restart the learner loads it and replays the events
after it, so no acknowledged event is lost or counted twice. A newly trained version starts
with a fresh policy, from the events that arrive after it is served (its user vectors live in
another space than the previous model's).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from typing import Any

from tastemaker.pipeline.explore import BanditExplorer
from tastemaker.protocols import EXPOSURE_TYPES, Event

log = logging.getLogger("tastemaker.serve")

#: reward per event type, by default
DEFAULT_REWARDS: dict[str, float] = {"click": 1.0, "conversion": 1.0}


class OnlineLearner:
    def __init__(self, store: Any, rewards: Mapping[str, float] | None = None, snapshot_every: int = 500,
                 lookback: int = 200) -> None:
        self.store = store
        self.rewards = dict(DEFAULT_REWARDS if rewards is None else rewards)
        self.snapshot_every = snapshot_every
        self.lookback = lookback
        self._lock = threading.Lock()
        self.engine: Any = None
        self.key: str | None = None
        self.last_id = 0
        self._pending = 0
        #: events applied since this learner was made (impressions, rewards), for status and tests
        self.applied = {"impressions": 0, "rewards": 0}

    def attach(self, engine: Any) -> None:
        """Learn for ``engine``'s explorer from now on (nothing to do unless it is a bandit):
        its stored snapshot is loaded and the events after it replayed. The explorer is read
        from ``engine.pipeline`` at every event, so the copy an engine makes when items are
        added (which shares the live policy) is the one whose catalog is used."""
        with self._lock:
            self._snapshot()
            self.engine = engine
            explorer = self.explorer
            if explorer is None:
                self.key = None
                return
            self.key = f"online:{engine.version}:{explorer.name}"
            raw = self.store.get_state(self.key)
            if raw is not None:
                state = json.loads(raw)
                explorer.load_state(state["policy"])
                self.last_id = int(state["last_event_id"])
            else:  # a version served for the first time learns from the events to come
                self.last_id = int(self.store.max_event_id())
                self._snapshot(force=True)
        self.catch_up()

    @property
    def explorer(self) -> BanditExplorer | None:
        """The served pipeline's bandit explorer (None when it has none)."""
        engine = self.engine
        pipeline = getattr(engine, "pipeline", None) if engine is not None else None
        explorer = getattr(pipeline, "explorer", None)
        return explorer if isinstance(explorer, BanditExplorer) and engine.version is not None else None

    def catch_up(self) -> int:
        """Apply every event not applied yet, in id order; returns how many were read."""
        with self._lock:
            if self.explorer is None:
                return 0
            read = 0
            while True:
                batch = self.store.events_since(self.last_id, limit=1000)
                if not batch:
                    break
                for event_id, event in batch:
                    self._apply(event)
                    self.last_id = event_id
                read += len(batch)
            self._pending += read
            if self._pending >= self.snapshot_every:
                self._snapshot()
            return read

    def close(self) -> None:
        with self._lock:
            self._snapshot()

    # ------------------------------------------------------------------ internals
    def _apply(self, event: Event) -> None:
        explorer = self.explorer
        assert explorer is not None
        context = event.context or {}
        if event.event_type in EXPOSURE_TYPES:
            if context.get("policy") != explorer.policy_label():
                return
            position = int(context.get("position", 0))
            explorer.update(explorer.feedback(event.user_id, [event.item_id], [0.0], shown=True, positions=[position]))
            self.applied["impressions"] += 1
        elif event.event_type in self.rewards:
            position = self._shown_at(event)
            if position is None:
                return  # not something the explorer showed this user: nothing to learn for it
            reward = self.rewards[event.event_type]
            explorer.update(explorer.feedback(event.user_id, [event.item_id], [reward], shown=False, positions=[position]))
            self.applied["rewards"] += 1

    def _shown_at(self, event: Event) -> int | None:
        """The position at which the explorer showed ``event``'s item to its user (the latest
        such impression, of the same request when the event names one), None if it did not."""
        assert self.explorer is not None
        label = self.explorer.policy_label()
        request = (event.context or {}).get("request_id")
        for past in reversed(self.store.history(event.user_id, limit=self.lookback)):
            ctx = past.context or {}
            if (past.event_type in EXPOSURE_TYPES and past.item_id == event.item_id and ctx.get("policy") == label
                    and (request is None or ctx.get("request_id") == request)):
                return int(ctx.get("position", 0))
        return None

    def _snapshot(self, force: bool = False) -> None:
        if self.explorer is None or self.key is None or (not force and not self._pending):
            return
        state = {"policy": self.explorer.policy_.state(), "last_event_id": self.last_id}
        self.store.put_state(self.key, json.dumps(state))
        self._pending = 0
