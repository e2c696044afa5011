"""Classical models under the reference protocol, plus wrapper overhead and evaluation speed.

    TASTEMAKER_DATA=../shared/datasets .venv/bin/python benchmarks/classical.py [--quick] [--parts quality,storage,fold-in]

1. ``quality``: every classical model on ml-latest-small, ML-100K and Amazon Beauty (S3-Rec):
   tuned on the validation item (tie-pessimistic NDCG@10, ``selection_metrics``), refit on
   train+validation, HR@10 / NDCG@10 on the test item. Each model runs in a fresh process so
   that its peak memory (RSS above the process's level after loading the data) is its own.
   Then ALS and BPR through tastemaker vs calling `implicit` directly on the same matrix,
   same hyperparameters and threads (fit-time ratio), and full-ranking evaluation of all
   Beauty users (users scored per second).
2. ``storage``: EASE (reg=50) with float32 and float16 weights on ml-latest-small and Beauty:
   artifact size, and test NDCG@10 of the model loaded back from it.
3. ``fold-in``: ALS and BPR on ml-latest-small and Beauty: for a sample of test users, the
   top-10 from the learned user vector against the top-10 from folding the same training
   history in as an anonymous session (overlap, test NDCG@10 of each), with the fold-in that
   this replaced (ALS's normal equations for both models) as the baseline; fold-in latency.

Writes benchmarks/results/classical.json (classical-storage.json, classical-fold-in.json), its
sections of benchmarks/RESULTS.md and benchmarks/results/classical.png.
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
    from tastemaker.eval.protocols import param_grid, selection_metrics
    from tastemaker.types import FitOptions

    threadpool_limits(THREADS)
    split = leave_one_out(_load(label))
    options = FitOptions(seed=42, threads=THREADS, progress=False)
    best: tuple[dict[str, Any], float] = ({}, -1.0)
    for params in param_grid(grid) or [{}]:
        model = model_class(model_name)(**params).fit(split.train, options)
        ndcg = selection_metrics(model, split.validation, k=10)[0]["ndcg@10"]
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


def ease_storage(label: str) -> list[dict[str, Any]]:
    """EASE (reg=50) with float32 and float16 weights: artifact size, and test quality of the
    model loaded back from the artifact (fresh process)."""
    import tempfile

    from threadpoolctl import threadpool_limits

    from tastemaker.artifact import load_model
    from tastemaker.data.splits import leave_one_out
    from tastemaker.eval.protocols import evaluate_model
    from tastemaker.models.ease import EASE
    from tastemaker.types import FitOptions

    threadpool_limits(THREADS)
    split = leave_one_out(_load(label))
    full = split.train_with_validation()
    options = FitOptions(seed=42, threads=THREADS, progress=False)
    records = []
    for precision in ("float32", "float16"):
        model = EASE(reg=50.0, precision=precision).fit(full, options)
        with tempfile.TemporaryDirectory() as tmp:
            path = model.save(Path(tmp) / "ease")
            size = sum(f.stat().st_size for f in path.iterdir())
            del model
            start = time.perf_counter()
            loaded = load_model(path)
            load_s = time.perf_counter() - start
        test, _ = evaluate_model(loaded, split.test, ks=(10, 20), diversity=False)
        records.append({"dataset": label, "model": "ease", "params": {"reg": 50.0, "precision": precision},
                        "items": full.n_items, "artifact_mib": size / 2**20, "load_s": load_s,
                        "ndcg@10": test["ndcg@10"], "hr@10": test["hr@10"], "ndcg@20": test["ndcg@20"]})
        if precision == "float32":
            records += _ease_top_k(label, loaded, split.test, (200, 1000))
        del loaded
    return records


def _ease_top_k(label: str, model: Any, heldout: Any, ks: tuple[int, ...]) -> list[dict[str, Any]]:
    """The alternative not taken: keep each item's ``k`` largest-magnitude incoming weights
    (top-k per column of B). Scored in memory; the size is what a CSR of float16 values and
    int32 indices would take."""
    import numpy as np

    from tastemaker.eval.protocols import evaluate_model

    dense = model.weights_
    n = dense.shape[0]
    records = []
    for k in ks:
        keep = np.argpartition(-np.abs(dense), k - 1, axis=0)[:k]
        columns = np.broadcast_to(np.arange(n), keep.shape)
        model.weights_ = np.zeros_like(dense)
        model.weights_[keep, columns] = dense[keep, columns]
        test, _ = evaluate_model(model, heldout, ks=(10, 20), diversity=False)
        records.append({"dataset": label, "model": "ease", "params": {"reg": 50.0, "precision": f"top-{k} per item"},
                        "items": n, "artifact_mib": (k * n * 6 + (n + 1) * 8) / 2**20, "load_s": float("nan"),
                        "ndcg@10": test["ndcg@10"], "hr@10": test["hr@10"], "ndcg@20": test["ndcg@20"]})
    model.weights_ = dense
    return records


#: the parameters the default grids select (the quality table above)
FOLD_IN_PARAMS: dict[str, dict[str, dict[str, Any]]] = {
    "ml-latest-small": {"als": {"embedding_size": 128, "reg": 10.0, "alpha": 5.0},
                        "bpr": {"embedding_size": 128, "learning_rate": 0.01}},
    "beauty": {"als": {"embedding_size": 128, "reg": 1.0, "alpha": 20.0},
               "bpr": {"embedding_size": 128, "learning_rate": 0.05}},
}


def _previous_fold_in(item_factors: Any, history: Any, alpha: float, reg: float) -> Any:
    """The fold-in this replaced: (YᵀY + reg·I + alpha·Y_hᵀY_h) x = (1 + alpha)·Y_hᵀ1 over every
    column (for BPR, the bias column included, with alpha = 1 and reg = max(reg, 0.001))."""
    import numpy as np

    items = item_factors.astype(np.float64)
    gram = items.T @ items + reg * np.eye(items.shape[1])
    out = np.zeros((history.shape[0], items.shape[1]), dtype=np.float32)
    for row in range(history.shape[0]):
        liked = items[history.indices[history.indptr[row] : history.indptr[row + 1]]]
        out[row] = np.linalg.solve(gram + alpha * (liked.T @ liked), (1.0 + alpha) * liked.sum(axis=0))
    return out


def fold_in_agreement(label: str, n_users: int) -> list[dict[str, Any]]:
    """For a seeded sample of test users: top-10 from the learned vector vs from folding the
    user's training history in as an anonymous session (fresh process)."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from tastemaker.data.splits import leave_one_out
    from tastemaker.eval.metrics import accuracy_per_user, truth_from_pairs
    from tastemaker.models.mf import ALS, BPR
    from tastemaker.types import FitOptions, Query

    threadpool_limits(THREADS)
    split = leave_one_out(_load(label))
    full = split.train_with_validation()
    users, truth = truth_from_pairs(split.test["user"].to_numpy(), split.test["item"].to_numpy(), full.n_items)
    sample = np.sort(np.random.default_rng(0).choice(len(users), min(n_users, len(users)), replace=False))
    users, truth = users[sample], truth[sample]
    sequences = full.sequences()
    records = []
    for cls in (ALS, BPR):
        model = cls(**FOLD_IN_PARAMS[label][cls.name]).fit(full, FitOptions(seed=42, threads=THREADS, progress=False))
        learned = model.recommend_codes(users, 10)
        sessions = [Query(history=list(model.items_.decode(sequences[u]))) for u in users]
        start = time.perf_counter()
        folded = np.stack([np.pad(items.item_codes, (0, 10 - len(items)), constant_values=-1)
                           for items in model.recommend(sessions, n=10)])
        fold_ms = 1000 * (time.perf_counter() - start) / len(users)
        # the replaced fold-in, scored the same way (seen items excluded)
        history = model.user_items_[users]
        cfg = model.config
        alpha, reg = (cfg.alpha, cfg.reg) if cls is ALS else (1.0, max(cfg.reg, 1e-3))
        scores = _previous_fold_in(model.item_factors_, history, alpha, reg) @ model.item_factors_.T
        scores[np.repeat(np.arange(len(users)), np.diff(history.indptr)), history.indices] = -np.inf
        before = np.argsort(-scores, axis=1, kind="stable")[:, :10]

        def overlap(a: Any, b: Any) -> float:
            return float(np.mean([len(set(x[x >= 0]) & set(y[y >= 0])) / 10 for x, y in zip(a, b, strict=True)]))

        def ndcg(top: Any) -> float:
            return float(accuracy_per_user(top, truth, 10)["ndcg@10"].mean())

        records.append({"dataset": label, "model": cls.name, "params": FOLD_IN_PARAMS[label][cls.name],
                        "users": len(users), "learned_ndcg@10": ndcg(learned), "fold_in_ndcg@10": ndcg(folded),
                        "overlap@10": overlap(learned, folded), "before_fold_in_ndcg@10": ndcg(before),
                        "before_overlap@10": overlap(learned, before), "fold_in_ms": fold_ms})
    return records


