"""The Sybil attack simulator on a synthetic social network: without MeritRank the target's
gain grows with the number of Sybils; with it, it stays small and bounded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tastemaker.data.dataset import Dataset
from tastemaker.graph.attack import Attack, AttackSimulator, inject, measure_gain
from tastemaker.graph.source import GraphConfig


def _network(seed: int = 0) -> Dataset:
    """120 users in 4 friend communities, 60 items: each community likes its own 15 items
    (popular ones more), plus item "t", which one user knows (the attacker's target)."""
    rng = np.random.default_rng(seed)
    rows, friends = [], []
    for user in range(120):
        group = user % 4
        liked = rng.choice(15, size=6, replace=False, p=np.linspace(2, 1, 15) / np.linspace(2, 1, 15).sum())
        rows += [(f"u{user}", f"i{group * 15 + int(i)}") for i in liked]
        mates = [m for m in range(group, 120, 4) if m != user]
        friends += [(f"u{user}", f"u{int(m)}") for m in rng.choice(mates, size=4, replace=False)]
    rows.append(("u0", "t"))
    events = pd.DataFrame(rows, columns=["user", "item"])
    return Dataset.from_frames(events, social=pd.DataFrame(friends, columns=["user", "friend"]), name="communities")


@pytest.fixture(scope="module")
def simulator() -> AttackSimulator:
    return AttackSimulator(_network(), GraphConfig(walks=400), users=40, seed=1, target="t")


def test_the_simulator_picks_a_barely_known_target_and_protected_users() -> None:
    sim = AttackSimulator(_network(), GraphConfig(walks=50), users=10)
    assert sim.target == "t" and len(sim.measured) == 10 and set(sim.measured) <= set(sim.honest)
    assert "t" not in sim.popular and len(sim.popular) == 60


def test_injection_adds_the_sybils_edges_in_real_time(simulator: AttackSimulator) -> None:
    source = simulator.source(meritrank=False)
    before = source.store_.n_edges, source.store_.n_trust
    sybils = inject(source, Attack(sybils=5, attack_edges=3, camouflage=2, sybil_trust=2), "t", simulator.honest,
                    simulator.popular)
    assert len(sybils) == 5 and set(sybils) <= set(source.new_users_)
    assert source.store_.n_edges == before[0] + 5 * 3  # the target and 2 camouflage items each
    assert source.store_.n_trust == before[1] + 2 * (5 * 2 + 3)  # region + attack edges, both ways
    clean = simulator.source(meritrank=False)  # the honest graph is restored for the next attack
    assert clean.store_.n_edges == before[0] and not clean.new_users_


def test_meritrank_bounds_the_gain_that_grows_with_sybils_without_it(simulator: AttackSimulator) -> None:
    # one honest user knows the target, so some friends' walks reach it without any attack
    baseline = simulator.gain(Attack(sybils=0, attack_edges=0), meritrank=True)
    plain = [simulator.gain(Attack(sybils=k, attack_edges=2), meritrank=False) for k in (5, 50, 300)]
    merit = [simulator.gain(Attack(sybils=k, attack_edges=2), meritrank=True) for k in (5, 50, 300)]
    shares = [g.score_share for g in plain]
    assert shares[0] < shares[1] < shares[2] and shares[2] > 20 * baseline.score_share  # grows with k
    assert plain[1].exposure == plain[2].exposure == 1.0  # every honest top-10 holds the target
    # with MeritRank: within 3x of no attack at all, however many Sybils; exposure does not grow
    assert max(g.score_share for g in merit) < 3 * baseline.score_share
    assert max(g.exposure for g in merit) <= baseline.exposure + 0.15


def test_measure_gain_counts_users_and_attacks_are_checked(simulator: AttackSimulator) -> None:
    source = simulator.source(meritrank=True)
    gain = measure_gain(source, "t", simulator.measured[:10])
    assert gain.users == 10 and 0.0 <= gain.score_share <= gain.reached <= 1.0 and gain.exposure <= gain.reached
    with pytest.raises(ValueError, match="Sybil"):
        Attack(sybils=0, attack_edges=1)
