"""Text encoders and semantic IDs: throughput, cache speed-up, RQ-VAE fit time and quality.

    TASTEMAKER_DATA=../shared/datasets .venv/bin/python benchmarks/encoders.py [--quick]

Datasets: ml-latest-small (9,742 movies: title, genres, tags; bundled) and Amazon Scientific
(UniSRec, 4,385 products: title, category path, brand). Each item's text is
``tastemaker.content.describe``'s default description.

* **Encoders.** Items/s of MiniLM (all-MiniLM-L6-v2, offline) with torch on 2 threads and on 1
  (on a busy 2-core box, 2 threads can be slower), of a second call served by the SQLite cache,
  and of TF-IDF + SVD (fit on the same texts; fit time reported apart); the ratio of TF-IDF's
  throughput to MiniLM's comes from the same run.
* **Semantic IDs.** The RQ-VAE (3 levels x 64 codes, as in the tests, and 3 x 256, as in TIGER,
  also with ``standardise=True``) on the MiniLM and TF-IDF vectors of every item: fit time (1
  thread), codebook utilisation per level, collision rate before and after the extra level,
  reconstruction error and cosine. The share of items with a near-twin (nearest neighbour at
  cosine > 0.95) explains collisions: such items cannot be told apart by a few codes.

MiniLM vectors of every item are kept in the persistent cache ($TASTEMAKER_CACHE/embeddings),
so a re-run only recomputes the throughput sample. ``--quick`` uses 1,000 items per dataset.

Writes benchmarks/results/encoders.json and the "encoders" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, table, update_section, write_json  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from tastemaker.content.describe import describe_catalog  # noqa: E402
from tastemaker.content.encoders import MiniLMEncoder  # noqa: E402
from tastemaker.content.semantic_ids import SemanticIDs  # noqa: E402
from tastemaker.content.tfidf import TfidfSvdEncoder  # noqa: E402
from tastemaker.data.loaders import load_dataset  # noqa: E402
from tastemaker.types import FitOptions  # noqa: E402

DATASETS = ("movielens-latest-small", "amazon-scientific-unisrec")
SID_CONFIGS = ((3, 64, False), (3, 256, False), (3, 256, True))  # levels, codes, standardise


def near_twin_share(vectors: np.ndarray, threshold: float = 0.95, chunk: int = 2048) -> float:
    """Share of rows whose nearest other row has cosine above ``threshold`` (rows unit-norm)."""
    best = np.full(len(vectors), -np.inf, dtype=np.float32)
    for start in range(0, len(vectors), chunk):
        sims = vectors[start : start + chunk] @ vectors.T
        rows = np.arange(len(sims))
        sims[rows, start + rows] = -np.inf
        best[start : start + chunk] = sims.max(axis=1)
    return float((best > threshold).mean())


def timed_encode(encoder: Any, texts: list[str]) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    vectors = encoder.encode(texts)
    return vectors, time.perf_counter() - started


def encoder_records(name: str, texts: list[str], sample: int) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Throughput rows for one dataset, and the vectors of every text per encoder."""
    records: list[dict[str, Any]] = []
    subset = texts[:sample]
    minilm_rate: dict[int, float] = {}
    for threads in (2, 1):
        with tempfile.TemporaryDirectory() as tmp:
            encoder = MiniLMEncoder(device="cpu", threads=threads, cache_dir=tmp, progress=False)
            encoder.encode(["warm-up: load the model"])
            _, seconds = timed_encode(encoder, subset)
            _, cached_seconds = timed_encode(encoder, subset)
            assert encoder.cache is not None and encoder.cache.hits >= len(set(subset))
        minilm_rate[threads] = len(subset) / seconds
        cached_rate = len(subset) / cached_seconds
        records.append({
            "dataset": name, "encoder": "minilm", "threads": threads, "texts": len(subset), "seconds": seconds,
            "items_per_s": minilm_rate[threads], "cached_items_per_s": cached_rate,
            "load_average_1min": os.getloadavg()[0],
        })
        print(f"  minilm {threads} thread(s): {minilm_rate[threads]:.0f} items/s, cached {cached_rate:.0f}/s", flush=True)

    with threadpool_limits(1):
        started = time.perf_counter()
        tfidf = TfidfSvdEncoder(256).fit(texts)
        fit_seconds = time.perf_counter() - started
        tfidf_vectors, seconds = timed_encode(tfidf, texts)
    rate = len(texts) / seconds
    records.append({
        "dataset": name, "encoder": "tfidf-svd-256", "threads": 1, "texts": len(texts), "seconds": seconds,
        "items_per_s": rate, "fit_seconds": fit_seconds, "vocabulary": len(tfidf.vocabulary_),  # type: ignore[arg-type]
        "speedup_vs_minilm_2_threads": rate / minilm_rate[2], "speedup_vs_minilm_1_thread": rate / minilm_rate[1],
    })
    print(f"  tfidf: fit {fit_seconds:.1f}s, {rate:.0f} items/s ({rate / minilm_rate[2]:.0f}x MiniLM@2)", flush=True)

    # Every item's MiniLM vector, through the persistent cache (computed once across runs).
    full = MiniLMEncoder(device="cpu", threads=1, progress=True)
    return records, {"minilm": full.encode(texts), "tfidf-svd-256": tfidf_vectors}


