"""Serving under load on loopback: latency and throughput, ingest, ANN recall, crash safety.

    .venv/bin/python benchmarks/serving.py [--quick] [--kills 100] [--connections 1,2,4,8]

For 10k and 100k items (a synthetic catalog with 50 taste clusters, 20k users and ~30 events
each, ALS vectors with 64 factors trained by the service itself) the real server runs as a
subprocess and ``wrk`` (Debian package) drives it from the same 2-core machine:

* GET /v1/users/{id}/recommendations?n=10 for random users: p50/p99 latency and requests/s at
  each of ``--connections`` concurrent connections (1 shows the service time, more the
  queueing on 2 cores), beside GET /healthz on the same server at 8 (the framework's ceiling:
  the ratio shows what the recommendation work costs);
* POST /v1/events (one event per request) and POST /v1/events/bulk (100 per request);
* ANN recall@10 of the served index against exact search, for 2,000 users;
* the crash drill: ``kill -9`` the server mid-stream ``--kills`` times; acknowledged events lost.

Targets (issue #4): p99 <= 10 ms at 100k items and >= 500 req/s; recall@10 >= 0.95; 0 lost.

``--pipeline``: instead, the service trains and serves a ranked pipeline at 100k items (three
sources, the LightGBM ranker, MMR: ``RANKED_PIPELINE``), and /recommendations is measured at 1,
2 and 4 connections with the per-stage breakdown from ``/metrics`` (target, issue 10: p99 <= 15
ms at 2 connections); writes the "serving-pipeline" section.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, table, update_section, write_json  # noqa: E402

USERS = 20_000
EVENTS_PER_USER = 30
CLUSTERS = 50
WRK_SECONDS = 15
CONNECTIONS = 8


def synthetic(n_items: int, seed: int = 0) -> tuple[list[Any], list[Any]]:
    """Items in taste clusters with Zipf popularity inside each; users draw from one cluster
    (80%) or anywhere (20%)."""
    from tastemaker.protocols import Event, Item

    rng = np.random.default_rng(seed)
    cluster_of = rng.integers(0, CLUSTERS, n_items)
    members = [np.flatnonzero(cluster_of == c) for c in range(CLUSTERS)]
    items = [Item(f"i{k}", f"Item {k}", "", (f"c{cluster_of[k]}",), {}, True, 1.0) for k in range(n_items)]
    events = []
    ts = 1_600_000_000.0
    for u in range(USERS):
        pool = members[rng.integers(CLUSTERS)]
        weights = 1.0 / np.arange(1, len(pool) + 1) ** 0.8
        picks = rng.choice(pool, size=EVENTS_PER_USER, p=weights / weights.sum())
        picks = np.where(rng.random(EVENTS_PER_USER) < 0.2, rng.integers(0, n_items, EVENTS_PER_USER), picks)
        for k in picks:
            ts += 1
            events.append(Event(f"u{u}", f"i{k}", "click", 1.0, ts))
    return items, events


#: the ranked pipeline of ``--pipeline``: three sources, the LightGBM ranker and MMR (issue 10)
RANKED_PIPELINE = """
candidates = 100
ranker_users = 5000

[[sources]]
kind = "model"
name = "als"
model = "als"
params = { embedding_size = 64, reg = 1.0, alpha = 10.0, epochs = 10 }

[[sources]]
kind = "popularity"
mode = "trending"

[[sources]]
kind = "popularity"
mode = "category"

[ranker]
kind = "lightgbm"
cuts = 1

