"""Names for models and their default tuning grids: the registry at the edge.

Library code imports model classes directly; only the CLI, config files and the server look
models up by name here.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tastemaker.models.base import Recommender
from tastemaker.models.ease import EASE
from tastemaker.models.itemknn import ItemKNN
from tastemaker.models.mf import ALS, BPR
from tastemaker.models.popularity import MostPopular

MODELS: dict[str, type[Recommender]] = {
    cls.name: cls for cls in (MostPopular, ItemKNN, EASE, ALS, BPR)
}

#: Grids searched by ``tastemaker evaluate`` on the validation split. Small on purpose: the
#: values that won on ml-latest-small, ML-100K and Amazon Beauty (benchmarks/RESULTS.md).
DEFAULT_GRIDS: dict[str, dict[str, list[Any]]] = {
    "most-popular": {},
    "itemknn": {"k": [50, 200], "weighting": ["none", "bm25"]},
    "ease": {"reg": [50.0, 200.0, 500.0]},
    "als": {"embedding_size": [128], "reg": [1.0, 10.0], "alpha": [5.0, 20.0]},
    "bpr": {"embedding_size": [128], "learning_rate": [0.01, 0.05], "epochs": [100]},
}


def model_class(name: str) -> type[Recommender]:
    """The model class registered as ``name``; the error lists the valid names."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}") from None


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """``["reg=50", "weighting=bm25"]`` -> ``{"reg": 50, "weighting": "bm25"}`` (TOML values)."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"parameter {pair!r} is not of the form name=value")
        try:
            params[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            params[key.strip()] = raw
    return params


def load_grids(path: str | Path) -> dict[str, dict[str, list[Any]]]:
    """Read tuning grids from TOML: one table per model, each key a list of values::

        [ease]
        reg = [50.0, 500.0]
    """
    data = tomllib.loads(Path(path).read_text())
    grids: dict[str, dict[str, list[Any]]] = {}
    for name, grid in data.items():
        model_class(name)
        if not isinstance(grid, Mapping):
            raise ValueError(f"{path}: [{name}] must be a table of parameter lists")
        grids[name] = {k: v if isinstance(v, list) else [v] for k, v in grid.items()}
    return grids
