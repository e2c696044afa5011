"""Tastemaker: an open-source recommender system.

Public names are imported lazily so that ``import tastemaker`` stays fast and does not pull
optional capabilities (torch, faiss, fastapi...) that may not be installed.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Dataset": "tastemaker.data.dataset",
    "Vocabulary": "tastemaker.data.vocab",
    "Query": "tastemaker.types",
    "ItemList": "tastemaker.types",
    "FitOptions": "tastemaker.types",
    "load_dataset": "tastemaker.data.loaders",
    "load_model": "tastemaker.artifact",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tastemaker' has no attribute {name!r}")
