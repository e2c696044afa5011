"""Content and semantic-ID models against ID-only SASRec on cold-start and long-tail items.

    TASTEMAKER_DATA=../shared/datasets .venv/bin/python benchmarks/content.py [--quick] [--fresh]
        [--datasets scientific ml-latest-small beauty] [--models sasrec sasrec-spm ...]
        [--epochs 30] [--table-size B] [--cold-how auto|time|random]

Issue #5 item 6 and the Semantic IDs paper's claim (Singh et al. 2023): item representations
built from content (semantic IDs, text vectors) help new and long-tail items without losing
overall quality. Per dataset:

1. :func:`tastemaker.eval.slices.cold_start_split`: leave-one-out targets; cold items are held
   out of training entirely (items first seen after the 0.9 quantile of event times on
   MovieLens; a seeded random 10% of items on the Amazon sets, whose files have no time, only
   sequence positions); head = the 20% most popular warm items, long tail = the other warm items.
2. The training catalog is encoded ONCE with MiniLM (``with_text_vectors``; cached on disk by
   text hash) and given semantic IDs ONCE by an RQ-VAE, 3 levels x 256 codes, fit on the text
   vectors of every catalog item (content only, no interactions): ``with_semantic_ids``.
3. Every model is fit on that same training set and scored per slice (``evaluate_slices``):
   full ranking, training items excluded, HR/NDCG/MRR@10 and the share of cold items shown.

Models: ``sasrec`` (IDs only), ``sasrec-hash`` / ``sasrec-ngram`` / ``sasrec-spm`` (hashed IDs,
SID n-grams, SentencePiece SID pieces, all with the SAME embedding-table budget B, default
n_items // 2), ``sasrec-spm-id`` (SentencePiece pieces added to the full ID table: the
"augment" mode), ``hllm`` (frozen text vectors + causal user transformer), ``hllm-id`` (the
same plus an item-ID embedding for items with training events), ``content`` (text vector
retrieval), and the references ``ease`` and ``popularity``. SASRec settings come from
benchmarks/sequential.py; ``--epochs`` caps the epochs (early stopping, patience 5). A model
whose class or config field does not exist yet is skipped with a message.

Resumable: each finished (dataset, model) record is appended to
benchmarks/results/content.partial.jsonl and skipped on a re-run with the same settings
(``--fresh`` starts over). Writes benchmarks/results/content.json, content.png and the
"content" section of RESULTS.md. ``--quick`` (ml-latest-small, 2 epochs, small RQ-VAE and
encoder sample) writes content-quick.* only and leaves RESULTS.md alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, machine, table, update_section, write_json  # noqa: E402
from sequential import _DATASET_PARAMS, _SASREC  # noqa: E402

THREADS = 1  # one torch/BLAS thread: the fastest setting on a shared 2-core machine
SEED = 42
PATIENCE = 5
K = 10
_HLLM_SHARED = ("embedding_size", "blocks", "heads", "max_length", "dropout", "batch_size", "validation_users")


@dataclass(frozen=True)
class DatasetSpec:
    loader: str
    options: dict[str, Any]
    cold_how: str  # "time" where the data has real time, "random" where timestamps are positions
    sasrec_like: str  # which of sequential.py's _DATASET_PARAMS fits its sequences
    ease_reg: float
    content: str = "text"  # "text": MiniLM over describe(item); "attributes": TF-IDF + SVD over attribute ids


DATASETS: dict[str, DatasetSpec] = {
    "scientific": DatasetSpec("amazon-scientific-unisrec", {}, "random", "beauty", 50.0),
    "ml-latest-small": DatasetSpec("movielens-latest-small", {}, "time", "ml-100k", 200.0),
    # S3-Rec's Beauty catalog has no text, only anonymised brand/category attribute ids: a text
    # encoder would read numbers, so its content vector is TF-IDF + SVD over the attribute ids.
    "beauty": DatasetSpec("amazon-s3rec-sequences", {"subset": "Beauty"}, "random", "beauty", 50.0, "attributes"),
}


@dataclass(frozen=True)
class ModelSpec:
    target: str  # "module:Class"
    kind: str  # "id" (ID-only baseline), "hash", "content" (reads text vectors or SIDs), "reference"
    representation: str | None = None  # SASRec item_representation; None for other models
    needs_sids: bool = False


MODELS: dict[str, ModelSpec] = {
    "sasrec": ModelSpec("tastemaker.models.neural.sasrec:SASRec", "id", "id"),
    "sasrec-hash": ModelSpec("tastemaker.models.neural.sasrec:SASRec", "hash", "hash"),
    "sasrec-ngram": ModelSpec("tastemaker.models.neural.sasrec:SASRec", "content", "sid-ngram", needs_sids=True),
    "sasrec-spm": ModelSpec("tastemaker.models.neural.sasrec:SASRec", "content", "sid-spm", needs_sids=True),
    "sasrec-spm-id": ModelSpec("tastemaker.models.neural.sasrec:SASRec", "content", "sid-spm", needs_sids=True),
    "hllm": ModelSpec("tastemaker.models.neural.hllm:HLLM", "content"),
    "hllm-id": ModelSpec("tastemaker.models.neural.hllm:HLLM", "content"),
    "content": ModelSpec("tastemaker.models.content:ContentRetrieval", "content"),
    "ease": ModelSpec("tastemaker.models.ease:EASE", "reference"),
    "popularity": ModelSpec("tastemaker.models.popularity:MostPopular", "reference"),
}


# ---------------------------------------------------------------------- settings and resume
def fingerprint(label: str, args: argparse.Namespace) -> str:
    """The settings a record depends on: a record is reused only under the same ones."""
    return json.dumps(
        {"dataset": label, "how": cold_how(label, args), "quantile": args.cold_quantile, "share": args.cold_share,
         "epochs": args.epochs, "patience": PATIENCE, "table_size": args.table_size, "rq_epochs": args.rq_epochs,
         "quick": args.quick},
        sort_keys=True,
    )  # fmt: skip


def cold_how(label: str, args: argparse.Namespace) -> str:
    return DATASETS[label].cold_how if args.cold_how == "auto" else str(args.cold_how)


def load_partial(path: Path, fresh: bool) -> list[dict[str, Any]]:
    if fresh and path.exists():
        path.unlink()
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_partial(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps(record, default=_plain) + "\n")


def _plain(value: Any) -> Any:
    """numpy scalars and arrays in records -> JSON."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


