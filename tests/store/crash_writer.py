"""Child process for test_store_crash.py: appends events until it is killed.

Usage: python crash_writer.py URL OPTIONS_JSON SEED. Event k (counting from the first event
in the store) has item id ``i{k}`` and context ``{"seq": k}``. After each acknowledged
``append_events`` it prints the last acknowledged seq to stdout, flushed; "ready" first.
"""

from __future__ import annotations

import json
import random
import sys

from tastemaker.store import Event, open_store


def main() -> None:
    url, options, seed = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    store = open_store(url, **options)
    rng = random.Random(seed)
    seq = store.count_events()  # events committed by earlier runs, acknowledged or not
    print("ready", flush=True)
    while True:
        size = rng.randint(1, 40)
        batch = [Event("crash", f"i{k}", "click", 1.0, float(k), {"seq": k}) for k in range(seq, seq + size)]
        store.append_events(batch)
        seq += size
        print(seq - 1, flush=True)


if __name__ == "__main__":
    main()