[[rerankers]]
kind = "mmr"
weight = 0.2
vectors = "als"
pool = 50
"""


def seed_service(workdir: Path, n_items: int, pipeline: str | None = None) -> dict[str, Any]:
    from tastemaker.serve.service import Service
    from tastemaker.serve.settings import Settings, TrainingSettings

    training = TrainingSettings(model="als", params={"embedding_size": 64, "reg": 1.0, "alpha": 10.0, "epochs": 10})
    if pipeline is not None:
        path = workdir / "pipeline.toml"
        path.write_text(pipeline)
        training = TrainingSettings(pipeline=str(path))
    settings = Settings(store_url=f"sqlite:///{workdir / 'store.db'}", models_dir=workdir / "models", training=training)
    items, events = synthetic(n_items)
    service = Service(settings)
    try:
        start = time.perf_counter()
        service.upsert_items(items)
        for k in range(0, len(events), 100_000):
            service.ingest(events[k : k + 100_000])
        load_s = time.perf_counter() - start
        start = time.perf_counter()
        result = service.train()
        train_s = time.perf_counter() - start
        recall = ann_recall(service)
    finally:
        service.close()
    return {"load_s": load_s, "train_s": train_s, "events": len(events), "holdout_ndcg@10": result["metrics"]["ndcg@10"],
            "recall@10": recall, "index": type(service.engine.pipeline.sources[0].index).__name__}


def ann_recall(service: Any, users: int = 2000) -> float:
    """Recall@10 of the served index against exact search, on real user vectors."""
    from tastemaker.index import ExactIndex

    source = service.engine.pipeline.sources[0]  # the ALS source, served through its index
    model = source.model_
    vectors = np.asarray(model.item_vectors(), dtype=np.float32)
    exact = ExactIndex(vectors.shape[1])
    exact.add(np.arange(len(vectors), dtype=np.int64), vectors)
    queries = np.asarray(model.user_factors_[:users], dtype=np.float32)
    truth, _ = exact.search(queries, 10)
    found, _ = source.index.search(queries, 10)
    return float(np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found, strict=True)]))


def start_server(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    from tastemaker.testing.crash import start_server as start

    return start(f"sqlite:///{workdir / 'store.db'}", workdir / "models", port)


def wrk(url: str, script: str | None, seconds: int = WRK_SECONDS, connections: int = CONNECTIONS) -> dict[str, float]:
    """Run wrk (1 thread, ``connections`` connections) and parse latency percentiles and rate."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script:
        cmd[1:1] = ["-s", script]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"p50_ms": ms("50"), "p99_ms": ms("99"), "req_per_s": float(rate.group(1)) if rate else float("nan"),
            "non_2xx": int(errors.group(1)) if errors else 0}


LUA_USERS = """
math.randomseed(42)
request = function()
  return wrk.format("GET", "/v1/users/u" .. math.random(0, %d) .. "/recommendations?n=10")
end
"""
LUA_EVENT = """
counter = 0
request = function()
  counter = counter + 1
  local body = '{"user_id": "load-' .. (counter %% 5000) .. '", "item_id": "i' .. (counter %% %d) .. '", "event_type": "click"}'
  return wrk.format("POST", "/v1/events", {["Content-Type"] = "application/json"}, body)
end
"""
LUA_BULK = """
counter = 0
request = function()
  local parts = {}
  for k = 1, 100 do
    counter = counter + 1
    parts[k] = '{"user_id": "bulk-' .. (counter %% 5000) .. '", "item_id": "i' .. (counter %% %d) .. '"}'
  end
  return wrk.format("POST", "/v1/events/bulk", {["Content-Type"] = "application/json"}, '{"events": [' .. table.concat(parts, ",") .. ']}')
end
"""


def load_test(workdir: Path, n_items: int, connections: list[int]) -> list[dict[str, Any]]:
    from tastemaker.testing.http import free_port

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    scripts = {}
    for name, body in {"users": LUA_USERS % (USERS - 1), "event": LUA_EVENT % n_items, "bulk": LUA_BULK % n_items}.items():
        path = workdir / f"{name}.lua"
        path.write_text(body)
        scripts[name] = str(path)
    proc = start_server(workdir, port)
    try:
        wrk(base + "/healthz", None, seconds=3)  # warm-up
        wrk(base, scripts["users"], seconds=3)  # warm-up of the model path
        rows = [("GET /healthz (framework ceiling)", CONNECTIONS, wrk(base + "/healthz", None), 1)]
        for c in connections:
            rows.append(("GET /v1/users/{id}/recommendations?n=10", c, wrk(base, scripts["users"], connections=c), 1))
        rows += [
            ("POST /v1/events (1 event)", CONNECTIONS, wrk(base, scripts["event"]), 1),
            ("POST /v1/events/bulk (100 events)", CONNECTIONS, wrk(base, scripts["bulk"]), 100),
        ]
    finally:
        proc.kill()
        proc.wait()
    return [{"dataset": f"synthetic-{n_items // 1000}k", "model": "als-64", "params": {"endpoint": name, "connections": c},
             **result, "events_per_s": result["req_per_s"] * per} for name, c, result, per in rows]


