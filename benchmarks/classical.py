"""Classical models under the reference protocol, plus wrapper overhead and evaluation speed.

    TASTEMAKER_DATA=../shared/datasets .venv/bin/python benchmarks/classical.py [--quick]

1. Every classical model on ml-latest-small, ML-100K and Amazon Beauty (S3-Rec): tuned on the
   validation item, refit on train+validation, HR@10 / NDCG@10 on the test item. Each model
   runs in a fresh process so that its peak memory (RSS above the process's level after
   loading the data) is its own.
2. ALS and BPR through tastemaker vs calling `implicit` directly on the same matrix, same
   hyperparameters and threads: fit-time ratio.
3. Full-ranking evaluation of all Beauty users: users scored per second.

Writes benchmarks/results/classical.json, its section of benchmarks/RESULTS.md and
benchmarks/results/classical.png.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, table, update_section, write_json  # noqa: E402

DATASETS: dict[str, tuple[str, dict[str, Any]]] = {
    "ml-latest-small": ("movielens-latest-small", {}),
    "ml-100k": ("movielens-100k", {}),
    "beauty": ("amazon-s3rec-sequences", {"subset": "Beauty"}),
}
THREADS = 1  # pinned: on a shared 2-core box one thread is the stable setting


def _load(label: str):  # type: ignore[no-untyped-def]
    from tastemaker.data.loaders import load_dataset

    name, kwargs = DATASETS[label]
    return load_dataset(name, **kwargs)


def tune(label: str, model_name: str, grid: dict[str, list[Any]]) -> tuple[dict[str, Any], float]:
    """Grid search on the validation item; returns (best params, validation NDCG@10)."""
    from threadpoolctl import threadpool_limits

    from tastemaker.config import model_class
    from tastemaker.data.splits import leave_one_out
    from tastemaker.eval.protocols import evaluate_model, param_grid
    from tastemaker.types import FitOptions

    threadpool_limits(THREADS)
    split = leave_one_out(_load(label))
    options = FitOptions(seed=42, threads=THREADS, progress=False)
    best: tuple[dict[str, Any], float] = ({}, -1.0)
    for params in param_grid(grid) or [{}]:
        model = model_class(model_name)(**params).fit(split.train, options)
        ndcg = evaluate_model(model, split.validation, ks=(10,), diversity=False)[0]["ndcg@10"]
        if ndcg > best[1]:
            best = (params, ndcg)
    return best


def final_fit(label: str, model_name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Refit on train+validation and score the test item, in a fresh process so that the
    measured memory peak belongs to this fit alone."""
    import resource

    from threadpoolctl import threadpool_limits

    from tastemaker.config import model_class
    from tastemaker.data.splits import leave_one_out
    from tastemaker.eval.protocols import evaluate_model, peak_rss
    from tastemaker.types import FitOptions

    threadpool_limits(THREADS)
    data = _load(label)
    split = leave_one_out(data)
    full = split.train_with_validation()
    options = FitOptions(seed=42, threads=THREADS, progress=False)
    with peak_rss() as peak:
        start = time.perf_counter()
        model = model_class(model_name)(**params).fit(full, options)
        fit_s = time.perf_counter() - start
    start = time.perf_counter()
    test, _ = evaluate_model(model, split.test, ks=(10, 20), diversity=False)
    eval_s = time.perf_counter() - start
    return {
        "dataset": label,
        "model": model_name,
        "params": params,
        "hr@10": test["hr@10"],
        "ndcg@10": test["ndcg@10"],
        "hr@20": test["hr@20"],
        "ndcg@20": test["ndcg@20"],
        "coverage@10": test["coverage@10"],
        "fit_s": fit_s,
        "eval_s": eval_s,
        "fit_peak_mb": peak.megabytes,
        "process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "users": data.n_users,
        "items": data.n_items,
    }


def run_model(label: str, model_name: str, grid: dict[str, list[Any]]) -> dict[str, Any]:
    """Tune, then refit and test, each in its own spawned process."""
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        params, valid = pool.submit(tune, label, model_name, grid).result()
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        record = pool.submit(final_fit, label, model_name, params).result()
    return record | {"validation_ndcg@10": valid}


def implicit_ratio(repeats: int) -> list[dict[str, Any]]:
    """Fit time of our ALS/BPR wrapper vs implicit called directly, on Beauty's train+valid."""
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking
    from threadpoolctl import threadpool_limits

    from tastemaker.data.splits import leave_one_out
    from tastemaker.models.mf import ALS, BPR
    from tastemaker.types import FitOptions

    threadpool_limits(THREADS)
    full = leave_one_out(_load("beauty")).train_with_validation()
    options = FitOptions(seed=42, threads=THREADS, progress=False)
    cases = [
        ("als", lambda: ALS(embedding_size=128, reg=1.0, alpha=20.0, epochs=15).fit(full, options),
         lambda m: AlternatingLeastSquares(factors=128, regularization=1.0, alpha=20.0, iterations=15,
                                           random_state=42, num_threads=THREADS).fit(m, show_progress=False)),
        ("bpr", lambda: BPR(embedding_size=128, learning_rate=0.05, epochs=100).fit(full, options),
         lambda m: BayesianPersonalizedRanking(factors=128, learning_rate=0.05, regularization=0.01, iterations=100,
                                               random_state=42, num_threads=THREADS).fit(m, show_progress=False)),
    ]
    records = []
    for name, ours, theirs in cases:
        ours_t, theirs_t = [], []
        for _ in range(repeats):  # interleaved so that machine noise hits both alike
            start = time.perf_counter()
            ours()
            ours_t.append(time.perf_counter() - start)
            start = time.perf_counter()
            matrix = full.to_csr("binary")  # what implicit needs; building it is part of the work
            theirs(matrix)
            theirs_t.append(time.perf_counter() - start)
        o, t = statistics.median(ours_t), statistics.median(theirs_t)
        records.append({"dataset": "beauty", "model": name, "params": {"threads": THREADS},
                        "tastemaker_fit_s": o, "implicit_fit_s": t, "ratio": o / t})
    return records