# ---------------------------------------------------------------------- one dataset
@dataclass
class Prepared:
    split: Any  # ColdStartSplit whose train catalog carries text_vector (and semantic_id)
    records: list[dict[str, Any]]  # split, encoder and RQ-VAE records


def prepare(label: str, args: argparse.Namespace, with_sids: bool) -> Prepared:
    """Load, split, encode once, give semantic IDs once."""
    from tastemaker.content.features import with_semantic_ids
    from tastemaker.content.semantic_ids import SemanticIDs
    from tastemaker.data.loaders import load_dataset
    from tastemaker.eval.slices import cold_start_split
    from tastemaker.types import FitOptions

    spec = DATASETS[label]
    data = load_dataset(spec.loader, **spec.options)
    how = cold_how(label, args)
    split = cold_start_split(data, how=how, quantile=args.cold_quantile, share=args.cold_share, seed=0)  # type: ignore[arg-type]
    print(f"[{label}] {data}; {split!r}", flush=True)
    base = {"dataset": label, "fingerprint": fingerprint(label, args)}
    records = [base | {"kind": "split", "model": "split", "params": {"how": how}, **split.summary()}]

    if spec.content == "attributes":
        train, record = _attribute_vectors(split.train)
        records.append(base | record)
        print(f"[{label}] attribute vectors: {record['params']}, {record['encode_s']:.1f}s", flush=True)
    else:
        train, record = _text_vectors(split.train, args)
        records.append(base | record)

    if with_sids:
        sids = SemanticIDs(levels=3, codebook_size=256, epochs=args.rq_epochs)
        train = with_semantic_ids(train, sids, options=FitOptions(seed=0, threads=THREADS, progress=False))
        metrics = dict(sids.metrics_)
        records.append(base | {"kind": "semantic-ids", "model": "rq-vae",
                               "params": {"levels": 3, "codebook_size": 256, "epochs": args.rq_epochs}, **metrics})
        print(f"[{label}] RQ-VAE 3x256: collisions {metrics['collision_rate']:.4f}, utilisation "
              f"{' / '.join(f'{u:.2f}' for u in metrics['codebook_utilisation'])}, "
              f"{metrics['fit_seconds']:.1f}s", flush=True)  # fmt: skip
    return Prepared(dataclasses.replace(split, train=train), records)