def stage_breakdown(base: str) -> dict[str, dict[str, float]]:
    """Per pipeline stage, from the server's ``tastemaker_stage_seconds`` histogram: requests,
    mean ms and the p99 bucket bound (the smallest bucket holding 99% of the observations)."""
    import httpx

    text = httpx.get(base + "/metrics", timeout=10).text
    buckets: dict[str, list[tuple[float, float]]] = {}
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r'tastemaker_stage_seconds_(bucket|sum|count)\{(.*?)\} ([\d.e+-]+)$', line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        stage, value = labels["stage"], float(m.group(3))
        if m.group(1) == "bucket":
            buckets.setdefault(stage, []).append((float("inf") if labels["le"] == "+Inf" else float(labels["le"]), value))
        elif m.group(1) == "sum":
            sums[stage] = value
        else:
            counts[stage] = value
    out = {}
    for stage, count in counts.items():
        if not count:
            continue
        bound = next(le for le, c in sorted(buckets[stage]) if c >= 0.99 * count)
        out[stage] = {"requests": count, "mean_ms": 1000 * sums[stage] / count, "p99_bound_ms": 1000 * bound}
    return out


def pipeline_test(n_items: int, connections: list[int]) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """The ranked pipeline (3 sources + LightGBM + MMR) served at ``n_items``: setup, wrk rows
    for /recommendations at each connection count, and the per-stage breakdown of those requests."""
    from tastemaker.testing.http import free_port

    workdir = Path(tempfile.mkdtemp(prefix=f"tm-serving-pipeline-{n_items}-"))
    try:
        setup = seed_service(workdir, n_items, RANKED_PIPELINE)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        script = workdir / "users.lua"
        script.write_text(LUA_USERS % (USERS - 1))
        proc = start_server(workdir, port)
        try:
            wrk(base, str(script), seconds=3)  # warm-up (not in the breakdown: subtracted below)
            before = stage_breakdown(base)
            rows = [{"connections": c, **wrk(base, str(script), connections=c)} for c in connections]
            after = stage_breakdown(base)
        finally:
            proc.kill()
            proc.wait()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    stages = {}
    for stage, a in after.items():
        b = before.get(stage, {"requests": 0.0, "mean_ms": 0.0})
        n = a["requests"] - b["requests"]
        if n > 0:
            stages[stage] = {"requests": n, "mean_ms": (a["mean_ms"] * a["requests"] - b["mean_ms"] * b["requests"]) / n,
                             "p99_bound_ms (whole run)": a["p99_bound_ms"]}
    return setup, rows, stages


