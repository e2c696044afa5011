"""Online experiments: A/B assignment by a stable hash, and team-draft interleaving.

* **A/B**: a user's variant is a pure function of (experiment, user id) — the SHA-256 of both,
  read as a number in [0, 1), falls into a variant's share of the weights — so every replica
  assigns alike without coordination; the store also records the assignment. Per-variant
  click-through and conversion come from the events (``Store.variant_stats``).
* **Team-draft interleaving** (Radlinski, Kurup & Joachims, CIKM 2008): two rankers take turns
  (the team with fewer picks goes next, a coin flip on ties) adding their best item not yet
  shown; each shown item remembers its team, and a click credits that team. The ranker whose
  team gets more clicks in a session wins it; over many sessions the winner is the better one.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tastemaker.serve.settings import Experiment


def bucket(experiment: str, user_id: str) -> float:
    """A stable number in [0, 1) for (experiment, user)."""
    digest = hashlib.sha256(f"{experiment}\x00{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_variant(experiment: Experiment, user_id: str) -> str:
    """The variant this user sees in ``experiment`` (stable across calls and replicas)."""
    total = sum(v.weight for v in experiment.variants)
    point = bucket(experiment.name, user_id) * total
    upto = 0.0
    for variant in experiment.variants:
        upto += variant.weight
        if point < upto:
            return variant.name
    return experiment.variants[-1].name


def team_draft(a: Sequence[str], b: Sequence[str], n: int, rng: random.Random) -> tuple[list[str], list[str]]:
    """Interleave rankings ``a`` and ``b`` into ``n`` items; returns (items, team per item)."""
    items: list[str] = []
    teams: list[str] = []
    shown: set[str] = set()
    picks = {"a": 0, "b": 0}
    pointers = {"a": 0, "b": 0}
    rankings = {"a": list(a), "b": list(b)}
    while len(items) < n:
        if picks["a"] != picks["b"]:
            team = "a" if picks["a"] < picks["b"] else "b"
        else:
            team = rng.choice(("a", "b"))
        ranking, pointer = rankings[team], pointers[team]
        while pointer < len(ranking) and ranking[pointer] in shown:
            pointer += 1
        if pointer >= len(ranking):
            other = "b" if team == "a" else "a"
            if all(x in shown for x in rankings[other][pointers[other]:]):
                break  # both exhausted
            picks[team] = 10**9  # this team is out; the other keeps picking
            continue
        item = ranking[pointer]
        pointers[team] = pointer + 1
        items.append(item)
        teams.append(team)
        shown.add(item)
        picks[team] += 1
    return items, teams


@dataclass(frozen=True)
class InterleavingResult:
    wins_a: int
    wins_b: int
    ties: int

    @property
    def winner(self) -> str:
        if self.wins_a == self.wins_b:
            return "tie"
        return "a" if self.wins_a > self.wins_b else "b"

    @property
    def preference(self) -> float:
        """(wins_a - wins_b) / sessions with a preference, in [-1, 1]; 0 when none."""
        decided = self.wins_a + self.wins_b
        return (self.wins_a - self.wins_b) / decided if decided else 0.0


def interleaving_outcome(sessions: Iterable[tuple[Mapping[str, str], Iterable[str]]]) -> InterleavingResult:
    """Score sessions of (item -> team shown, clicked items): a session goes to the team with
    more clicked items; equal counts (including no clicks) are ties."""
    wins_a = wins_b = ties = 0
    for teams, clicks in sessions:
        credit = {"a": 0, "b": 0}
        for item in set(clicks):
            team = teams.get(item)
            if team in credit:
                credit[team] += 1
        if credit["a"] > credit["b"]:
            wins_a += 1
        elif credit["b"] > credit["a"]:
            wins_b += 1
        else:
            ties += 1
    return InterleavingResult(wins_a, wins_b, ties)
