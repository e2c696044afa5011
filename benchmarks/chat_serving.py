"""Latency of ``POST /v1/chat`` with the offline default, through the real HTTP server.

    [TASTEMAKER_DATA=../shared/datasets] .venv/bin/python benchmarks/chat_serving.py [--turns 300]

Two services (uvicorn, one process each), one request at a time:

* **ml-latest-small**: the service imports the bundled dataset, trains an ItemKNN + popularity
  pipeline and serves it; a client plays 3-turn conversations (a liked movie and a genre; a
  decade; "something else") for ``turns`` turns in all;
* **ReDial** (when ``$TASTEMAKER_DATA`` has it): ``tastemaker/pipelines/redial.toml`` (the
  dialogue source; TF-IDF and MiniLM encoders) fitted on the 600 train + valid dialogues,
  registered as the service's version and served; a client replays the seeker's messages of
  the first test dialogues (``@id`` written as the movie's title), ``turns`` turns in all.

The first turn of the first conversation builds the chat engine: it is timed apart. Writes
benchmarks/results/chat-serving.json and the "chat-serving" section of RESULTS.md.
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
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import machine, table, update_section, write_json  # noqa: E402

OPENERS = ["I loved The Matrix, any sci-fi?", "I really liked Toy Story. Something animated?",
           "Loved Pulp Fiction and Fargo, what else?", "I enjoyed Titanic, any romance?",
           "Big fan of Alien, looking for horror", "I liked Forrest Gump, some drama please"]
FOLLOW = ["Something from the 90s?", "Anything else?"]


def serve_and_chat(settings: Any, conversations: list[list[str]], turns: int) -> dict[str, Any]:
    """Replay ``conversations`` (lists of messages) through ``POST /v1/chat`` until ``turns`` turns."""
    from tastemaker.testing.http import live_server

    times, refused, empty = [], 0, 0
    with live_server(settings) as client:
        start = time.perf_counter()
        client.post("/v1/chat", json={"session_id": "warm", "message": conversations[0][0]}).raise_for_status()
        first = 1000 * (time.perf_counter() - start)
        c = 0
        while len(times) < turns:
            for message in conversations[c % len(conversations)]:
                if len(times) == turns:
                    break
                start = time.perf_counter()
                r = client.post("/v1/chat", json={"session_id": f"c{c}", "user_id": f"u{c}", "message": message})
                times.append(1000 * (time.perf_counter() - start))
                r.raise_for_status()
                body = r.json()
                refused += body["refused"]
                empty += not body["items"]
            c += 1
    ms = np.asarray(times)
    return {"turns": len(ms), "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "first_turn_ms": first, "refused": refused, "without_items": empty}


def movielens_row(turns: int) -> dict[str, Any]:
    from tastemaker.data.loaders.movielens import load_movielens_latest_small
    from tastemaker.serve.service import Service
    from tastemaker.serve.settings import Settings, TrainingSettings

    work = Path(tempfile.mkdtemp(prefix="tm-chat-"))
    (work / "p.toml").write_text('[[sources]]\nkind = "model"\nmodel = "itemknn"\n[[sources]]\nkind = "popularity"\n')
    settings = Settings(store_url=f"sqlite:///{work / 'store.db'}", models_dir=work / "models",
                        training=TrainingSettings(pipeline=str(work / "p.toml"), beat_popularity=False))
    service = Service(settings, warn_if_open=False)
    service.import_dataset(load_movielens_latest_small())
    service.train()
    service.close()
    conversations = [[opener, *FOLLOW] for opener in OPENERS]
    return {"dataset": "movielens-latest-small", "model": "itemknn + popularity", **serve_and_chat(settings, conversations, turns)}


def redial_row(turns: int, encoder: str) -> dict[str, Any]:
    """redial.toml with ``encoder``, fitted here and registered as the service's version."""
    import re

    from _common import data_root

    from tastemaker.data.loaders.redial import load_redial
    from tastemaker.pipeline.config import load_pipeline_config
    from tastemaker.serve.service import Service
    from tastemaker.serve.settings import Settings
    from tastemaker.types import FitOptions

    pipeline = load_pipeline_config("redial")
    source = pipeline.sources[0]
    pipeline.sources[0] = type(source)(**(source.config.model_dump() | {"encoder": encoder}))
    pipeline.fit(load_redial(data_root() / "redial", split="train+valid"), FitOptions(progress=False, threads=2))
    test = load_redial(data_root() / "redial", split="test")
    titles = dict(zip(test.catalog["item_id"].astype(str), test.catalog["title"].astype(str), strict=True))
    conversations = []
    for row in test.extras["dialogues"].itertuples(index=False):
        said = [re.sub(r"@(\d+)", lambda m: titles.get(m.group(1), "a movie"), str(m.get("text", "")))
                for m in row.messages if str(m.get("senderWorkerId")) == str(row.initiator)]
        if said := [t for t in said if t.strip()]:
            conversations.append(said)
    work = Path(tempfile.mkdtemp(prefix="tm-chat-redial-"))
    settings = Settings(store_url=f"sqlite:///{work / 'store.db'}", models_dir=work / "models")
    service = Service(settings, warn_if_open=False)
    service.registry.activate(service.registry.add(pipeline, {"pipeline": "redial", "encoder": encoder}))
    service.close()
    return {"dataset": "redial", "model": f"redial.toml ({encoder})", **serve_and_chat(settings, conversations, turns)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=300)
    args = parser.parse_args()
    rows = [movielens_row(args.turns)]
    if os.environ.get("TASTEMAKER_DATA"):
        rows += [redial_row(args.turns, encoder) for encoder in ("tfidf", "minilm")]
    write_json("chat-serving", [{**r, "params": {"connections": 1}} for r in rows])
    body = "\n\n".join([
        "### `POST /v1/chat` latency (`benchmarks/chat_serving.py`)",
        f"Machine: {machine()}. The real HTTP server (uvicorn, one process), the offline default (entity linking, "
        "select+rerank by TF-IDF similarity, a templated grounded answer), dialogue state and memory in SQLite; one "
        "request at a time. ml-latest-small: an ItemKNN + popularity pipeline trained by the service, 3-turn "
        "conversations. ReDial: `redial.toml` (the dialogue source) fitted on the 600 train + valid dialogues and "
        "registered as the service's version; the seeker's messages of test dialogues replayed. The first request of a "
        "served version builds its chat engine (catalog, linker, encoder).",
        table(["dataset", "pipeline", "turns", "p50 ms", "p99 ms", "mean ms", "first request ms", "refused", "without items"],
              [[r["dataset"], r["model"], r["turns"], r["p50_ms"], r["p99_ms"], r["mean_ms"], r["first_turn_ms"], r["refused"],
                r["without_items"]] for r in rows]),
    ])
    print(body)
    update_section("chat-serving", body)


if __name__ == "__main__":
    main()
