"""Two-tower with semantic-ID pieces in the item tower: the contract with the checkerboard known
answer, a new item placed by its SID without retraining, and exact round trips."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from tastemaker.data.dataset import Dataset  # noqa: E402
from tastemaker.models.neural.two_tower import TwoTower  # noqa: E402
from tastemaker.testing.conformance import OPTIONS, RecommenderConformance  # noqa: E402
from tastemaker.testing.synthetic import checkerboard  # noqa: E402
from tastemaker.types import Query  # noqa: E402

FAST: dict[str, Any] = dict(embedding_size=16, epochs=60, batch_size=8, learning_rate=3e-3, validation_users=0, shuffle_history=0.5)


def _parity_sids(dataset: Dataset) -> Dataset:
    """Item k's SID (k % 2, (k // 2) % 4, k // 8, 0): its first code is its taste group."""
    catalog = dataset.catalog.copy()
    catalog["semantic_id"] = [(k % 2, (k // 2) % 4, k // 8, 0) for k in (int(i[1:]) for i in catalog["item_id"])]
    return replace(dataset, catalog=catalog)


needs_spm = pytest.mark.skipif(importlib.util.find_spec("sentencepiece") is None, reason="needs the sid extra (sentencepiece)")


@needs_spm
class TestTwoTowerSentencePieceSIDs(RecommenderConformance):
    """With pieces in place of the ID embedding, the checkerboard known answer still holds."""

    @pytest.fixture(scope="class")
    @classmethod
    def data(cls) -> Dataset:  # type: ignore[override]
        return _parity_sids(checkerboard())

    def make_model(self) -> TwoTower:
        return TwoTower(**FAST, item_representation="sid-spm")  # type: ignore[arg-type]


def test_new_item_is_placed_by_its_sid_and_round_trips(tmp_path: Path) -> None:
    data = _parity_sids(checkerboard())
    model = TwoTower(**FAST, item_representation="sid-ngram", table_size=256, sid_with_id=True).fit(data, OPTIONS)  # type: ignore[arg-type]
    # an even item's SID prefix, a new collision entry: it lands among the even items
    model.add_items(pd.DataFrame({"item_id": ["n-even", "n-odd"], "semantic_id": [(0, 1, 2, 1), (1, 1, 2, 1)]}))
    assert model.pieces_ is not None and model.pieces_.n_items == 42
    items = list(data.items.ids)
    even, odd = [i for i in items if int(i[1:]) % 2 == 0], [i for i in items if int(i[1:]) % 2]
    for user, kin, other in (("u0", even, odd), ("u1", odd, even)):
        scores = model.score([Query(user=user)], [*kin, *other, "n-even", "n-odd"])[0]
        new_kin, new_other = (scores[-2], scores[-1]) if kin is even else (scores[-1], scores[-2])
        assert new_kin > np.median(scores[len(kin) : len(kin) + len(other)]) and new_kin > new_other
    loaded = TwoTower.load(model.save(tmp_path / "model"))
    queries = [Query(user="u0"), Query(history=["n-even", "i4"])]
    # equal up to float summation order: the fit computed its item vectors under its one-thread
    # cap, the load under the process's own thread count (fit no longer leaves torch at 1)
    tolerance = dict(rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(loaded.score(queries, [*items, "n-even", "n-odd"]), model.score(queries, [*items, "n-even", "n-odd"]), **tolerance)
    np.testing.assert_allclose(loaded.item_vectors(), model.item_vectors(), **tolerance)