def pipeline_main(args: argparse.Namespace) -> None:
    n_items = 10_000 if args.quick else 100_000
    connections = [1, 2] if args.quick else [1, 2, 4]
    setup, rows, stages = pipeline_test(n_items, connections)
    label = f"synthetic-{n_items // 1000}k"
    records = [{"dataset": label, "model": "pipeline: als + trending + popular-in-category, lightgbm, mmr", "params": {"stage": "setup"}, **setup}]
    records += [{"dataset": label, "model": "ranked pipeline", "params": {"endpoint": "GET /v1/users/{id}/recommendations?n=10",
                 "connections": r["connections"]}, **r} for r in rows]
    records += [{"dataset": label, "model": "ranked pipeline", "params": {"stage": k}, **v} for k, v in stages.items()]
    write_json("serving-pipeline" + ("-quick" if args.quick else ""), records)
    body = [
        "### A ranked pipeline at 100k items (`benchmarks/serving.py --pipeline`)",
        "",
        f"Machine: {machine()}. The same server, store and synthetic data ({n_items} items); the service trains the pipeline "
        "`RANKED_PIPELINE` of serving.py: ALS (64 factors, FAISS HNSW above 20k items), trending and popular-in-category "
        "sources (100 candidates each), the LightGBM ranker (1 training cut, 5,000 users) and MMR (weight 0.2 over the ALS "
        f"vectors, among the ranker's first 50). `wrk -t1 -cN -d{WRK_SECONDS}s` on /recommendations for random users. Target (issue 10): p99 <= 15 ms at 2 connections.",
        "",
        table(["catalog", "events", "index", "holdout NDCG@10", "import s", "train s"],
              [[label, setup["events"], setup["index"], setup["holdout_ndcg@10"], setup["load_s"], setup["train_s"]]]),
        "",
        table(["connections", "p50 ms", "p99 ms", "req/s", "non-2xx"],
              [[r["connections"], r["p50_ms"], r["p99_ms"], round(r["req_per_s"]), r["non_2xx"]] for r in rows]),
        "",
        "Per stage, over the measured requests (server-side, from `/metrics` `tastemaker_stage_seconds`; the p99 column is "
        "the histogram bucket bound holding 99% of the stage's observations):",
        "",
        table(["stage", "calls", "mean ms", "p99 bound ms"],
              [[k, int(v["requests"]), v["mean_ms"], v["p99_bound_ms (whole run)"]] for k, v in stages.items()]),
    ]
    text = "\n".join(body)
    print(text)
    if not args.quick:
        update_section("serving-pipeline", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10k items only, 10 kills")
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--connections", default="1,2,4,8", help="comma-separated wrk connection counts for /recommendations")
    parser.add_argument("--sizes", default=None, help="comma-separated catalog sizes (default 10000,100000)")
    parser.add_argument("--no-drill", action="store_true", help="skip the crash drill")
    parser.add_argument("--pipeline", action="store_true",
                        help="only the ranked pipeline (3 sources + LightGBM + MMR) at 100k items (10k with --quick)")
    args = parser.parse_args()
    if args.pipeline:
        if shutil.which("wrk") is None:
            raise SystemExit("wrk is needed: apt-get install wrk")
        pipeline_main(args)
        return
    connections = [int(c) for c in args.connections.split(",")]
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else [10_000] if args.quick else [10_000, 100_000]
    records: list[dict[str, Any]] = []
    setup_rows = []
    for n_items in sizes:
        workdir = Path(tempfile.mkdtemp(prefix=f"tm-serving-{n_items}-"))
        setup = seed_service(workdir, n_items)
        from tastemaker.testing.http import free_port

        started = time.perf_counter()
        proc = start_server(workdir, free_port())  # a restart after training: the index is stored already
        setup["restart_s"] = time.perf_counter() - started
        proc.kill()
        proc.wait()
        print(f"{n_items} items: {setup}", flush=True)
        setup_rows.append([f"synthetic-{n_items // 1000}k", setup["events"], setup["index"], setup["recall@10"],
                           setup["holdout_ndcg@10"], setup["load_s"], setup["train_s"], setup["restart_s"]])
        records.append({"dataset": f"synthetic-{n_items // 1000}k", "model": "als-64", "params": {"stage": "setup"}, **setup})
        rows = load_test(workdir, n_items, connections)
        for r in rows:
            print(r, flush=True)
        records += rows
        shutil.rmtree(workdir, ignore_errors=True)

    from tastemaker.testing.crash import kill_drill

    kills = 10 if args.quick else args.kills
    drill = None
    if not args.no_drill:
        drill_dir = Path(tempfile.mkdtemp(prefix="tm-crash-"))
        drill = kill_drill(drill_dir, kills=kills, seed=7)
        shutil.rmtree(drill_dir, ignore_errors=True)
        print(drill, flush=True)
        records.append({"dataset": "crash-drill", "model": "-", "params": {"kills": kills}, **drill.__dict__})

    load_rows = []
    for r in records:
        if "p99_ms" in r:
            ceiling = next(x for x in records if x["dataset"] == r["dataset"] and "healthz" in x["params"].get("endpoint", ""))
            load_rows.append([r["dataset"], r["params"]["endpoint"], r["params"]["connections"], r["p50_ms"], r["p99_ms"], round(r["req_per_s"]),
                              round(r["events_per_s"]) if "events" in r["params"]["endpoint"] else "-",
                              f"{r['req_per_s'] / ceiling['req_per_s']:.2f}", r["non_2xx"]])
    body = [
        "## Serving (`benchmarks/serving.py`)",
        "",
        f"Machine: {machine()}. Server: `tastemaker serve` (uvicorn, 1 process) with a SQLite store; load: "
        f"`wrk -t1 -cN -d{WRK_SECONDS}s` on the same machine (client and server share the 2 cores); N = connections.",
        f"Data: synthetic catalog in {CLUSTERS} taste clusters, {USERS} users x {EVENTS_PER_USER} click events; ALS "
        "(64 factors) trained by the service; vector index exact below 20k items, FAISS HNSW above.",
        "",
        table(["catalog", "events", "index", "ANN recall@10", "holdout NDCG@10", "import s", "train s", "restart s"], setup_rows),
        "",
        table(["catalog", "endpoint", "connections", "p50 ms", "p99 ms", "req/s", "events/s", "vs /healthz", "non-2xx"], load_rows),
    ]
    if drill is not None:
        body += ["", f"Crash drill: {drill.kills} `kill -9`s of the server while a client streamed single events "
                 f"with event ids, retrying a failed send after the restart; {drill.acknowledged} events acknowledged, "
                 f"**{drill.missing} lost**, **{drill.duplicates} duplicated**, {drill.retried} sends retried, "
                 f"{drill.stored} stored ({drill.seconds:.0f} s)."]
    text = "\n".join(body)
    print(text)
    if not args.quick and not args.no_drill and not args.sizes:
        update_section("serving", text)
    write_json("serving" if not args.quick else "serving-quick", records)


if __name__ == "__main__":
    main()