def _attribute_vectors(train: Any) -> tuple[Any, dict[str, Any]]:
    """Content vectors from attribute ids (brand, categories): each item's ids as tokens,
    TF-IDF + truncated SVD to 128 dimensions, L2-normalised."""
    from tastemaker.content.features import with_text_vectors
    from tastemaker.content.tfidf import TfidfSvdEncoder

    catalog = train.catalog.copy()
    catalog["description"] = [" ".join(f"attr{a}" for a in cats) or "no attributes" for cats in catalog["categories"]]
    train = dataclasses.replace(train, catalog=catalog)
    started = time.perf_counter()
    encoder = TfidfSvdEncoder(dimension=128, min_df=1, seed=0)
    encoder.fit(catalog["description"].tolist())
    train = with_text_vectors(train, encoder)
    seconds = time.perf_counter() - started
    return train, {"kind": "encoder", "model": "tfidf-svd-attributes", "params": {"dimension": 128},
                   "texts": len(catalog), "sample": len(catalog), "uncached_items_per_s": len(catalog) / seconds,
                   "computed_now": len(catalog), "encode_s": seconds}  # fmt: skip


def _text_vectors(train: Any, args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """MiniLM over each item's description: throughput without any cache on a sample, then
    every item through the disk cache."""
    from tastemaker.content.encoders import get_encoder
    from tastemaker.content.features import item_texts, with_text_vectors

    texts = item_texts(train.catalog)
    sample = texts[: args.encoder_sample]
    uncached = get_encoder("minilm", threads=THREADS, cache=False, progress=False)
    uncached.encode(["warm-up: load the model"])
    started = time.perf_counter()
    uncached.encode(sample)
    rate = len(sample) / (time.perf_counter() - started)
    encoder = get_encoder("minilm", threads=THREADS)
    cache = encoder.cache
    misses = cache.misses if cache is not None else 0
    started = time.perf_counter()
    train = with_text_vectors(train, encoder)
    encode_s = time.perf_counter() - started
    computed = (cache.misses - misses) if cache is not None else len(texts)
    print(f"MiniLM: {rate:.0f} items/s uncached ({len(sample)} texts); all {len(texts)} in "
          f"{encode_s:.1f}s ({computed} computed, the rest from the cache)", flush=True)  # fmt: skip
    return train, {"kind": "encoder", "model": "minilm", "params": {"threads": THREADS},
                   "texts": len(texts), "sample": len(sample), "uncached_items_per_s": rate,
                   "computed_now": computed, "encode_s": encode_s}  # fmt: skip


def model_params(label: str, name: str, args: argparse.Namespace, n_items: int) -> dict[str, Any]:
    spec, data_spec = MODELS[name], DATASETS[label]
    if name == "ease":
        return {"reg": data_spec.ease_reg}
    if name in ("popularity", "content"):
        return {}
    neural = {"epochs": min(args.epochs, _SASREC["epochs"]), "patience": PATIENCE}
    sasrec = _SASREC | _DATASET_PARAMS[data_spec.sasrec_like] | neural
    if name in ("hllm", "hllm-id"):  # the user transformer is SASRec-sized (papers.md section 6)
        extra = {"id_embedding": True} if name == "hllm-id" else {}
        return {k: sasrec[k] for k in _HLLM_SHARED if k in sasrec} | neural | extra
    params = sasrec | {"loss": "ce", "batch_size": 128, "item_representation": spec.representation}
    if spec.representation != "id":
        params["table_size"] = args.table_size or n_items // 2
    if name == "sasrec-spm-id":  # augment: SID pieces on top of the full ID table
        params["sid_with_id"] = True
    return params


def build(name: str, params: dict[str, Any]) -> tuple[Any, dict[str, Any]] | str:
    """(model, the params it got) or why it is skipped. SASRec's ``item_representation="id"``
    is its default, so an older SASRec without the field runs as the ID-only model."""
    module, _, cls_name = MODELS[name].target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), cls_name)
    except (ImportError, AttributeError) as exc:
        return f"{MODELS[name].target} is not available yet ({type(exc).__name__}: {exc})"
    fields = set(cls.Config.model_fields)
    optional = {"item_representation"} if params.get("item_representation") == "id" else set()
    if name in ("hllm", "hllm-id"):  # SASRec-sized architecture where HLLM's config has the same names
        optional |= set(_HLLM_SHARED)
    missing = [k for k in params if k not in fields and k not in optional]
    if missing:
        return f"{cls_name} has no config field(s) {missing} yet"
    dropped = sorted(k for k in params if k not in fields)
    if dropped:
        print(f"  note: {cls_name} has no {dropped}: using its defaults for them", flush=True)
    params = {k: v for k, v in params.items() if k in fields}
    try:
        return cls(**params), params
    except ValueError as exc:  # pydantic: a value this version does not accept (e.g. "sid-spm")
        return f"{cls_name} rejects {params}: {exc}".splitlines()[0]


