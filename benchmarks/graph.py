"""The graph source (personalized SALSA + MeritRank): speed, Sybil resistance, relevance.

    TASTEMAKER_DATA=../shared/datasets .venv/bin/python benchmarks/graph.py [--quick] [--skip speed sybil relevance]

* **Speed** (synthetic power-law graph: Zipf item popularity, uniform users; one core):
  edge insertion (bulk batches of 10k then one index build; a stream of 100-edge batches
  with a read after each; a flood of 2x the store's capacity, oldest segments dropped), the
  latency of one recommendation (walks + top-10, seen items left out) at 1M and 10M edges,
  plain and with MeritRank (10 random trust edges per user), the root's reputation and reputed
  landing either computed in the request (the cache cold: a user's first request, or the first
  after a trust edge or a sealed segment) or taken from the graph source's cache
  (:class:`~tastemaker.graph.meritrank.MeritCache`: the user's next requests, 100 new edges
  arriving before each, which the cached landing takes in), and the store's memory at 1M and
  10M edges (allocated, per edge, and the process's resident growth).
* **Sybil resistance** (:mod:`tastemaker.graph.attack`) on hetrec2011-lastfm-2k (friend
  graph, edges both ways) and FilmTrust (directed trust): k Sybils (1 to 1,000; 10 attack
  edges) and m attack edges (1 to 100; 100 Sybils), each Sybil interacting with the target
  and 10 of the 100 most popular items and trusting 10 other Sybils; the gain over 200 honest
  users who trust someone (MeritRank can protect no one else), with and without MeritRank.
* **Relevance**: NDCG@10 / HR@10 (full ranking over each user's unseen items) of the graph
  source alone, with and without MeritRank, and inside a pipeline beside item-kNN and EASE
  (reciprocal-rank fusion, 200 candidates per source). Neither dataset has time (their loaders
  number each user's rows in file order, and Last.fm's user_artists.dat lists every user's
  artists by id), so leave-one-out would hold out an arbitrary item: on Last.fm the
  highest-id artist, where every model scored ~0. Both use a seeded random holdout instead
  (:func:`tastemaker.data.splits.random_holdout`: 20% of the events test, 10% validation,
  seed 42; held-out events of users or items absent from train are dropped), so a user has
  several test items (Last.fm 7.7, FilmTrust 5.6 on average). Last.fm's tag dates
  (user_taggedartists.dat, to the day) are no clock for the plays: only 22% of the (user,
  artist) pairs played were tagged by that user. Last.fm is cut to the artists with >= 5
  listeners (2,828 of 17,632; 71k of 93k plays): EASE on all 17.6k artists is a 17.6k^2
  inverse, minutes per fit here, and an artist one user knows is never a fair test item.

Writes benchmarks/results/graph.json (one record per row), graph.png (gain vs k and vs m) and
the "graph" section of RESULTS.md. ``--quick`` shrinks every part and writes graph-quick.* only.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy loads: one BLAS thread on a shared 2-core box

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, machine, table, update_section, write_json  # noqa: E402

SEED = 42
SYBILS = [1, 3, 10, 30, 100, 300, 1000]
EDGES = [1, 3, 10, 30, 100]
FIXED_EDGES, FIXED_SYBILS = 10, 100
DATASETS = {"lastfm": ("hetrec2011-lastfm-2k", True), "filmtrust": ("filmtrust", False)}
HOLDOUT = (0.2, 0.1)  # test and validation fractions of the random holdout (relevance)


# ---------------------------------------------------------------------- speed
def _rss_mb() -> float:
    from tastemaker.eval.protocols import _rss_mb as rss

    return rss()


def synthetic_edges(n: int, users: int, items: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ranks = np.minimum(rng.zipf(1.3, n) - 1, items - 1)
    return rng.integers(0, users, n), rng.permutation(items)[ranks]


def latency(store: Any, roots: np.ndarray, seed: int, cache: Any = None, before: Any = None) -> dict[str, float]:
    """p50/p99 (ms) of one recommendation per root: the walks from the user (history = its store
    items), then the top 10 unseen items. With ``cache`` (a :class:`MeritCache`) the walk lands
    through the root's MeritRank landing, as the graph source does: computed per request when
    the cache keeps no roots, else reused and caught up with the edges added since.
    ``before(q)``, if given, runs untimed before request ``q`` (new edges, then a refresh)."""
    from tastemaker.graph.salsa import WalkSettings, walk_items

    settings = WalkSettings()
    store.refresh()
    seconds = []
    for q, user in enumerate(roots.tolist()):
        if before is not None:
            before(q)
        start = time.perf_counter()
        history = store.neighbours("users", user)
        landing = cache.landing(store, user) if cache is not None else None
        found = walk_items(store, user, history, settings, np.random.default_rng([seed, q]), landing)
        keep = ~np.isin(found.items, history)
        codes, scores = found.items[keep], found.scores[keep]
        _ = codes[np.lexsort((codes, -scores))[:10]]
        seconds.append(time.perf_counter() - start)
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def pick_roots(users: np.ndarray, queries: int, seed: int) -> np.ndarray:
    """``queries`` users drawn (with replacement, seeded) from ``users``."""
    return users[np.random.default_rng(seed).integers(0, len(users), queries)]


def merit_latency(store: Any, users: np.ndarray, quick: bool, row: Any, summary: dict[str, Any]) -> None:
    """SALSA + MeritRank at the store's size: the reputation and landing computed per request
    (the cold cache: a user's first request, or the first after a trust edge or a sealed
    segment), and reused (the user's next requests, each after 100 new edges anywhere, which
    the cached landing takes in)."""
    from tastemaker.graph.meritrank import MeritCache, MeritSettings
    from tastemaker.graph.salsa import WalkSettings

    settings, merit = WalkSettings(), MeritSettings()
    label = f"SALSA + MeritRank at {store.n_edges / 1e6:g}M edges, 10 trust edges/user"
    cold = latency(store, pick_roots(users, 100 if quick else 300, SEED), SEED, MeritCache(settings, merit, SEED, roots=0))
    row(f"{label}: reputation + landing per request (cold cache)", edges=store.n_edges, **cold)
    summary["merit_1m"] = cold
    # a cache holding every measured root: a pass to fill it, then two timed passes
    distinct = np.unique(pick_roots(users, 50 if quick else 150, SEED + 1))
    cache = MeritCache(settings, merit, SEED, roots=len(distinct), megabytes=4096)
    latency(store, distinct, SEED, cache)
    s_src, s_dst = synthetic_edges(2 * len(distinct) * 100, len(users), store.n_nodes("items"), SEED + 4)

    def add(q: int) -> None:
        store.add(s_src[q * 100 : (q + 1) * 100], s_dst[q * 100 : (q + 1) * 100])
        store.refresh()

    warm = latency(store, np.concatenate([distinct, distinct]), SEED + 1, cache, before=add)
    row(f"{label}: cached (the user's next request, 100 new edges since)", edges=store.n_edges, **warm)
    summary["merit_1m_cached"] = warm


def run_speed(quick: bool, records: list[dict[str, Any]]) -> dict[str, Any]:
    import gc

    from tastemaker.graph.store import GraphStore

    scale = 10 if quick else 1
    n1, n10 = 1_000_000 // scale, 10_000_000 // scale
    users, items = 100_000 // scale, 50_000 // scale
    summary: dict[str, Any] = {}

    def row(label: str, **values: Any) -> None:
        records.append({"section": "speed", "measure": label, **values})

    # bulk insertion into the default store (10M edges, 8 segments: 1M fits the active one),
    # then the one index build a first read triggers
    src, dst = synthetic_edges(n1, users, items, SEED)
    store = GraphStore(n10, 8)
    start = time.perf_counter()
    for b in range(0, n1, 10_000):
        store.add(src[b : b + 10_000], dst[b : b + 10_000])
    appended = time.perf_counter() - start
    store.refresh()
    total = time.perf_counter() - start
    row("insert: bulk, 10k-edge batches, + index", edges=n1, edges_per_s=round(n1 / total), append_only_edges_per_s=round(n1 / appended))
    summary["bulk_edges_per_s"] = n1 / total
    # latency at 1M edges: in one segment, and over 8 sealed segments of a smaller store
    active = np.unique(src)
    queries = 300 if quick else 1000
    lat = latency(store, pick_roots(active, queries, SEED), SEED)
    row("SALSA top-10 at 1M edges, 1 segment", edges=store.n_edges, **lat)
    summary["salsa_1m"] = lat
    spread = GraphStore(n1 * 9 // 8, 9)  # 8 full segments and an empty active one: nothing dropped
    spread.add(src, dst)
    lat = latency(spread, pick_roots(active, queries, SEED), SEED)
    row("SALSA top-10 at 1M edges, 8 segments", edges=spread.n_edges, **lat)
    summary["salsa_1m_8"] = lat
    del spread
    trust_src = np.repeat(np.arange(users), 10)
    store.add_trust(trust_src, np.random.default_rng(SEED).integers(0, users, len(trust_src)))
    merit_latency(store, active, quick, row, summary)
    # a live stream: a read (refresh) after every 100-edge batch
    stream_n = 200_000 // scale
    s_src, s_dst = synthetic_edges(stream_n, users, items, SEED + 1)
    start = time.perf_counter()
    for b in range(0, stream_n, 100):
        store.add(s_src[b : b + 100], s_dst[b : b + 100])
        store.refresh()
    elapsed = time.perf_counter() - start
    row("insert: stream, 100-edge batches, a read after each", edges=stream_n, edges_per_s=round(stream_n / elapsed))
    summary["stream_edges_per_s"] = stream_n / elapsed
    del store, src, dst
    # memory at 1M and 10M edges: stores sized to their load (8 sealed segments, none dropped)
    for n in (n1, n10):
        f_src, f_dst = synthetic_edges(n, users * (n // n1), items * (n // n1), SEED + 2)
        gc.collect()
        before = _rss_mb()  # the inputs already exist: the growth is the store (its pages as they are touched)
        store = GraphStore(n * 9 // 8, 9)
        store.add(f_src, f_dst)
        store.refresh()
        gc.collect()
        grown = _rss_mb() - before
        del f_src, f_dst
        row(f"memory at {n / 1e6:g}M edges", edges=store.n_edges, mb=round(store.nbytes / 2**20, 1),
            bytes_per_edge=round(store.nbytes / store.n_edges, 2), rss_growth_mb=round(grown, 1),
            edge_bytes_per_edge=store.bytes_per_edge(), nodes=store.n_nodes("users") + store.n_nodes("items"))
        summary[f"memory_{n}"] = {"mb": store.nbytes / 2**20, "bytes_per_edge": store.nbytes / store.n_edges, "rss_mb": grown}
        if n != n10:
            del store
    lat = latency(store, pick_roots(np.unique(store.edges()[0][:100_000]), 100 if quick else 300, SEED), SEED)
    row("SALSA top-10 at 10M edges, 8 segments", edges=store.n_edges, **lat)
    summary["salsa_10m"] = lat
    # a flood of twice the store's capacity over the same nodes, in two halves: the second
    # half must leave the allocated bytes (and, near enough, the resident set) unchanged
    batch = 1_000_000 // scale
    phases = []
    start = time.perf_counter()
    for phase in range(2):
        for b in range(0, store.max_edges, batch):
            f_src, f_dst = synthetic_edges(batch, users * 10, items * 10, SEED + 3 + phase * store.max_edges + b)
            store.add(f_src, f_dst)
        store.refresh()
        gc.collect()
        phases.append((store.nbytes, _rss_mb()))
    elapsed = time.perf_counter() - start
    flood = 2 * store.max_edges
    row("insert: flood of 2x capacity (seal + drop), + index", edges=flood, edges_per_s=round(flood / elapsed),
        mb=round(store.nbytes / 2**20, 1), held=store.n_edges, dropped=store.dropped,
        second_half_allocated_growth_mb=round((phases[1][0] - phases[0][0]) / 2**20, 2),
        second_half_rss_growth_mb=round(phases[1][1] - phases[0][1], 1))
    summary["flood"] = {"edges_per_s": flood / elapsed, "held": store.n_edges,
                        "allocated_growth_mb": (phases[1][0] - phases[0][0]) / 2**20, "rss_growth_mb": phases[1][1] - phases[0][1]}
    return summary


# ---------------------------------------------------------------------- Sybil resistance
def run_sybil(quick: bool, records: list[dict[str, Any]]) -> None:
    from tastemaker.data.loaders import load_dataset
    from tastemaker.graph.attack import Attack, AttackSimulator

    sybils, edges = (SYBILS[::2], EDGES[::2]) if quick else (SYBILS, EDGES)
    for label, (name, symmetric) in DATASETS.items():
        start = time.perf_counter()
        sim = AttackSimulator(load_dataset(name), users=40 if quick else 200, seed=SEED)
        attacks = [("none", Attack(0, 0, symmetric=symmetric, seed=SEED))]
        attacks += [("k", Attack(k, FIXED_EDGES, symmetric=symmetric, seed=SEED)) for k in sybils]
        attacks += [("m", Attack(FIXED_SYBILS, m, symmetric=symmetric, seed=SEED)) for m in edges if m != FIXED_EDGES]
        for sweep, attack in attacks:
            for merit in (False, True):
                gain = sim.gain(attack, merit)
                record = {"section": "sybil", "dataset": label, "sweep": sweep, "sybils": attack.sybils,
                          "attack_edges": attack.attack_edges, "meritrank": merit, "target": sim.target, **gain.as_dict()}
                records.append(record)
        print(f"  {label}: {len(attacks) * 2} attacks in {time.perf_counter() - start:.0f}s", flush=True)


def sybil_bound(sweeps: list[dict[str, Any]]) -> list[list[Any]]:
    """Per dataset and MeritRank setting: the largest gain over k, and the log-log slope of the
    score share from k = 10 to 1,000 (1: linear in k; 0: flat)."""
    out = []
    for label in DATASETS:
        for merit in (False, True):
            rows = {r["sybils"]: r for r in sweeps if r["dataset"] == label and r["meritrank"] == merit
                    and (r["sweep"] == "k" or (r["sweep"] == "m" and r["attack_edges"] == FIXED_EDGES))}
            base = next(r for r in sweeps if r["dataset"] == label and r["meritrank"] == merit and r["sweep"] == "none")
            ks = sorted(k for k in rows if k >= 10)
            low, high = rows[ks[0]]["score_share"], rows[ks[-1]]["score_share"]
            slope = float(np.log(max(high, 1e-9) / max(low, 1e-9)) / np.log(ks[-1] / ks[0]))
            out.append([label, "on" if merit else "off", base["exposure"], max(r["exposure"] for r in rows.values()),
                        base["score_share"], max(r["score_share"] for r in rows.values()), round(slope, 2)])
    return out


def bound_text(bounds: list[list[Any]], sweeps: list[dict[str, Any]]) -> str:
    """The measured bound, in words, from the sweep."""
    lines = []
    for label in DATASETS:
        off = next(b for b in bounds if b[0] == label and b[1] == "off")
        on = next(b for b in bounds if b[0] == label and b[1] == "on")
        most = max((r for r in sweeps if r["dataset"] == label and r["meritrank"] and r["sweep"] == "m"),
                   key=lambda r: r["attack_edges"])
        lines.append(
            f"- {label}: without MeritRank the target's score share grows with k (log-log slope {off[6]:.2f}) to "
            f"{off[5]:.4f}, and its exposure to {off[3]:.3f} of honest users; with MeritRank the share stays at most "
            f"{on[5]:.4f} and the exposure at most {on[3]:.3f} for every k up to 1,000 (slope {on[6]:.2f}: flat). "
            f"The gain grows with the attack edges instead (m = {most['attack_edges']}: exposure {most['exposure']:.3f}, "
            f"share {most['score_share']:.4f}): MeritRank bounds what each consented edge is worth, not how many there are.")
    return "\n".join(lines)


def relevance_text(records: list[dict[str, Any]]) -> str:
    """What MeritRank does to relevance per dataset: the graph alone and the pipeline, on and off."""
    found = {(r["dataset"], r["model"]): r["ndcg@10"] for r in records if r["section"] == "relevance"}
    lines = ["What MeritRank does to relevance (test NDCG@10, off -> on):"]
    for label in DATASETS:
        alone = (found.get((label, "graph alone")), found.get((label, "pipeline (graph-meritrank)")))
        piped = (found.get((label, "pipeline (graph+itemknn+ease)")), found.get((label, "pipeline (graph-meritrank+itemknn+ease)")))
        if None in alone or None in piped:
            continue
        lines.append(f"- {label}: the graph alone {alone[0]:.4f} -> {alone[1]:.4f} ({alone[1] - alone[0]:+.4f}); in the "
                     f"pipeline {piped[0]:.4f} -> {piped[1]:.4f} ({piped[1] - piped[0]:+.4f}).")
    sizes = {r["dataset"]: (r["test_users"], r["trusting_test_users"]) for r in records if r["section"] == "relevance"}
    film_users, film_trusting = sizes.get("filmtrust", (0, 0))
    lines.append(
        "\nCaveats. Neither dataset has timestamps (the loaders number each user's rows in file order, and Last.fm's "
        "user_artists.dat lists every user's artists by id), so leave-one-out held out an arbitrary item: on Last.fm the "
        "highest-id artist, where every model scored under 0.01. Both now use a seeded random holdout "
        f"(`random_holdout`: {HOLDOUT[0]:.0%} of the events test, {HOLDOUT[1]:.0%} validation, seed {SEED}; "
        f"{sizes.get('lastfm', (0, 0))[0]:,} and {film_users:,} test users), so a user has several test items and these "
        "figures are not comparable with leave-one-out ones. Last.fm's tag dates are no clock for the plays (only 22% of "
        "the pairs played were tagged by their listener). FilmTrust's head is extreme, so popularity alone is strong "
        "there. MeritRank restricts a walk's landings to users the root's trust walks reach; FilmTrust users who trust "
        f"no one ({1 - film_trusting / max(film_users, 1):.0%} of its test users) get the plain walk, so the change there "
        f"comes from the other {film_trusting:,}.")
    return "\n".join(lines)


def plot(sweeps: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(DATASETS), 4, figsize=(17, 3.6 * len(DATASETS)), squeeze=False)
    for row, label in enumerate(DATASETS):
        for col, (sweep, x_key, measure) in enumerate(
            [("k", "sybils", "exposure"), ("k", "sybils", "score_share"), ("m", "attack_edges", "exposure"),
             ("m", "attack_edges", "score_share")]):
            ax = axes[row][col]
            for merit, color in ((False, "#c44e52"), (True, "#4c72b0")):
                points = [r for r in sweeps if r["dataset"] == label and r["meritrank"] == merit
                          and (r["sweep"] == sweep or (sweep == "m" and r["sweep"] == "k" and r["sybils"] == FIXED_SYBILS)
                               or (sweep == "k" and r["sweep"] == "m" and r["attack_edges"] == FIXED_EDGES))]
                points.sort(key=lambda r: r[x_key])
                ax.plot([r[x_key] for r in points], [r[measure] for r in points], "o-", color=color,
                        label="MeritRank" if merit else "plain SALSA")
            ax.set_xscale("log")
            fixed = f"m = {FIXED_EDGES}" if sweep == "k" else f"k = {FIXED_SYBILS}"
            ax.set_xlabel(("Sybils k" if sweep == "k" else "attack edges m") + f" ({fixed})")
            ax.set_ylabel("target in top-10 (share of users)" if measure == "exposure" else "target's share of item visits")
            ax.set_title(label)
            ax.legend(fontsize=8)
    fig.suptitle("Attacker's gain: a target item pushed by Sybils, with and without MeritRank")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------- relevance
def core(data: Any, listeners: int) -> Any:
    """The dataset rebuilt on the items with at least ``listeners`` users (a new, smaller item
    vocabulary: ``with_interactions`` keeps the old one, and EASE's size with it)."""
    import pandas as pd

    from tastemaker.data.dataset import Dataset

    keep = np.flatnonzero(data.item_popularity() >= listeners)
    inter = data.interactions[data.interactions["item"].isin(keep)]
    events = pd.DataFrame({"user": data.users.decode(inter["user"]), "item": data.items.decode(inter["item"]),
                           "timestamp": inter["timestamp"].to_numpy(), "value": inter["value"].to_numpy(),
                           "event_type": inter["event_type"].to_numpy()})
    catalog = data.catalog[data.catalog["item"].isin(keep)][["item_id", "title", "categories"]]
    social = pd.DataFrame({"user": data.users.decode(data.social["user"]), "friend": data.users.decode(data.social["friend"])})
    return Dataset.from_frames(events, catalog, social=social, name=f"{data.name}-{listeners}")


def run_relevance(quick: bool, records: list[dict[str, Any]]) -> None:
    from tastemaker.data.loaders import load_dataset
    from tastemaker.data.splits import random_holdout
    from tastemaker.eval.protocols import run_pipeline_protocol
    from tastemaker.graph.source import GraphSource
    from tastemaker.pipeline import ModelSource, Pipeline, PopularitySource
    from tastemaker.types import FitOptions

    options = FitOptions(seed=SEED, threads=1, progress=False)
    for label, (name, _) in DATASETS.items():
        data = load_dataset(name)
        if label == "lastfm":
            data = core(data, 5)
        if quick:
            users = np.random.default_rng(SEED).choice(data.n_users, size=min(300, data.n_users), replace=False)
            data = data.with_interactions(data.interactions[data.interactions["user"].isin(users)])
        # neither dataset has time: a seeded random holdout, not leave-one-out (module docstring)
        split = random_holdout(data, test_fraction=HOLDOUT[0], validation_fraction=HOLDOUT[1], seed=SEED)
        trusting = int(np.isin(split.test["user"].unique(), data.social["user"].unique()).sum())

        def models() -> list[Any]:
            return [ModelSource(model="itemknn"), ModelSource(model="ease")]

        runs = [
            (Pipeline([PopularitySource(name="popularity")]), True),
            (Pipeline([GraphSource(meritrank=False, name="graph"), *models()]), True),
            (Pipeline([GraphSource(meritrank=True, name="graph-meritrank")]), True),
            (Pipeline([GraphSource(meritrank=True, name="graph-meritrank"), *models()]), False),
        ]
        for pipe, alone in runs:
            start = time.perf_counter()
            result = run_pipeline_protocol(data, pipe, options, split=split, progress=False, alone=alone, ks=(10,))
            for r in result.results:
                lo, hi = r.ndcg10_ci
                records.append({"section": "relevance", "dataset": label, "model": r.model, "params": r.params,
                                "ndcg@10": r.test["ndcg@10"], "ndcg@10_ci": [lo, hi], "hr@10": r.test["hr@10"],
                                "validation_ndcg@10": r.validation["ndcg@10"], "fit_seconds": r.fit_seconds,
                                "test_users": result.n_test_users, "trusting_test_users": trusting,
                                "items": result.n_items})
            print(f"  {label} {pipe.name}: {time.perf_counter() - start:.0f}s", flush=True)


def tables(records: list[dict[str, Any]]) -> dict[str, str]:
    """Every table of the section, from the records (fresh or reused)."""
    speed = [[r["measure"]] + [r.get(k, "") for k in ("edges", "edges_per_s", "p50_ms", "p99_ms", "mb", "bytes_per_edge")]
             for r in records if r["section"] == "speed"]
    sweeps = [r for r in records if r["section"] == "sybil"]
    sybil = [[r["dataset"], r["sybils"], r["attack_edges"], "on" if r["meritrank"] else "off", r["exposure"], r["score_share"],
              r["reached"]] for r in sweeps]
    relevance = [[r["dataset"], r["model"], r["ndcg@10"], f"{r['ndcg@10_ci'][0]:.4f}-{r['ndcg@10_ci'][1]:.4f}", r["hr@10"],
                  r["validation_ndcg@10"], round(r["fit_seconds"], 1)] for r in records if r["section"] == "relevance"]
    bounds = sybil_bound(sweeps) if sweeps else []
    return {
        "speed": table(["measure", "edges", "edges/s", "p50 ms", "p99 ms", "store MB", "bytes/edge"], speed),
        "sybil": table(["dataset", "Sybils k", "attack edges m", "MeritRank", "exposure@10", "score share", "reached"], sybil),
        "bound": table(["dataset", "MeritRank", "exposure, no attack", "max exposure over k", "score share, no attack",
                        "max score share over k", "log-log slope k=10..1000"], bounds),
        "bound_text": bound_text(bounds, sweeps) if sweeps else "",
        "relevance": table(["dataset", "row", "NDCG@10", "95% CI", "HR@10", "validation NDCG@10", "fit s"], relevance),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip", nargs="*", default=[], choices=["speed", "sybil", "relevance"])
    parser.add_argument("--reuse", action="store_true",
                        help="take the skipped sections' records from results/graph.json and write RESULTS.md anyway")
    args = parser.parse_args()
    records: list[dict[str, Any]] = []
    started = time.perf_counter()
    runs = {"speed": run_speed, "sybil": run_sybil, "relevance": run_relevance}
    if args.reuse:
        old = json.loads((RESULTS_DIR / "graph.json").read_text())["records"]
        records += [r for r in old if r["section"] in args.skip or (r["section"] == "timing" and r["part"] in args.skip)]
    for name, run in runs.items():
        if name not in args.skip:
            begun = time.perf_counter()
            run(args.quick, records)
            records.append({"section": "timing", "part": name, "seconds": round(time.perf_counter() - begun, 1)})
            print(f"{name} done at {time.perf_counter() - started:.0f}s", flush=True)
    made = tables(records)
    print(made["speed"], made["bound"], made["sybil"], made["relevance"], sep="\n\n")
    suffix = "-quick" if args.quick else ""
    write_json(f"graph{suffix}", records)
    sweeps = [r for r in records if r["section"] == "sybil"]
    if sweeps:
        plot(sweeps, RESULTS_DIR / f"graph{suffix}.png")
    if args.quick or (args.skip and not args.reuse):
        return
    speed_table, bound_table, sybil_table, relevance_table = made["speed"], made["bound"], made["sybil"], made["relevance"]
    took = " Took " + ", ".join(f"{r['part']} {r['seconds']:.0f}s" for r in records if r["section"] == "timing") + "."
    text = (
        "## Graph: personalized SALSA with MeritRank (`benchmarks/graph.py`)\n\n"
        f"Machine: {machine()}; one thread. Defaults throughout (Web3Recommend's): 1,000 walks, at most 100 hops, "
        "stop probability 0.1, trust share 0.5, beta 0.8, gatekeeper 0.99, no epoch decay; store 10M edges in 8 segments "
        f"unless stated.{took} Plot: `benchmarks/results/graph.png`.\n\n"
        "Speed (synthetic power-law graph, 100k users x 50k items per 1M edges; bytes/edge = all the store's arrays over the "
        "edges held, of which 8.9 are per edge and the rest per node: offsets, 4 bytes per node and segment and side, "
        "and the tail's rows, 8 bytes per node and side):\n\n"
        + speed_table + "\n\n"
        "Sybil resistance: the bound. Gain = the target's exposure (share of 200 honest users who trust someone, with the "
        "target in their top-10) and its share of their walks' item visits; k = 1..1,000 Sybils with m = 10 attack edges "
        "(each Sybil: the target, 10 of the 100 most popular items, 10 trust edges to other Sybils):\n\n"
        + bound_table + "\n\n" + made["bound_text"] + "\n\nEvery attack:\n\n" + sybil_table + "\n\n"
        f"Relevance (a seeded random holdout: {HOLDOUT[0]:.0%} of the events test, {HOLDOUT[1]:.0%} validation; Last.fm: "
        "artists with >= 5 listeners):\n\n" + relevance_table + "\n\n"
        + relevance_text(records) + "\n"
    )
    update_section("graph", text)


if __name__ == "__main__":
    main()
