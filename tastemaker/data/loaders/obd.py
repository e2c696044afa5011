"""Open Bandit Dataset (ZOZO; Saito et al., NeurIPS 2021): logged bandit feedback.

Layout, as in the obp repository: ``obd/<policy>/<campaign>/<campaign>.csv`` and
``obd/<policy>/<campaign>/item_context.csv``, policy ``random`` or ``bts`` (Bernoulli Thompson
sampling), campaign ``men``, ``women`` or ``all``. CSV with a header; the first column is an
unnamed row index.

* Each logged row is one interaction, ``event_type="impression"``: ``item`` = ``item_id``,
  ``timestamp`` = the ISO date-time in unix seconds (fractions dropped), ``value`` = ``click``
  (0/1), with the extra columns ``position`` (slot 1-3), ``propensity_score`` (the logging
  policy's probability of the shown item), ``click`` and ``row`` (the row's number in the file,
  0-based, which keys the contexts).
* There are no user ids: ``user`` is a stable 16-hex-digit hash of the four hashed
  ``user_feature_0..3`` values, so rows with equal features share a user.
* ``extras["contexts"]``: a DataFrame with ``row``, the user features and every
  ``user-item_affinity_<item>`` column, for contextual bandits and off-policy evaluation.
* The catalog comes from item_context.csv: ``item_id`` and ``item_feature_0..3`` columns.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from tastemaker.data.dataset import Dataset
from tastemaker.data.loaders._files import locate
from tastemaker.data.validate import Field, OnError, RowErrors, read_delimited

POLICIES = ("random", "bts")
CAMPAIGNS = ("men", "women", "all")
_USER_FEATURES = [f"user_feature_{i}" for i in range(4)]


def load_open_bandit(
    path: str | Path | None = None,
    *,
    policy: Literal["random", "bts"] = "random",
    campaign: Literal["men", "women", "all"] = "men",
    on_error: OnError = "raise",
    download: bool = False,
    cache_dir: str | Path | None = None,
) -> Dataset:
    """One (policy, campaign) log of the Open Bandit Dataset (see the module doc)."""
    if policy not in POLICIES or campaign not in CAMPAIGNS:
        raise ValueError(
            f"policy must be one of {POLICIES} and campaign one of {CAMPAIGNS}, not {policy!r} and {campaign!r}"
        )
    log_file, context_file = f"{policy}/{campaign}/{campaign}.csv", f"{policy}/{campaign}/item_context.csv"
    files = locate("open-bandit-dataset-small", path, [log_file, context_file], download=download, cache_dir=cache_dir)
    errors = RowErrors(on_error)
    fields = [
        Field("timestamp", "time"),
        Field("item_id", "id"),
        Field("position", "int"),
        Field("click", "int"),
        Field("propensity_score", "float"),
    ] + [Field(name, "id") for name in _USER_FEATURES]
    log = read_delimited(files.get(log_file, main=True), fields, errors=errors, header=True, quoting=True)
    contexts = log[_USER_FEATURES + [c for c in log.columns if c.startswith("user-item_affinity_")]].copy()
    contexts.insert(0, "row", np.arange(len(log), dtype=np.int64))
    interactions = pd.DataFrame(
        {
            "user": _user_ids(log),
            "item": log["item_id"],
            "timestamp": log["timestamp"],
            "event_type": "impression",
            "value": log["click"],
            "position": log["position"],
            "propensity_score": log["propensity_score"],
            "click": log["click"],
            "row": contexts["row"],
        }
    )
    items = read_delimited(files.get(context_file), [Field("item_id", "id")], errors=errors, header=True)
    catalog = items[["item_id"] + [c for c in items.columns if c.startswith("item_feature_")]]
    name = f"open-bandit-dataset-small/{policy}/{campaign}"
    return Dataset.from_frames(interactions, catalog, name=name, extras={"contexts": contexts, **errors.extras(name)})


def _user_ids(log: pd.DataFrame) -> list[str]:
    joined = log[_USER_FEATURES[0]].str.cat([log[c] for c in _USER_FEATURES[1:]], sep="|")
    return [hashlib.blake2b(key.encode(), digest_size=8).hexdigest() for key in joined.tolist()]
