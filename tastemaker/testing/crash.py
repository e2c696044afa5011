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
    """``missing``: acknowledged events not in the store (must be 0). ``duplicates``: stored
    events beyond the first of each (0 when clients retry with event ids). ``retried``: sends
    that failed (the server died first) and were sent again after the restart."""

    kills: int
    acknowledged: int
    missing: int
    stored: int
    seconds: float
    duplicates: int = 0
    retried: int = 0


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


def kill_drill(
    workdir: Path,
    kills: int,
    seed: int = 0,
    min_uptime: float = 0.05,
    max_uptime: float = 0.4,
    retry: bool = True,
    event_ids: bool = True,
) -> DrillResult:
    """Run ``kills`` crash cycles against a SQLite-backed server in ``workdir``.

    A client streams single events, each with its own ``event_id``. With ``retry`` (the way
    a client should behave), an event whose send failed because the server died is sent
    again, with the same id, once the server is back: it may have been committed before the
    kill without its acknowledgement reaching the client, and the id makes that retry a no-op
    instead of a duplicate. ``event_ids=False`` retries without ids, to show what they buy."""
    from tastemaker.store import open_store

    rng = random.Random(seed)
    store_url = f"sqlite:///{workdir / 'crash.db'}"
    acknowledged: list[str] = []
    pending: list[str] = []  # failed sends, retried after the restart
    retried = 0
    start = time.perf_counter()
    counter = 0
    for _ in range(kills):
        port = free_port()
        proc = start_server(store_url, workdir / "models", port)
        stop = threading.Event()

        def send() -> None:
            nonlocal counter, retried
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
                while not stop.is_set():
                    if pending:
                        item = pending.pop(0)
                        retried += 1
                    else:
                        counter += 1
                        item = f"item-{counter}"
                    body = {"user_id": "crash-user", "item_id": item} | ({"event_id": item} if event_ids else {})
                    try:
                        r = client.post("/v1/events", json=body)
                    except httpx.HTTPError:
                        if retry:
                            pending.insert(0, item)  # unacknowledged: it may or may not be stored
                        return  # the server died mid-request
                    if r.status_code == 200:
                        acknowledged.append(item)

        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(rng.uniform(min_uptime, max_uptime))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        stop.set()
        sender.join()
    if pending:  # one last restart, so the last failed send is retried too
        port = free_port()
        proc = start_server(store_url, workdir / "models", port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            for item in pending:
                body = {"user_id": "crash-user", "item_id": item} | ({"event_id": item} if event_ids else {})
                r = client.post("/v1/events", json=body)
                if r.status_code == 200:
                    acknowledged.append(item)
                    retried += 1
        proc.terminate()
        proc.wait()
    store = open_store(store_url)
    try:
        stored_items = [e.item_id for _, e in store.events_since(0)]
    finally:
        store.close()
    stored = set(stored_items)
    missing = [item for item in acknowledged if item not in stored]
    duplicates = len(stored_items) - len(stored)
    return DrillResult(kills, len(acknowledged), len(missing), len(stored), time.perf_counter() - start, duplicates, retried)
