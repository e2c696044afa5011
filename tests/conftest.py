"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``realdata`` skip when $TASTEMAKER_DATA is unset."""
    if os.environ.get("TASTEMAKER_DATA"):
        return
    skip = pytest.mark.skip(reason="needs the public datasets: set TASTEMAKER_DATA")
    for item in items:
        if "realdata" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The folder holding the public datasets, one sub-folder per name ($TASTEMAKER_DATA)."""
    root = os.environ.get("TASTEMAKER_DATA")
    if not root:
        pytest.skip("needs the public datasets: set TASTEMAKER_DATA")
    return Path(root)