def run_model(label: str, name: str, prepared: Prepared, args: argparse.Namespace) -> dict[str, Any] | str:
    """Fit one model on the prepared train set and score it per slice; a str says why not."""
    from tastemaker.eval.slices import evaluate_slices
    from tastemaker.types import FitOptions

    split = prepared.split
    built = build(name, model_params(label, name, args, split.train.n_items))
    if isinstance(built, str):
        return built
    model, params = built
    started = time.perf_counter()
    model.fit(split.train, FitOptions(seed=SEED, threads=THREADS, progress=False))
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    slices = evaluate_slices(model, split, k=K)
    eval_s = time.perf_counter() - started
    result = getattr(model, "train_result_", None)
    return {
        "kind": "model", "dataset": label, "model": name, "params": params, "slices": slices,
        "fit_s": fit_s, "eval_s": eval_s, "fingerprint": fingerprint(label, args),
        "epochs": getattr(result, "epochs_run", None), "best_epoch": getattr(result, "best_epoch", None),
        "s_per_epoch": getattr(result, "seconds_per_epoch", None), "threads": THREADS,
    }  # fmt: skip


# ---------------------------------------------------------------------- report
def _verdict(a: dict[str, float], b: dict[str, float]) -> tuple[float, str]:
    """Difference of NDCG@10 (a - b) and whether it is clear: larger than twice the standard
    error of the difference, each model's SE bounded by sqrt(mu (1 - mu) / n) since per-user
    NDCG lies in [0, 1] (conservative: the users are the same, which would only shrink it)."""
    metric = f"ndcg@{K}"
    mu_a, mu_b, n = a[metric], b[metric], a["n"]
    if not n or math.isnan(mu_a) or math.isnan(mu_b):
        return math.nan, "n/a"
    se = math.sqrt((mu_a * (1 - mu_a) + mu_b * (1 - mu_b)) / n)
    diff = mu_a - mu_b
    return diff, "clear gain" if diff > 2 * se else "clear loss" if diff < -2 * se else "within noise"


