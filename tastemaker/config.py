"""Names for models and their default tuning grids: the registry at the edge.

Library code imports model classes directly; only the CLI, config files and the server look
models up by name here.
"""

from __future__ import annotations

import importlib
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tastemaker.models.base import Recommender

#: name -> "module:Class"; imported on first use, so a model whose extra (torch) is missing
#: only fails when it is asked for, with an error naming the extra.
MODELS: dict[str, str] = {
    "most-popular": "tastemaker.models.popularity:MostPopular",
    "itemknn": "tastemaker.models.itemknn:ItemKNN",
    "ease": "tastemaker.models.ease:EASE",
    "als": "tastemaker.models.mf:ALS",
    "bpr": "tastemaker.models.mf:BPR",
    "sasrec": "tastemaker.models.neural.sasrec:SASRec",
    "two-tower": "tastemaker.models.neural.two_tower:TwoTower",
    "hllm": "tastemaker.models.neural.hllm:HLLM",
    "content": "tastemaker.models.content:ContentRetrieval",
}
CLASSICAL: tuple[str, ...] = ("most-popular", "itemknn", "ease", "als", "bpr")
NEURAL: tuple[str, ...] = ("sasrec", "two-tower", "hllm")
#: Models that score from item text alone, with no training (need the text extra for MiniLM).
CONTENT: tuple[str, ...] = ("content",)

#: Grids searched by ``tastemaker evaluate`` on the validation split. Small on purpose: the
#: values that won on ml-latest-small, ML-100K and Amazon Beauty (benchmarks/RESULTS.md).
DEFAULT_GRIDS: dict[str, dict[str, list[Any]]] = {
    "most-popular": {},
    "itemknn": {"k": [50, 200], "weighting": ["none", "bm25"]},
    "ease": {"reg": [50.0, 200.0, 500.0]},
    "als": {"embedding_size": [128], "reg": [1.0, 10.0], "alpha": [5.0, 20.0]},
    "bpr": {"embedding_size": [128], "learning_rate": [0.01, 0.05], "epochs": [100]},
    # Neural models tune by early stopping on validation inside fit; one configuration each.
    "sasrec": {"loss": ["ce"]},
    "two-tower": {},
    "hllm": {},
    "content": {"decay": [0.5, 0.9]},  # no training, so tuning is cheap; 0.5 won on Amazon Scientific
}


def model_class(name: str) -> type[Recommender]:
    """The model class registered as ``name``; the error lists the valid names."""
    try:
        module, _, cls = MODELS[name].partition(":")
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}") from None
    model: type[Recommender] = getattr(importlib.import_module(module), cls)
    return model


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


#: Pipeline stages by role and ``kind`` (the ``kind`` key of a stage in a pipeline TOML file).
STAGES: dict[str, dict[str, str]] = {
    "source": {
        "model": "tastemaker.pipeline.sources:ModelSource",
        "popularity": "tastemaker.pipeline.sources:PopularitySource",
        "fresh": "tastemaker.pipeline.sources:FreshSource",
        "transitions": "tastemaker.pipeline.sources:TransitionsSource",
        "graph": "tastemaker.graph.source:GraphSource",
        "dialogue": "tastemaker.chat.source:DialogueSource",
    },
    "ranker": {
        "fusion": "tastemaker.pipeline.ranker:FusionRanker",
        "lightgbm": "tastemaker.pipeline.lgbm:LightGBMRanker",
    },
    "reranker": {
        "filter": "tastemaker.rerank.filters:FilterReranker",
        "mmr": "tastemaker.rerank.mmr:MMRReranker",
        "calibration": "tastemaker.rerank.calibration:CalibrationReranker",
        "popularity": "tastemaker.rerank.popularity:PopularityReranker",
    },
    "explorer": {"greedy": "tastemaker.pipeline.explore:GreedyExplorer", "bandit": "tastemaker.pipeline.explore:BanditExplorer"},
}


def stage_class(role: str, kind: str) -> type[Any]:
    """The class of a pipeline stage; the error lists the kinds that exist for ``role``."""
    kinds = STAGES[role]
    if kind not in kinds:
        raise ValueError(f"unknown {role} kind {kind!r}; choose from {', '.join(kinds)}")
    module, _, cls = kinds[kind].partition(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]
