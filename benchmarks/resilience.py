"""Resilience of the service: the crash drill with retrying clients, and reads during a large
catalog upload.

    .venv/bin/python benchmarks/resilience.py [--kills 100] [--items 10000] [--quick]

* **Crash drill with retries**: a client streams single events with event ids while the
  server is ``kill -9``-ed ``--kills`` times; a send that failed is retried with the same id
  after the restart. Reports acknowledged, lost (must be 0) and duplicated (must be 0) events,
  and the same drill retrying *without* ids, which is what the ids prevent.
* **Reads during an upload**: a server with a content model (MiniLM text vectors, so every new
  item is encoded on arrival) is sent ``--items`` new items in requests of 1,000 while one
  client probes ``/healthz`` and another asks for recommendations without pause. Reports the
  upload time and the latency of both probes while it runs (target: /healthz p99 < 50 ms and
  recommendations answered throughout).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, table, update_section, write_json  # noqa: E402


def drills(kills: int, plain_kills: int) -> tuple[list[list[Any]], list[dict[str, Any]]]:
    from tastemaker.testing.crash import kill_drill

    rows, records = [], []
    for label, ids, n in (("retry with event ids", True, kills), ("retry without event ids", False, plain_kills)):
        workdir = Path(tempfile.mkdtemp(prefix="tm-drill-"))
        result = kill_drill(workdir, kills=n, seed=11, event_ids=ids)
        shutil.rmtree(workdir, ignore_errors=True)
        print(label, result, flush=True)
        rows.append([label, result.kills, result.acknowledged, result.retried, result.missing, result.duplicates,
                     f"{result.seconds:.0f}"])
        records.append({"dataset": "crash-drill", "model": "-", "params": {"client": label, "kills": n},
                        **{k: v for k, v in result.__dict__.items()}})
    return rows, records


def _percentiles(values: list[float]) -> tuple[float, float, float]:
    ms = np.asarray(values) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), float(ms.max())


def upload_under_load(n_items: int, per_request: int = 1000) -> tuple[list[list[Any]], list[dict[str, Any]]]:
    from tastemaker.testing.http import free_port

    workdir = Path(tempfile.mkdtemp(prefix="tm-upload-"))
    config = workdir / "settings.toml"
    # content retrieval over MiniLM: every new item's text is encoded when it arrives (the slow
    # case); the popularity gate is off because title similarity alone is not the point here
    config.write_text(
        'max_request_bytes = 5000000\n[training]\nmodel = "content"\nbeat_popularity = false\n'
        '[training.params]\nencoder = "minilm"\n'
    )
    store_url, models, port = f"sqlite:///{workdir / 'store.db'}", workdir / "models", free_port()
    command = [sys.executable, "-m", "tastemaker.cli", "serve", "--store", store_url, "--models-dir", str(models),
               "--config", str(config), "--seed-dataset", "movielens-latest-small", "--quiet", "--port", str(port)]
    print("seeding ml-latest-small and training the content model ...", flush=True)
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json().get("model_version"):
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the seeded server did not come up with a model")
        time.sleep(0.5)
    base = f"http://127.0.0.1:{port}"
    rng = np.random.default_rng(0)
    words = ["river", "night", "city", "love", "war", "robot", "summer", "ghost", "king", "music", "ocean", "storm"]
    new = [{"item_id": f"new{k}", "title": f"The {' '.join(rng.choice(words, 3))} {k}",
            "text": f"A film about {' and '.join(rng.choice(words, 4))}, number {k}."} for k in range(n_items)]
    health: list[float] = []
    recs: list[float] = []
    errors: list[str] = []
    done = threading.Event()

    def probe(path: str, out: list[float], pause: float) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            user = 1
            while not done.is_set():
                start = time.perf_counter()
                r = client.get(path.format(user=user))
                out.append(time.perf_counter() - start)
                if r.status_code != 200:
                    errors.append(f"{path}: {r.status_code}")
                user = user % 600 + 1
                time.sleep(pause)

    probes = [threading.Thread(target=probe, args=("/healthz", health, 0.01)),
              threading.Thread(target=probe, args=("/v1/users/{user}/recommendations?n=10", recs, 0.0))]
    for t in probes:
        t.start()
    time.sleep(2.0)  # a baseline before the upload
    baseline_health, baseline_recs = len(health), len(recs)
    started = time.perf_counter()
    with httpx.Client(base_url=base, timeout=600) as client:
        for k in range(0, n_items, per_request):
            r = client.post("/v1/items", json={"items": new[k : k + per_request]})
            assert r.status_code == 200, r.text
    upload_s = time.perf_counter() - started
    done.set()
    for t in probes:
        t.join()
    with httpx.Client(base_url=base, timeout=30) as client:
        similar = client.get(f"/v1/items/new{n_items - 1}/similar", params={"n": 5}).json()["items"]
    proc.kill()
    proc.wait()
    shutil.rmtree(workdir, ignore_errors=True)
    during_health, during_recs = health[baseline_health:], recs[baseline_recs:]
    rows, records = [], []
    for label, values in (("/healthz", during_health), ("/v1/users/{id}/recommendations", during_recs)):
        p50, p99, worst = _percentiles(values)
        rows.append([label, len(values), f"{len(values) / upload_s:.1f}", p50, p99, worst])
        records.append({"dataset": "ml-latest-small", "model": "content-minilm",
                        "params": {"endpoint": label, "items_posted": n_items, "per_request": per_request},
                        "requests": len(values), "p50_ms": p50, "p99_ms": p99, "max_ms": worst, "upload_s": upload_s,
                        "errors": len(errors)})
    print(f"upload of {n_items} items: {upload_s:.1f} s; new items similar to new{n_items - 1}: {[i['item_id'] for i in similar]}")
    records.append({"dataset": "ml-latest-small", "model": "content-minilm", "params": {"items_posted": n_items},
                    "upload_s": upload_s, "items_per_s": n_items / upload_s, "errors": len(errors)})
    return rows, records, upload_s, len(errors)  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--plain-kills", type=int, default=30, help="kills for the drill retrying without ids")
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="10 kills, 1,000 items; does not touch RESULTS.md")
    args = parser.parse_args()
    kills, plain, n_items = (10, 5, 1000) if args.quick else (args.kills, args.plain_kills, args.items)
    upload_rows, upload_records, upload_s, errors = upload_under_load(n_items)  # type: ignore[misc]
    drill_rows, drill_records = drills(kills, plain)
    body = "\n".join([
        "## Resilience (`benchmarks/resilience.py`)",
        "",
        f"Machine: {machine()}. Real `tastemaker serve` processes on loopback with a SQLite store.",
        "",
        f"**Reads during a catalog upload.** {n_items:,} new items posted in requests of 1,000 to a server whose model "
        f"(content retrieval over MiniLM, seeded with ml-latest-small) encodes each new item's text on arrival: "
        f"the upload took {upload_s:.1f} s ({n_items / upload_s:.0f} items/s); meanwhile one client probed /healthz "
        f"every 10 ms and another asked for recommendations back to back ({errors} errors):",
        "",
        table(["endpoint during the upload", "requests", "req/s", "p50 ms", "p99 ms", "max ms"], upload_rows),
        "",
        "**Crash drill.** A client streams single events while the server is `kill -9`-ed; a send that failed "
        "(the server died first) is sent again after the restart:",
        "",
        table(["client", "kills", "acknowledged", "retried sends", "lost", "duplicated", "seconds"], drill_rows),
        "",
        "A retried event may have been committed before the kill without its acknowledgement reaching the client; "
        "with an `event_id` the retry is a no-op, without one it is stored twice.",
    ])
    print(body)
    if not args.quick:
        update_section("resilience", body)
    write_json("resilience" if not args.quick else "resilience-quick", upload_records + drill_records)


if __name__ == "__main__":
    main()
