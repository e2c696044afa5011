"""Rerankers: what each costs in accuracy for what it buys (variety, coverage, calibration,
less popularity), as its weight goes from 0 to 0.9.

    TASTEMAKER_DATA=../shared/datasets .venv/bin/python benchmarks/rerank.py [--quick]
        [--datasets ml-latest-small beauty] [--beauty-users 3000]

Reference protocol (tastemaker.data.splits.leave_one_out): the pipeline is fitted on
train + validation and tested on each user's last event, ranking over all unseen items. The
pipeline is an EASE source (reg=50, the tuned value on both datasets in the "classical"
section) plus global popularity, 200 candidates each, reciprocal-rank fusion with EASE
weighted 2 (as in the shipped default pipeline), then one reranker: MMR over catalog
categories, Steck's calibration, and personalised xQuAD over head/tail items (the head = the
20% most popular items), binary and smooth. Every weight 0, 0.1, ..., 0.9 per reranker.

The sources and the ranker run once per user; each reranker then reranks those same ranked
candidate lists to 10 items, which is exactly what the pipeline does with one reranker (the
last reranker is asked for ``n``; checked for a sample of users against a pipeline holding the
reranker). Measures over the top-10s, with tastemaker.eval.metrics: NDCG@10 and HR@10,
intra-list diversity (1 - mean pairwise cosine of category vectors), catalog coverage,
miscalibration (Steck's KL(p || q~), alpha = 0.01, p from the training history; mean over
users), average recommended popularity (training users per item) and the tail's share.
Every test user of ml-latest-small; a seeded sample of ``--beauty-users`` on Beauty
(categories: the S3-Rec attribute ids of its catalog).

Writes benchmarks/results/rerank.json, rerank.png (NDCG@10 against each beyond-accuracy
measure, one line per reranker) and the "rerank" section of RESULTS.md. ``--quick``
(ml-latest-small, 150 users, weights 0/0.5/0.9) writes rerank-quick.* and leaves RESULTS.md alone.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy loads: one BLAS thread on a shared 2-core box

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, machine, table, update_section, write_json  # noqa: E402

THREADS = 1
SEED = 42
K = 10
EASE_REG = 50.0
DATASETS: dict[str, tuple[str, dict[str, Any]]] = {
    "ml-latest-small": ("movielens-latest-small", {}),
    "beauty": ("amazon-s3rec-sequences", {"subset": "Beauty"}),
}
#: label -> (reranker kind, extra config)
RERANKERS: dict[str, tuple[str, dict[str, Any]]] = {
    "mmr": ("mmr", {}),
    "calibration": ("calibration", {}),
    "xquad-binary": ("popularity", {"variant": "binary"}),
    "xquad-smooth": ("popularity", {"variant": "smooth"}),
}
WEIGHTS = [round(0.1 * k, 1) for k in range(10)]
BEYOND = [("diversity", "intra-list diversity"), ("coverage", "catalog coverage"),
          ("miscalibration", "miscalibration (KL)"), ("arp", "average recommended popularity")]


def pipeline_spec(candidates: int) -> dict[str, Any]:
    return {
        "candidates": candidates,
        "sources": [{"kind": "model", "model": "ease", "params": {"reg": EASE_REG}}, {"kind": "popularity"}],
        "ranker": {"kind": "fusion", "method": "rrf", "weights": {"ease": 2.0}},
    }


def run_dataset(label: str, users_wanted: int | None, weights: list[float], candidates: int) -> list[dict[str, Any]]:
    from tastemaker.config import stage_class
    from tastemaker.data.loaders import load_dataset
    from tastemaker.data.splits import leave_one_out
    from tastemaker.eval.metrics import (
        accuracy_per_user, average_popularity, bootstrap_ci, coverage, intra_list_diversity, truth_from_pairs,
    )
    from tastemaker.pipeline import Pipeline
    from tastemaker.pipeline.config import build_pipeline
    from tastemaker.rerank import head_items, history_distribution, list_distribution, miscalibration
    from tastemaker.types import FitOptions, Query

    options = FitOptions(seed=SEED, threads=THREADS, progress=False)
    name, kwargs = DATASETS[label]
    data = load_dataset(name, **kwargs)
    split = leave_one_out(data)
    train = split.train_with_validation()
    test = split.test
    if users_wanted is not None and users_wanted < len(test):
        test = test.sample(users_wanted, random_state=SEED)
    users, truth = truth_from_pairs(test["user"].to_numpy(), test["item"].to_numpy(), data.n_items)

    start = time.perf_counter()
    base = build_pipeline(pipeline_spec(candidates), origin="benchmark").fit(train, options)
    fit_s = time.perf_counter() - start
    ctx = base.context_
    ids = [str(u) for u in ctx.users.decode(users)]
    queries = [Query(user=u) for u in ids]
    start = time.perf_counter()
    # the whole ranked candidate list (no reranker: the explorer shows all of it)
    ranked = base.recommend(queries, n=candidates * len(base.sources))
    rank_ms = (time.perf_counter() - start) / len(queries) * 1e3
    print(f"{label}: {len(users)} test users, {data.n_items} items, {ctx.categories.shape[1]} categories; "
          f"pipeline fit {fit_s:.1f} s, sources + ranker {rank_ms:.2f} ms/user, "
          f"{np.mean([len(r) for r in ranked]):.0f} candidates/user", flush=True)

    head = head_items(train.item_popularity(), 0.2)
    p = np.array([history_distribution(ctx.categories, ctx.training_history(int(u))) for u in users])
    records: list[dict[str, Any]] = []
    for reranker_label, (kind, extra) in RERANKERS.items():
        cls = stage_class("reranker", kind)
        for weight in weights:
            reranker = cls(cls.Config(weight=weight, **extra)).fit(train, ctx, options)
            top = np.full((len(users), K), -1, dtype=np.int32)
            start = time.perf_counter()
            for row, (query, items) in enumerate(zip(queries, ranked, strict=True)):
                out = reranker.rerank(query, items, K)
                top[row, : len(out)] = out.item_codes
            rerank_ms = (time.perf_counter() - start) / len(queries) * 1e3
            if weight in (weights[len(weights) // 2], weights[-1]):
                _check_against_pipeline(Pipeline, base, reranker, queries[:40], top[:40])
            accuracy = accuracy_per_user(top, truth, K)
            q = np.array([list_distribution(ctx.categories, row) for row in top])
            low, high = bootstrap_ci(accuracy["ndcg@10"], n_resamples=500, seed=SEED)
            record = {
                "dataset": label, "reranker": reranker_label, "kind": kind, "weight": weight, "config": extra,
                "users": len(users), "ndcg@10": float(accuracy["ndcg@10"].mean()), "ndcg@10_ci": [low, high],
                "hr@10": float(accuracy["hr@10"].mean()),
                "diversity": intra_list_diversity(top, ctx.categories), "coverage": coverage(top, data.n_items),
                "miscalibration": float(miscalibration(p, q, rows=True).mean()),
                "arp": average_popularity(top, ctx.popularity), "tail_share": float((~head[top[top >= 0]]).mean()),
                "rerank_ms": rerank_ms, "pipeline_fit_s": fit_s, "rank_ms": rank_ms,
            }
            records.append(record)
            print(f"  {reranker_label:13s} w={weight:.1f}  ndcg {record['ndcg@10']:.4f}  ild {record['diversity']:.4f}  "
                  f"cov {record['coverage']:.4f}  kl {record['miscalibration']:.4f}  arp {record['arp']:.1f}  "
                  f"tail {record['tail_share']:.4f}  {rerank_ms:.2f} ms/list", flush=True)
    return records


def _check_against_pipeline(pipeline_cls: Any, base: Any, reranker: Any, queries: list[Any], top: np.ndarray) -> None:
    """The shortcut (rerank the ranked lists) gives what a pipeline holding the reranker serves."""
    served = pipeline_cls(base.sources, base.ranker, [reranker], candidates=base.candidates)
    served.context_, served.fallback = base.context_, base.fallback  # the same fitted stages, nothing refitted
    for row, items in enumerate(served.recommend(queries, n=K)):
        expected = top[row][top[row] >= 0].tolist()
        if items.item_codes.tolist() != expected:
            raise AssertionError(f"{reranker!r}: the pipeline served {items.item_codes.tolist()}, the benchmark measured {expected}")


def plot(records: list[dict[str, Any]], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot (pip install 'tastemaker[plot]')")
        return None
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    fig, axes = plt.subplots(len(datasets), len(BEYOND), figsize=(4.2 * len(BEYOND), 3.6 * len(datasets)), squeeze=False)
    for row, dataset in enumerate(datasets):
        for col, (key, title) in enumerate(BEYOND):
            ax = axes[row][col]
            for label in RERANKERS:
                points = sorted((r for r in records if r["dataset"] == dataset and r["reranker"] == label), key=lambda r: r["weight"])
                if not points:
                    continue
                xs, ys = [r[key] for r in points], [r["ndcg@10"] for r in points]
                (line,) = ax.plot(xs, ys, marker="o", markersize=3, label=label)
                ax.annotate(f"{points[-1]['weight']:.1f}", (xs[-1], ys[-1]), fontsize=7, color=line.get_color())
            ax.scatter([points[0][key]], [points[0]["ndcg@10"]], color="black", zorder=5, s=18, label="weight 0")
            ax.set_xlabel(title)
            ax.set_ylabel("NDCG@10")
            ax.set_title(dataset, fontsize=9)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Rerankers: NDCG@10 against beyond-accuracy measures as the weight goes 0 -> 0.9", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def report(records: list[dict[str, Any]], args: argparse.Namespace, elapsed: float) -> str:
    headers = ["reranker", "weight", "NDCG@10", "HR@10", "diversity", "coverage", "miscalibration", "ARP", "tail share", "ms/list"]
    parts = [
        f"Machine: {machine()}; {THREADS} BLAS thread; {elapsed / 60:.1f} min in all. "
        "`TASTEMAKER_DATA=../shared/datasets .venv/bin/python benchmarks/rerank.py`.",
        "",
        "Reference protocol (leave-one-out; fit on train + validation, test on the last event, full ranking). "
        f"Pipeline: EASE (reg={EASE_REG:g}) + global popularity, {args.candidates} candidates each, RRF with EASE "
        "weighted 2, then one reranker asked for the top 10. Diversity: 1 - mean pairwise category cosine in the "
        "top-10; coverage: share of the catalog in any top-10; miscalibration: Steck's KL(p || q~), alpha 0.01, "
        "mean over users; ARP: mean training users per recommended item; tail share: recommended items outside "
        "the 20% most popular. ms/list: one reranker call (its share of a request).",
    ]
    for dataset in dict.fromkeys(r["dataset"] for r in records):
        rows = [r for r in records if r["dataset"] == dataset]
        base = rows[0]
        parts += ["", f"**{dataset}** ({base['users']} test users; pipeline fit {base['pipeline_fit_s']:.0f} s, "
                  f"sources + ranker {base['rank_ms']:.1f} ms/user; NDCG@10 at weight 0: {base['ndcg@10']:.4f}, "
                  f"95% CI {base['ndcg@10_ci'][0]:.4f}-{base['ndcg@10_ci'][1]:.4f})", ""]
        lines = [["none (weight 0)", "0"] + _cells(base)]
        lines += [[r["reranker"], f"{r['weight']:.1f}"] + _cells(r) for r in rows if r["weight"] > 0]
        parts.append(table(headers, lines))
    return "\n".join(parts)


def _cells(r: dict[str, Any]) -> list[Any]:
    return [r["ndcg@10"], r["hr@10"], r["diversity"], r["coverage"], r["miscalibration"], r["arp"], r["tail_share"], r["rerank_ms"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--beauty-users", type=int, default=3000)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    threadpool_limits(THREADS)
    if args.quick:
        args.datasets = ["ml-latest-small"]
    weights = [0.0, 0.5, 0.9] if args.quick else WEIGHTS
    started = time.perf_counter()
    records: list[dict[str, Any]] = []
    for label in args.datasets:
        wanted = 150 if args.quick else (args.beauty_users if label == "beauty" else None)
        records += run_dataset(label, wanted, weights, args.candidates)
    elapsed = time.perf_counter() - started
    script = "rerank-quick" if args.quick else "rerank"
    body = report(records, args, elapsed)
    print(body)
    print(write_json(script, records))
    png = plot(records, RESULTS_DIR / f"{script}.png")
    if png:
        print(png)
    if not args.quick:
        print(update_section("rerank", "### Rerankers: accuracy against beyond-accuracy measures (`benchmarks/rerank.py`)\n\n"
                             + body + ("\n\n![NDCG@10 against each measure](results/rerank.png)" if png else "")))


if __name__ == "__main__":
    main()
