"""Crash-safety drill for the HTTP service: send events, ``kill -9`` the server mid-stream,
restart, and check that every acknowledged event is in the store. Used by the test suite (a
few kills) and by ``benchmarks/serving.py`` (100+ kills)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tastemaker.testing.http import free_port


@dataclass
class DrillResult:
    kills: int
    acknowledged: int
    missing: int
    stored: int
    seconds: float


def start_server(store_url: str, models_dir: Path, port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "tastemaker.cli", "serve", "--store", store_url,
           "--models-dir", str(models_dir), "--port", str(port), "--host", "127.0.0.1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was up")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not come up in 60 s")


def kill_drill(workdir: Path, kills: int, seed: int = 0, min_uptime: float = 0.05, max_uptime: float = 0.4) -> DrillResult:
    """Run ``kills`` crash cycles against a SQLite-backed server in ``workdir``."""
    from tastemaker.store import open_store

    rng = random.Random(seed)
    store_url = f"sqlite:///{workdir / 'crash.db'}"
    acknowledged: list[str] = []
    start = time.perf_counter()
    counter = 0
    for _ in range(kills):
        port = free_port()
        proc = start_server(store_url, workdir / "models", port)
        stop = threading.Event()

        def send() -> None:
            nonlocal counter
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
                while not stop.is_set():
                    counter += 1
                    item = f"item-{counter}"
                    try:
                        r = client.post("/v1/events", json={"user_id": "crash-user", "item_id": item})
                    except httpx.HTTPError:
                        return  # the server died mid-request: this event was never acknowledged
                    if r.status_code == 200:
                        acknowledged.append(item)

        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(rng.uniform(min_uptime, max_uptime))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        stop.set()
        sender.join()
    store = open_store(store_url)
    try:
        stored = {e.item_id for _, e in store.events_since(0)}
    finally:
        store.close()
    missing = [item for item in acknowledged if item not in stored]
    return DrillResult(kills, len(acknowledged), len(missing), len(stored), time.perf_counter() - start)