def _in_fresh_process(fn: Any, *args: Any) -> Any:
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()


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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="ml-latest-small only, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", default="quality,storage,fold-in", help="comma-separated: quality, storage, fold-in")
    parser.add_argument("--fold-in-users", type=int, default=500, help="test users sampled for the fold-in part")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if unknown := parts - {"quality", "storage", "fold-in"}:
        raise SystemExit(f"unknown parts {sorted(unknown)}")
    if "quality" in parts:
        quality(args)
    labels = ["ml-latest-small"] if args.quick else ["ml-latest-small", "beauty"]
    if "storage" in parts:
        records = [r for label in labels for r in _in_fresh_process(ease_storage, label)]
        body = "\n".join([
            "### EASE weights: float32 vs float16 (`benchmarks/classical.py --parts storage`)",
            "",
            f"Machine: {machine()}; {THREADS} BLAS thread. EASE reg=50 fit on train+validation, saved, loaded back; "
            "test metrics of the loaded model (reference protocol). The top-k rows are the alternative not taken "
            "(each item keeps its k largest-magnitude weights; scored in memory, size as float16 CSR).",
            "",
            table(["dataset", "items", "weights", "artifact MiB", "load s", "HR@10", "NDCG@10", "NDCG@20"],
                  [[r["dataset"], r["items"], r["params"]["precision"], r["artifact_mib"],
                    r["load_s"] if r["load_s"] == r["load_s"] else "-", r["hr@10"],
                    r["ndcg@10"], r["ndcg@20"]] for r in records]),
        ])
        print(body)
        if not args.quick:
            update_section("classical-storage", body)
        write_json("classical-storage" if not args.quick else "classical-storage-quick", records)
    if "fold-in" in parts:
        records = [r for label in labels for r in _in_fresh_process(fold_in_agreement, label, args.fold_in_users)]
        body = "\n".join([
            "### Fold-in agreement (`benchmarks/classical.py --parts fold-in`)",
            "",
            f"Machine: {machine()}; {THREADS} BLAS thread. For {args.fold_in_users} seeded test users per dataset "
            "(all of them where fewer): the top-10 from the learned user vector vs from `Query(history=<the user's "
            "training items>)`, which folds the same history in. Overlap = shared items / 10; NDCG@10 on the test item. "
            "Before: the fold-in this replaced (ALS's normal equations with confidence 1 + alpha, for both models). "
            "Fold-in ms: per query, batch of all sampled users, on a shared machine.",
            "",
            table(["dataset", "model", "users", "NDCG@10 learned", "NDCG@10 fold-in", "overlap@10", "NDCG@10 before",
                   "overlap@10 before", "fold-in ms"],
                  [[r["dataset"], r["model"], r["users"], r["learned_ndcg@10"], r["fold_in_ndcg@10"], r["overlap@10"],
                    r["before_fold_in_ndcg@10"], r["before_overlap@10"], r["fold_in_ms"]] for r in records]),
        ])
        print(body)
        if not args.quick:
            update_section("classical-fold-in", body)
        write_json("classical-fold-in" if not args.quick else "classical-fold-in-quick", records)


