"""Crash safety at the store level: every acknowledged event survives ``kill -9``.

A child process (crash_writer.py) appends batches in a loop and prints the last acknowledged
seq after each ``append_events`` returns; the test kills it with SIGKILL at a random moment,
three times, then reopens the store and checks every acknowledged event is there, once, in
order, with contiguous ids (SQLite).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tastemaker.store import SQLiteStore, open_store

WRITER = Path(__file__).with_name("crash_writer.py")
RUNS = 3


def kill_writer_runs(url: str, options: dict[str, Any], tmp_path: Path, seed: int) -> list[int]:
    """Run the writer RUNS times, SIGKILL each after a random short time; the last
    acknowledged seq of each run (-1 when it acknowledged nothing)."""
    rng = random.Random(seed)
    repo = str(Path(__file__).resolve().parents[2])  # so the child imports this checkout's tastemaker
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    acknowledged: list[int] = []
    for run in range(RUNS):
        out_path = tmp_path / f"acks-{run}.txt"
        with open(out_path, "w") as out:
            command = [sys.executable, str(WRITER), url, json.dumps(options), str(seed + run)]
            child = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE, env=env)
            deadline = time.monotonic() + 60
            while not out_path.read_text().startswith("ready"):
                if child.poll() is not None:
                    raise AssertionError(f"writer exited early: {child.stderr.read().decode() if child.stderr else ''}")
                assert time.monotonic() < deadline, "writer did not start"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.15, 0.6))
            child.send_signal(signal.SIGKILL)
            child.wait()
            if child.stderr:
                child.stderr.close()
        assert child.returncode == -signal.SIGKILL
        lines = out_path.read_text().split()[1:]
        acknowledged.append(int(lines[-1]) if lines else -1)
    return acknowledged


def check_log(store: Any, acknowledged: list[int], contiguous_ids: bool) -> None:
    logged = store.events_since(0)
    seqs = [event.context["seq"] for _, event in logged]
    assert seqs == list(range(len(seqs))), "events missing, duplicated or out of order"
    assert max(acknowledged) < len(seqs), f"acknowledged up to seq {max(acknowledged)}, only {len(seqs)} stored"
    assert all(a >= 0 for a in acknowledged), f"a run acknowledged nothing: {acknowledged}"
    ids = [event_id for event_id, _ in logged]
    assert len(set(ids)) == len(ids) and ids == sorted(ids)
    if contiguous_ids:
        assert ids == list(range(1, len(ids) + 1))


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
def test_sqlite_keeps_every_acknowledged_event(tmp_path: Path, synchronous: str) -> None:
    path = tmp_path / "store.db"
    acknowledged = kill_writer_runs(f"sqlite:///{path}", {"synchronous": synchronous}, tmp_path, seed=11)
    with SQLiteStore(path) as store:
        check_log(store, acknowledged, contiguous_ids=True)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_postgres_keeps_every_acknowledged_event(tmp_path: Path, postgres_dsn: str) -> None:
    options = {"schema": "crash_" + str(os.getpid())}
    acknowledged = kill_writer_runs(postgres_dsn, options, tmp_path, seed=5)
    with open_store(postgres_dsn, **options) as store:
        check_log(store, acknowledged, contiguous_ids=False)  # a killed transaction may burn sequence values
