"""Graph and trust: a real-time personalized SALSA source with MeritRank Sybil resistance.

* :mod:`~tastemaker.graph.store`: the bounded-memory, time-segmented edge store (GraphJet);
* :mod:`~tastemaker.graph.salsa`: personalized SALSA walks, vectorised, and their exact answer;
* :mod:`~tastemaker.graph.meritrank`: MeritRank reputation (transitivity, connectivity and
  epoch decay), the reputed landing it gives the walk (Web3Recommend), and the per-root cache
  of both;
* :mod:`~tastemaker.graph.source`: the pipeline source (``kind = "graph"``), with real-time edges;
* :mod:`~tastemaker.graph.attack`: the Sybil attack simulator and the attacker's gain.

The source and the simulator load on first use (they pull in the pipeline).
"""

from __future__ import annotations

from typing import Any

from tastemaker.graph.meritrank import (
    MeritCache,
    MeritSettings,
    Reputation,
    ReputedLanding,
    gatekeeper_shares,
    reputation,
    trust_walks,
)
from tastemaker.graph.salsa import Visits, WalkSettings, exact_item_visits, walk_items
from tastemaker.graph.store import GraphStore

_LAZY = {"GraphSource": "tastemaker.graph.source", "GraphConfig": "tastemaker.graph.source",
         "Attack": "tastemaker.graph.attack", "inject": "tastemaker.graph.attack", "measure_gain": "tastemaker.graph.attack"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tastemaker.graph' has no attribute {name!r}")


__all__ = [
    "Attack", "GraphConfig", "GraphSource", "GraphStore", "MeritCache", "MeritSettings", "Reputation", "ReputedLanding", "Visits",
    "WalkSettings", "exact_item_visits", "gatekeeper_shares", "inject", "measure_gain", "reputation", "trust_walks",
    "walk_items",
]
