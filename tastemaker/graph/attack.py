"""The Sybil attack simulator: what an attacker gains by faking identities, with and without
MeritRank.

The attack (Web3Recommend's threat model, ``../shared/reference/papers.md``): an attacker
owns a *target* item that honest users barely know and creates ``sybils`` fake accounts.

* Every Sybil interacts with the target, and, to be found by walks at all, with
  ``camouflage`` items drawn from the ``popular`` honest items (an interaction edge needs no
  one's consent: this is how Sybils enter the bipartite graph).
* Every Sybil trusts ``sybil_trust`` other Sybils (a dense region of mutual trust).
* ``attack_edges`` honest users are made to trust a Sybil (social engineering; the only
  edges into the region that need an honest user's consent). With ``symmetric`` (a friend
  graph such as Last.fm's) every trust edge also goes back.

The attack is injected in real time through the source's :meth:`GraphSource.add_events` and
:meth:`GraphSource.add_trust`, as a service would receive it. The gain is measured over a
sample of honest users: the share whose top-``k`` holds the target (*exposure*), the mean
share of their walks' item visits that land on it (*score share*), and the share whose walks
reach it at all.

:class:`AttackSimulator` fits the honest graph once and restores it before each attack, so
a sweep over ``sybils`` and ``attack_edges`` costs one fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tastemaker.data.dataset import Dataset
from tastemaker.graph.source import GraphConfig, GraphSource
from tastemaker.pipeline.context import Context
from tastemaker.types import FitOptions, Query


@dataclass(frozen=True)
class Attack:
    """``sybils`` fake users and ``attack_edges`` honest users trusting one of them (module doc)."""

    sybils: int
    attack_edges: int
    camouflage: int = 10
    sybil_trust: int = 10
    symmetric: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.sybils < 0 or self.attack_edges < 0 or self.camouflage < 0 or self.sybil_trust < 0:
            raise ValueError("an attack's counts must be >= 0")
        if self.attack_edges and not self.sybils:
            raise ValueError("attack edges need at least one Sybil to point to")


@dataclass(frozen=True)
class Gain:
    """The target's standing among the honest users measured (module docstring)."""

    exposure: float
    score_share: float
    reached: float
    users: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def inject(source: GraphSource, attack: Attack, target: str, honest: Sequence[str], popular: Sequence[str]) -> list[str]:
    """Add the attack's users and edges to a fitted source, now; returns the Sybils' ids.
    ``honest``: who may be made to trust a Sybil; ``popular``: the camouflage pool."""
    rng = np.random.default_rng(attack.seed)
    sybils = [f"sybil-{attack.seed}-{j}" for j in range(attack.sybils)]
    if not sybils:
        return sybils
    users: list[str] = []
    items: list[str] = []
    for sybil in sybils:
        cover = rng.choice(len(popular), size=min(attack.camouflage, len(popular)), replace=False) if len(popular) else []
        chosen = [target] + [popular[int(c)] for c in cover]
        users += [sybil] * len(chosen)
        items += chosen
    source.add_events(users, items)
    src: list[str] = []
    dst: list[str] = []
    degree = min(attack.sybil_trust, len(sybils) - 1)
    for j, sybil in enumerate(sybils):
        others = (j + 1 + rng.choice(len(sybils) - 1, size=degree, replace=False)) % len(sybils) if degree else []
        src += [sybil] * degree
        dst += [sybils[int(o)] for o in others]
    victims = rng.choice(len(honest), size=attack.attack_edges, replace=attack.attack_edges > len(honest))
    src += [honest[int(v)] for v in victims]
    dst += [sybils[int(s)] for s in rng.integers(0, len(sybils), attack.attack_edges)]
    if attack.symmetric:
        src, dst = src + dst, dst + src
    source.add_trust(src, dst)
    return sybils


def measure_gain(source: GraphSource, target: str, users: Sequence[str], k: int = 10) -> Gain:
    """The target's exposure, score share and reach over ``users`` (honest user ids)."""
    code = int(source.context_.items.code(target))
    resolved = source.context_.resolve([Query(user=u) for u in users])
    shown = share = reached = 0.0
    with source._lock:
        source.store_.refresh()
        for query in resolved:
            found = source.visits(query)
            top = source.rank(query, found, k)
            hit = np.flatnonzero(found.items == code)
            total = float(found.scores.sum())
            if len(hit) and total > 0:
                reached += 1
                share += float(found.scores[hit[0]]) / total
            shown += float(code in top.item_codes)
    n = max(len(resolved), 1)
    return Gain(shown / n, share / n, reached / n, len(resolved))


class AttackSimulator:
    """One honest graph, attacked many times (module docstring). ``users``: how many honest
    users (a seeded sample of those with interactions and trust edges, who MeritRank can
    protect) the gain is measured over."""

    def __init__(self, dataset: Dataset, config: GraphConfig | None = None, *, users: int = 200, seed: int = 0,
                 target: str | None = None) -> None:
        self.config = config or GraphConfig()
        self.context = Context.from_dataset(dataset)
        honest = GraphSource(self.config).fit(dataset, self.context, FitOptions(seed=seed, progress=False))
        self._state = honest.arrays()
        popularity = self.context.popularity
        self.target = target if target is not None else _least_known(popularity, self.context)
        ranked = np.argsort(-popularity, kind="stable")
        self.popular = [str(i) for i in self.context.items.decode(ranked[:100]) if str(i) != self.target]
        social = dataset.social
        trusting = np.unique(social["user"].to_numpy()) if social is not None and len(social) else np.zeros(0, np.int64)
        active = np.flatnonzero(np.diff(self.context.sequence_indptr) > 0)
        pool = np.intersect1d(trusting, active)
        self.honest = [str(u) for u in self.context.users.decode(pool)]
        rng = np.random.default_rng(seed)
        sample = rng.choice(len(pool), size=min(users, len(pool)), replace=False) if len(pool) else np.zeros(0, np.int64)
        self.measured = [self.honest[int(i)] for i in np.sort(sample)]

    def source(self, meritrank: bool) -> GraphSource:
        """A fresh copy of the honest graph, with MeritRank on or off."""
        copy = GraphSource(self.config.model_copy(update={"meritrank": meritrank}))
        copy.set_arrays(self._state)
        copy.bind(self.context)
        return copy

    def gain(self, attack: Attack, meritrank: bool, k: int = 10) -> Gain:
        """Attack a fresh copy of the honest graph and measure the target's gain."""
        source = self.source(meritrank)
        inject(source, attack, self.target, self.honest, self.popular)
        return measure_gain(source, self.target, self.measured, k)

    def sweep(self, attacks: Sequence[Attack], k: int = 10) -> list[dict[str, Any]]:
        """Every attack with and without MeritRank: one record each."""
        records = []
        for attack in attacks:
            for merit in (False, True):
                records.append({"sybils": attack.sybils, "attack_edges": attack.attack_edges, "meritrank": merit,
                                **self.gain(attack, merit, k).as_dict()})
        return records


def _least_known(popularity: np.ndarray, context: Context) -> str:
    """The item with the fewest (but at least one) honest users; ties: the lowest code."""
    known = np.flatnonzero(popularity > 0)
    return str(context.items.decode([int(known[np.argmin(popularity[known])])])[0])