def sid_records(name: str, vectors: dict[str, np.ndarray], epochs: int) -> list[dict[str, Any]]:
    records = []
    options = FitOptions(seed=0, threads=1, progress=False, device="cpu")
    for embedding, x in vectors.items():
        twins = near_twin_share(x)
        for levels, codes, standardise in SID_CONFIGS:
            model = SemanticIDs(
                levels=levels, codebook_size=codes, epochs=epochs, batch_size=256, standardise=standardise
            ).fit(x, options)
            m = model.metrics_
            records.append({
                "dataset": name, "embedding": embedding, "levels": levels, "codebook_size": codes, "epochs": epochs,
                "standardise": standardise, "items": len(x), "near_twin_share": twins, **m,
            })
            print(f"  rq-vae {embedding} {levels}x{codes} std={standardise}: collisions {m['collision_rate']:.3f}, "
                  f"utilisation {min(m['codebook_utilisation']):.2f}, {m['fit_seconds']:.1f}s", flush=True)
    return records


def report(enc: list[dict[str, Any]], sid: list[dict[str, Any]], args: argparse.Namespace) -> str:
    enc_rows = [
        [r["dataset"], r["encoder"], r["threads"], r["texts"], round(r["items_per_s"]), f"{r['load_average_1min']:.1f}" if "load_average_1min" in r else "",
         round(r["cached_items_per_s"]) if "cached_items_per_s" in r else "",
         f"{r['speedup_vs_minilm_2_threads']:.0f}x / {r['speedup_vs_minilm_1_thread']:.0f}x" if "fit_seconds" in r else "",
         f"{r['fit_seconds']:.2f}" if "fit_seconds" in r else ""]
        for r in enc
    ]
    sid_rows = [
        [r["dataset"], r["embedding"], f"{r['levels']}x{r['codebook_size']}" + (" std" if r["standardise"] else ""),
         r["epochs"], f"{r['fit_seconds']:.1f}",
         " / ".join(f"{u:.2f}" for u in r["codebook_utilisation"]), r["collision_rate"], r["collision_rate_final"],
         r["largest_collision"], r["reconstruction_error"], r["reconstruction_cosine"], r["near_twin_share"]]
        for r in sid
    ]
    return "\n".join([
        "## Text encoders and semantic IDs (`benchmarks/encoders.py`)",
        "",
        f"Machine: {machine()}. Shared and busy while measured: throughputs are lower bounds.",
        (f"Items: {'the first 1,000 per dataset (--quick)' if args.quick else 'every catalog item'}; "
         f"MiniLM throughput on the first {args.sample} descriptions, without cache, then again from the cache."),
        "",
        table(["dataset", "encoder", "threads", "texts", "items/s", "load avg", "cached items/s", "TF-IDF / MiniLM (2 / 1 threads)",
               "fit s"], enc_rows),
        "",
        ("RQ-VAE (latent 32, hidden 256-128, beta 0.25, batch 256, AdamW 1e-3, k-means init, dead-code reset), "
         f"{args.epochs} epochs, 1 thread. Collision rate = share of items whose L-code prefix another item shares; "
         "the extra level makes every ID unique (final = 0). Near-twins: items whose nearest neighbour has cosine > 0.95. "
         "`std`: `standardise=True` (inputs centred and scaled; loss in input space)."),
        "",
        table(["dataset", "embedding", "L x K", "epochs", "fit s", "utilisation per level", "collisions", "final",
               "largest group", "recon error", "recon cosine", "near-twins"], sid_rows),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 items per dataset")
    parser.add_argument("--sample", type=int, default=2000, help="texts in the MiniLM throughput runs")
    parser.add_argument("--epochs", type=int, default=30, help="RQ-VAE epochs")
    args = parser.parse_args()
    if args.quick:
        args.sample, args.epochs = min(args.sample, 500), min(args.epochs, 10)
    enc: list[dict[str, Any]] = []
    sid: list[dict[str, Any]] = []
    for name in DATASETS:
        print(name, flush=True)
        catalog = load_dataset(name).catalog
        texts = describe_catalog(catalog).tolist()[: 1000 if args.quick else None]
        records, vectors = encoder_records(name, texts, args.sample)
        enc += records
        sid += sid_records(name, vectors, args.epochs)
    path = write_json("encoders", enc + sid)
    update_section("encoders", report(enc, sid, args))
    print(f"wrote {path} and the 'encoders' section of RESULTS.md")


if __name__ == "__main__":
    main()