def eval_speed() -> list[dict[str, Any]]:
    """Full-ranking top-20 + all metrics for every Beauty user."""
    from threadpoolctl import threadpool_limits

    from tastemaker.data.splits import leave_one_out
    from tastemaker.eval.protocols import evaluate_model
    from tastemaker.models.ease import EASE
    from tastemaker.models.mf import ALS
    from tastemaker.types import FitOptions

    threadpool_limits(THREADS)
    data = _load("beauty")
    split = leave_one_out(data)
    full = split.train_with_validation()
    categories = data.category_matrix()
    options = FitOptions(seed=42, threads=THREADS, progress=False)
    records = []
    for model in (EASE(reg=50.0).fit(full, options), ALS(embedding_size=128, reg=1.0, alpha=20.0).fit(full, options)):
        start = time.perf_counter()
        evaluate_model(model, split.test, ks=(10, 20), diversity=True, item_features=categories)
        seconds = time.perf_counter() - start
        n = int(split.test["user"].nunique())
        records.append({"dataset": "beauty", "model": model.name, "params": {"items": full.n_items},
                        "users": n, "eval_s": seconds, "users_per_s": n / seconds})
    return records


def plot(records: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot (pip install 'tastemaker[plot]')")
        return
    labels = list(dict.fromkeys(r["dataset"] for r in records))
    models = list(dict.fromkeys(r["model"] for r in records))
    fig, axes = plt.subplots(1, len(labels), figsize=(4 * len(labels), 3.2))
    for ax, label in zip(axes if len(labels) > 1 else [axes], labels, strict=True):
        vals = [next((r["ndcg@10"] for r in records if r["dataset"] == label and r["model"] == m), 0) for m in models]
        ax.bar(models, vals, color="#4c72b0")
        ax.set_title(label)
        ax.set_ylabel("test NDCG@10")
        ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    from tastemaker.config import CLASSICAL, DEFAULT_GRIDS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="ml-latest-small only, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    labels = ["ml-latest-small"] if args.quick else list(DATASETS)
    records: list[dict[str, Any]] = []
    for label in labels:
        for name in CLASSICAL:
            rec = run_model(label, name, DEFAULT_GRIDS[name])
            records.append(rec)
            print(f"{label:16s} {name:12s} NDCG@10={rec['ndcg@10']:.4f} HR@10={rec['hr@10']:.4f} "
                  f"fit={rec['fit_s']:.1f}s peak={rec['fit_peak_mb']:.0f}MB {rec['params']}", flush=True)
    ratio = [] if args.quick else implicit_ratio(args.repeats)
    speed = [] if args.quick else eval_speed()

    quality = table(
        ["dataset", "model", "HR@10", "NDCG@10", "HR@20", "NDCG@20", "fit s", "fit peak MB", "process peak MB", "best params"],
        [[r["dataset"], r["model"], r["hr@10"], r["ndcg@10"], r["hr@20"], r["ndcg@20"], r["fit_s"],
          round(r["fit_peak_mb"]), round(r["process_peak_rss_mb"]), ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "-"] for r in records],
    )
    body = [
        "## Classical models (`benchmarks/classical.py`)",
        "",
        f"Machine: {machine()}; {THREADS} BLAS/OpenMP thread.",
        "Reference protocol: temporal leave-one-out, full ranking, seen items excluded, tuned on "
        "validation NDCG@10 over `tastemaker.config.DEFAULT_GRIDS`, refit on train+validation, test item reported. "
        "Fit peak MB: resident-memory peak during the final fit above the level after loading the data, "
        "in a fresh process; process peak MB: that process's maximum RSS (data + fit + evaluation).",
        "",
        quality,
    ]
    if ratio:
        body += ["", "Wrapper overhead: tastemaker's ALS/BPR vs `implicit` called directly (Beauty, median of "
                 f"{args.repeats}, same hyperparameters and threads):", "",
                 table(["model", "tastemaker fit s", "implicit fit s", "ratio"],
                       [[r["model"], r["tastemaker_fit_s"], r["implicit_fit_s"], r["ratio"]] for r in ratio])]
    if speed:
        body += ["", "Full-ranking evaluation of every Beauty test user (top-20 over all items + all metrics "
                 "incl. diversity over item attributes):", "",
                 table(["model", "users", "items", "seconds", "users/s"],
                       [[r["model"], r["users"], r["params"]["items"], r["eval_s"], round(r["users_per_s"])] for r in speed])]
    body += ["", "![NDCG@10 per model](results/classical.png)"]
    text = "\n".join(body)
    print(text)
    if not args.quick:
        update_section("classical", text)
    write_json("classical" if not args.quick else "classical-quick", records + ratio + speed)
    if not args.quick:
        plot(records, Path(__file__).resolve().parent / "results" / "classical.png")


if __name__ == "__main__":
    main()