def quality(args: argparse.Namespace) -> None:
    """Part 1: the quality table, the wrapper overhead and the evaluation speed."""
    from tastemaker.config import CLASSICAL, DEFAULT_GRIDS

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

    quality_table = table(
        ["dataset", "model", "HR@10", "NDCG@10", "HR@20", "NDCG@20", "fit s", "fit peak MB", "process peak MB", "best params"],
        [[r["dataset"], r["model"], r["hr@10"], r["ndcg@10"], r["hr@20"], r["ndcg@20"], r["fit_s"],
          round(r["fit_peak_mb"]), round(r["process_peak_rss_mb"]), ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "-"] for r in records],
    )
    body = [
        "## Classical models (`benchmarks/classical.py`)",
        "",
        f"Machine: {machine()}; {THREADS} BLAS/OpenMP thread.",
        "Reference protocol: temporal leave-one-out, full ranking, seen items excluded, tuned on "
        "validation NDCG@10 (ties and NaN ranked pessimistically: `selection_metrics`) over `tastemaker.config.DEFAULT_GRIDS`, refit on train+validation, test item reported. "
        "Fit peak MB: resident-memory peak during the final fit above the level after loading the data, "
        "in a fresh process; process peak MB: that process's maximum RSS (data + fit + evaluation).",
        "",
        quality_table,
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
