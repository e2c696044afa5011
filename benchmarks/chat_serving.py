"""Latency of ``POST /v1/chat`` with the offline default, through the real HTTP server.

    .venv/bin/python benchmarks/chat_serving.py [--turns 300]

The service imports the bundled ml-latest-small, trains an ItemKNN + popularity pipeline and
serves it (uvicorn, one process); a client then plays 3-turn conversations (a liked movie and
a genre; a decade; "something else") for ``turns`` turns in all, one request at a time, and
records each turn's latency (the first turn of the first conversation builds the chat engine:
it is timed apart). Writes benchmarks/results/chat-serving.json and the "chat-serving"
section of RESULTS.md.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import machine, table, update_section, write_json  # noqa: E402

OPENERS = ["I loved The Matrix, any sci-fi?", "I really liked Toy Story. Something animated?",
           "Loved Pulp Fiction and Fargo, what else?", "I enjoyed Titanic, any romance?",
           "Big fan of Alien, looking for horror", "I liked Forrest Gump, some drama please"]
FOLLOW = ["Something from the 90s?", "Anything else?"]


def main() -> None:
    from tastemaker.data.loaders.movielens import load_movielens_latest_small
    from tastemaker.serve.service import Service
    from tastemaker.serve.settings import Settings, TrainingSettings
    from tastemaker.testing.http import live_server

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=300)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tm-chat-"))
    (work / "p.toml").write_text('[[sources]]\nkind = "model"\nmodel = "itemknn"\n[[sources]]\nkind = "popularity"\n')
    settings = Settings(store_url=f"sqlite:///{work / 'store.db'}", models_dir=work / "models",
                        training=TrainingSettings(pipeline=str(work / "p.toml"), beat_popularity=False))
    service = Service(settings, warn_if_open=False)
    service.import_dataset(load_movielens_latest_small())
    service.train()
    service.close()
    times, refused, empty = [], 0, 0
    with live_server(settings) as client:
        start = time.perf_counter()
        client.post("/v1/chat", json={"session_id": "warm", "message": OPENERS[0]}).raise_for_status()
        first = 1000 * (time.perf_counter() - start)
        for t in range(args.turns):
            conversation, step = divmod(t, 3)
            message = OPENERS[conversation % len(OPENERS)] if step == 0 else FOLLOW[step - 1]
            start = time.perf_counter()
            r = client.post("/v1/chat", json={"session_id": f"c{conversation}", "user_id": f"u{conversation}", "message": message})
            times.append(1000 * (time.perf_counter() - start))
            r.raise_for_status()
            body = r.json()
            refused += body["refused"]
            empty += not body["items"]
    ms = np.asarray(times)
    row = {"turns": len(ms), "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
           "mean_ms": float(ms.mean()), "first_turn_ms": first, "refused": refused, "without_items": empty}
    write_json("chat-serving", [{"dataset": "movielens-latest-small", "model": "offline select-rerank (itemknn + popularity)",
                                 "params": {"connections": 1}, **row}])
    body = "\n\n".join([
        "### `POST /v1/chat` latency (`benchmarks/chat_serving.py`)",
        f"Machine: {machine()}. The real HTTP server (uvicorn, one process) over the bundled ml-latest-small, "
        "an ItemKNN + popularity pipeline, the offline default (entity linking, select+rerank by TF-IDF similarity, "
        "a templated grounded answer), dialogue state and memory in SQLite; one request at a time, 3-turn "
        "conversations. The first request of a served version builds its chat engine (catalog, linker, encoder).",
        table(["turns", "p50 ms", "p99 ms", "mean ms", "first request ms", "refused", "without items"],
              [[row["turns"], row["p50_ms"], row["p99_ms"], row["mean_ms"], row["first_turn_ms"], refused, empty]]),
    ])
    print(body)
    update_section("chat-serving", body)


if __name__ == "__main__":
    main()
