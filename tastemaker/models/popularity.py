"""MostPopular: every user gets the items most users interacted with.

The baseline every other model must beat, and the fallback for users with no history.
"""

from __future__ import annotations

import numpy as np

from tastemaker.data.dataset import Dataset
from tastemaker.models.base import ModelConfig, Recommender, ScoringBatch
from tastemaker.types import FitOptions


class MostPopularConfig(ModelConfig):
    """No hyperparameters: popularity is the number of distinct users per item."""


class MostPopular(Recommender):
    """Rank items by how many distinct users interacted with them."""

    Config = MostPopularConfig
    name = "most-popular"

    def _fit(self, dataset: Dataset, options: FitOptions) -> None:
        self.scores_ = self.item_popularity_.astype(np.float32)

    def _score(self, batch: ScoringBatch) -> np.ndarray:
        return np.broadcast_to(self.scores_, (len(batch), len(self.scores_))).copy()

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"scores": self.scores_}

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.scores_ = arrays["scores"]