def point_to_prove(label: str, models: dict[str, dict[str, Any]]) -> list[str]:
    """Per dataset: does the best content/SID model beat ID-only SASRec on cold and long-tail,
    and how does the "all" slice compare? Computed from the records."""
    base = models.get("sasrec")
    content = {m: r for m, r in models.items() if MODELS[m].kind == "content"}
    if base is None or not content:
        return [f"- **{label}**: needs `sasrec` and at least one content/SID model (have: {', '.join(models)})."]
    parts = []
    for slice_name in ("cold", "long-tail"):
        best = max(content, key=lambda m: _nan_low(content[m]["slices"][slice_name][f"ndcg@{K}"]))
        if not content[best]["slices"][slice_name][f"ndcg@{K}"] > 0:
            parts.append(f"{slice_name}: no content/SID model hits a {slice_name} target (n = "
                         f"{base['slices'][slice_name]['n']}; SASRec-ID NDCG@{K} {base['slices'][slice_name][f'ndcg@{K}']:.4f})")
            continue
        diff, verdict = _verdict(content[best]["slices"][slice_name], base["slices"][slice_name])
        d_all, v_all = _verdict(content[best]["slices"]["all"], base["slices"]["all"])
        parts.append(
            f"{slice_name}: best content/SID model `{best}` NDCG@{K} "
            f"{content[best]['slices'][slice_name][f'ndcg@{K}']:.4f} vs SASRec-ID "
            f"{base['slices'][slice_name][f'ndcg@{K}']:.4f} ({diff:+.4f}, {verdict}; its all-slice {d_all:+.4f}, {v_all})"
        )
    both = []
    for name, record in content.items():  # gains on cold AND long tail, and no clear overall loss
        verdicts = {sl: _verdict(record["slices"][sl], base["slices"][sl]) for sl in ("cold", "long-tail", "all")}
        if verdicts["cold"][1] == verdicts["long-tail"][1] == "clear gain" and verdicts["all"][1] != "clear loss":
            both.append(f"`{name}` (all {verdicts['all'][0]:+.4f}, {verdicts['all'][1]})")
    parts.append("clear gains on both cold and long tail with no clear overall loss: " + (", ".join(both) or "none"))
    return [f"- **{label}**: " + "; ".join(parts) + "."]


