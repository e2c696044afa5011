"""Known-answer synthetic datasets for tests (shipped so that plug-in models can use them)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tastemaker.data.dataset import Dataset


def checkerboard(n_users: int = 40, n_items: int = 40) -> Dataset:
    """Two taste groups: user u likes the items with the same parity as u.

    Each user has interacted with every same-parity item except one, item ``u % n_items``
    (itself of u's parity when n_items is even). The known answer: with seen items excluded,
    a collaborative model's top item for user u is item u, and its top half of the
    recommendations holds only same-parity items.
    """
    if n_items % 2 or n_users > n_items:
        raise ValueError("checkerboard needs an even n_items >= n_users")
    rows = []
    for user in range(n_users):
        for item in range(user % 2, n_items, 2):
            if item != user:
                rows.append((f"u{user}", f"i{item}", len(rows)))
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    catalog = pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(n_items)],
            "title": [f"{'Even' if i % 2 == 0 else 'Odd'} item {i}" for i in range(n_items)],
            "categories": [["even" if i % 2 == 0 else "odd"] for i in range(n_items)],
        }
    )
    return Dataset.from_frames(frame, catalog=catalog, name="checkerboard")


def successor_sequences(n_users: int = 200, n_items: int = 30, length: int = 12, seed: int = 0) -> Dataset:
    """Each user walks the item ring: item i is always followed by item (i + 1) mod n_items.
    A sequential model must learn that the next item after i is i + 1."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        start = int(rng.integers(n_items))
        for step in range(length):
            rows.append((f"u{user}", f"i{(start + step) % n_items}", step))
    return Dataset.from_frames(pd.DataFrame(rows, columns=["user", "item", "timestamp"]), name="successor")