def _nan_low(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def section(records: list[dict[str, Any]], args: argparse.Namespace) -> str:
    by_dataset: dict[str, dict[str, dict[str, Any]]] = {}
    for r in records:
        if r["kind"] == "model":
            by_dataset.setdefault(r["dataset"], {})[r["model"]] = r
    split_rows, model_rows, enc_rows, sid_rows, verdicts = [], [], [], [], []
    for label in DATASETS:
        extra = {r["kind"]: r for r in records if r["dataset"] == label and r["kind"] != "model"}
        if "split" in extra:
            s = extra["split"]
            split_rows.append([label, s["params"]["how"], s["items"], f"{s['cold_items']} ({s['cold_items'] / s['items']:.1%})",
                               s["head_items"], s["tail_items"], s["test_cases"], s["test_head"], s["test_long-tail"],
                               s["test_cold"]])  # fmt: skip
        if "encoder" in extra:
            e = extra["encoder"]
            enc_rows.append([label, e["model"], e["texts"], round(e["uncached_items_per_s"]), e["sample"], e["computed_now"],
                             f"{e['encode_s']:.1f}"])  # fmt: skip
        if "semantic-ids" in extra:
            q = extra["semantic-ids"]
            sid_rows.append([label, f"3x256, {q['params']['epochs']} epochs", f"{q['fit_seconds']:.1f}",
                             " / ".join(f"{u:.2f}" for u in q["codebook_utilisation"]), q["collision_rate"],
                             q["collision_rate_final"], q["reconstruction_cosine"]])  # fmt: skip
        for name in MODELS:
            r = by_dataset.get(label, {}).get(name)
            if r is None:
                continue
            sl = r["slices"]
            budget = r["params"].get("table_size", "-")
            epochs = "-" if r["epochs"] is None else f"{r['epochs']} ({r['best_epoch'] + 1})"
            model_rows.append([label, name, budget, sl["all"][f"hr@{K}"], sl["all"][f"ndcg@{K}"], sl["head"][f"ndcg@{K}"],
                               sl["long-tail"][f"hr@{K}"], sl["long-tail"][f"ndcg@{K}"], sl["cold"][f"hr@{K}"],
                               sl["cold"][f"ndcg@{K}"], sl["all"][f"cold_exposure@{K}"], f"{r['fit_s']:.1f}", epochs])  # fmt: skip
        if label in by_dataset:
            verdicts += point_to_prove(label, by_dataset[label])
    body = [
        "## Cold-start and long-tail: content and semantic IDs (`benchmarks/content.py`)",
        "",
        f"Machine: {machine()}; {THREADS} torch/BLAS thread; CPU only.",
        "Protocol (`tastemaker.eval.slices`): each user's last event is the target (users with at least 3 events); "
        "**cold** items are held out of training entirely — on ml-latest-small the items first seen at or after the "
        f"{args.cold_quantile} quantile of event times, on the Amazon sets (no time in the files, only sequence "
        f"positions) a seeded random {args.cold_share:.0%} of items; every event on a cold item is removed from train, "
        "but cold items stay in the catalog and are ranked like any other. **Head**: the 20% most popular warm items "
        "(distinct training users, ties to the lower code); **long tail**: the other warm items. Full ranking over all "
        "items, training items excluded; a slice is the test cases whose target is in it. Cold exposure: share of all "
        "top-10 slots holding cold items. Content vectors: MiniLM over each item's text (`describe`: title, "
        "categories, tags, description) on Scientific and ml-latest-small; on Beauty, whose catalog holds only "
        "anonymised brand/category attribute *ids*, TF-IDF + SVD (128-d) over those ids; RQ-VAE semantic IDs fit once on every "
        "item's text vector. SASRec variants share one embedding-table budget B (default n_items // 2; `table size` "
        f"column); SASRec settings from `sequential.py`, at most {args.epochs} epochs, early stopping patience {PATIENCE}.",
        "",
        table(["dataset", "cold items by", "items", "cold items", "head items", "tail items", "test cases", "head",
               "long-tail", "cold"], split_rows),  # fmt: skip
        "",
        table(["dataset", "model", "table size", "all HR@10", "all NDCG@10", "head NDCG@10", "tail HR@10", "tail NDCG@10",
               "cold HR@10", "cold NDCG@10", "cold exposure", "fit s", "epochs (best)"], model_rows),  # fmt: skip
        "",
        "Point to prove (the SID paper: content representations help new and long-tail items without losing overall "
        "quality). Per dataset, the content/SID model (sasrec-ngram, sasrec-spm, sasrec-spm-id, hllm, hllm-id, content) best on each slice "
        "against ID-only SASRec; *clear* = the NDCG@10 difference exceeds twice its standard error, bounded by "
        "sqrt(mu(1-mu)/n) per model:",
        "",
        *(verdicts or ["- no dataset has results yet."]),
        "",
        "Content encoding (MiniLM: uncached items/s on a sample, 1 thread, then every catalog item through the disk "
        "cache; Beauty: TF-IDF + SVD fit and encode over the attribute ids):",
        "",
        table(["dataset", "encoder", "texts", "items/s uncached", "sample", "computed this run", "encode s"], enc_rows),
        "",
        "RQ-VAE semantic IDs (collision rate: share of items whose 3-code prefix another item shares; the extra "
        "level makes IDs unique):",
        "",
        table(["dataset", "RQ-VAE", "fit s", "utilisation per level", "collisions", "final", "recon cosine"], sid_rows),
        "",
        "![NDCG@10 per slice](results/content.png)",
    ]
    return "\n".join(body)


# ---------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="ml-latest-small, 2 epochs, small RQ-VAE; writes content-quick.*")
    parser.add_argument("--datasets", nargs="*", default=None, choices=list(DATASETS))
    parser.add_argument("--models", nargs="*", default=None, choices=list(MODELS))
    parser.add_argument("--epochs", type=int, default=30, help="cap on neural epochs (early stopping inside)")
    parser.add_argument("--table-size", type=int, default=None, help="embedding rows of the hash/SID SASRecs (default n_items // 2)")
    parser.add_argument("--cold-how", choices=["auto", "time", "random"], default="auto",
                        help="auto: time cut where the data has time, random share where it has only positions")
    parser.add_argument("--cold-quantile", type=float, default=0.9)
    parser.add_argument("--cold-share", type=float, default=0.1)
    parser.add_argument("--rq-epochs", type=int, default=100, help="RQ-VAE epochs")
    parser.add_argument("--encoder-sample", type=int, default=1000, help="texts timed without cache")
    parser.add_argument("--fresh", action="store_true", help="ignore finished records and start over")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.rq_epochs, args.encoder_sample = 2, 5, 200
    labels = args.datasets or (["ml-latest-small"] if args.quick else list(DATASETS))
    names = args.models or list(MODELS)
    stem = "content-quick" if args.quick else "content"
    partial_path = RESULTS_DIR / f"{stem}.partial.jsonl"

    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(THREADS)
    threadpool_limits(THREADS)
    done = load_partial(partial_path, args.fresh)
    skipped: list[str] = []
    failed: list[str] = []
    for label in labels:
        fp = fingerprint(label, args)
        finished = {r["model"] for r in done if r["dataset"] == label and r["fingerprint"] == fp}
        todo = [n for n in names if n not in finished]
        if not todo:
            print(f"[{label}] every model already done (see {partial_path.name}; --fresh to redo)", flush=True)
            continue
        prepared = prepare(label, args, with_sids=any(MODELS[n].needs_sids for n in todo))
        for record in prepared.records:
            if record["model"] not in finished:  # keep the first run's encoder timing on a resume
                append_partial(partial_path, record)
                done.append(record)
        for name in todo:
            print(f"[{label}] {name}: fitting ...", flush=True)
            try:
                record = run_model(label, name, prepared, args)
            except Exception:  # one broken model must not lose an hour's run; reported at the end
                traceback.print_exc()
                failed.append(f"{label}/{name}")
                continue
            if isinstance(record, str):
                print(f"[{label}] {name}: SKIPPED: {record}", flush=True)
                skipped.append(f"{label}/{name}: {record}")
                continue
            append_partial(partial_path, record)
            done.append(record)
            sl = record["slices"]
            print(f"[{label}] {name}: NDCG@{K} all {sl['all'][f'ndcg@{K}']:.4f} head {sl['head'][f'ndcg@{K}']:.4f} "
                  f"tail {sl['long-tail'][f'ndcg@{K}']:.4f} cold {sl['cold'][f'ndcg@{K}']:.4f}; fit {record['fit_s']:.1f}s "
                  f"epochs {record['epochs']}", flush=True)  # fmt: skip

    current = [r for r in done if r["fingerprint"] == fingerprint(r["dataset"], args)]
    text = section(current, args)
    print(text)
    write_json(stem, current)
    results = {
        label: {r["model"]: r["slices"] for r in current if r["kind"] == "model" and r["dataset"] == label}
        for label in DATASETS
    }
    results = {label: models for label, models in results.items() if models}
    if results:
        from tastemaker.eval.slices import plot_slices

        plot_slices(results, RESULTS_DIR / f"{stem}.png")
    if not args.quick:
        update_section("content", text)
    for line in skipped:
        print(f"skipped {line}")
    if failed:
        raise SystemExit(f"failed (traceback above): {', '.join(failed)}")


if __name__ == "__main__":
    main()
