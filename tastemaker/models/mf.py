"""Matrix factorisation for implicit feedback: ALS and BPR, trained by the `implicit` library.

We wrap rather than reimplement: implicit's Cython/OpenMP solvers (conjugate-gradient ALS,
Hu et al. 2008; BPR, Rendle et al. 2009) are the fastest CPU implementations available and
are well maintained. This file adds what implicit does not do for us: our vocabularies and
contract, fold-in for users with new events, and the artifact.

Fold-in (a user unseen in training, or a known user with new events) solves the ALS user
equation exactly for the given history: (YᵀY + α·Y_hᵀY_h + λI) x = (1 + α)·Y_hᵀ·1, where Y are
the item factors and Y_h those of the history items. For a known user with no new events
the trained factors are used, so scores match implicit's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from tastemaker.data.dataset import Dataset
from tastemaker.models.base import ModelConfig, Recommender, ScoringBatch
from tastemaker.types import FitOptions


class ALSConfig(ModelConfig):
    """``embedding_size`` factors, ``reg`` = λ, ``alpha`` = confidence scale, ``epochs`` = sweeps."""

    embedding_size: int = Field(64, ge=1)
    reg: float = Field(0.01, ge=0)
    alpha: float = Field(1.0, gt=0)
    epochs: int = Field(15, ge=1)


class BPRConfig(ModelConfig):
    """``embedding_size`` factors, SGD ``learning_rate``, ``reg`` = L2 penalty, ``epochs``."""

    embedding_size: int = Field(64, ge=1)
    learning_rate: float = Field(0.01, gt=0)
    reg: float = Field(0.01, ge=0)
    epochs: int = Field(100, ge=1)


class _FactorModel(Recommender):
    """Shared scoring and persistence for user-factor x item-factor models."""

    user_factors_: np.ndarray
    item_factors_: np.ndarray
    _fold_in_alpha = 1.0
    _fold_in_reg = 0.01

    def _score(self, batch: ScoringBatch) -> np.ndarray:
        return self.user_vectors(batch) @ self.item_factors_.T

    def item_vectors(self) -> np.ndarray:
        """Item factors (n_items x embedding_size), e.g. for an ANN index."""
        return self.item_factors_

    def user_vectors(self, batch: ScoringBatch) -> np.ndarray:
        """One vector per query: trained factors, or folded in from the history."""
        vectors = np.zeros((len(batch), self.item_factors_.shape[1]), dtype=np.float32)
        state = batch.use_user_state
        vectors[state] = self.user_factors_[batch.users[state]]
        fold = np.flatnonzero(~state)
        if len(fold):
            vectors[fold] = self._fold_in(batch.history[fold])
        return vectors

    def _fold_in(self, history: sp.csr_matrix) -> np.ndarray:
        items = self.item_factors_.astype(np.float64)
        gram = items.T @ items + self._fold_in_reg * np.eye(items.shape[1])
        out = np.zeros((history.shape[0], items.shape[1]), dtype=np.float32)
        for row in range(history.shape[0]):
            idx = history.indices[history.indptr[row] : history.indptr[row + 1]]
            if len(idx) == 0:
                continue
            yh = items[idx]
            a = gram + self._fold_in_alpha * (yh.T @ yh)
            out[row] = np.linalg.solve(a, (1.0 + self._fold_in_alpha) * yh.sum(axis=0))
        return out

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_}

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_factors_ = arrays["user_factors"]
        self.item_factors_ = arrays["item_factors"]
        self._configure_fold_in()

    def _configure_fold_in(self) -> None:
        """Models set the fold-in penalties from their config."""


def _threads(options: FitOptions) -> int:
    return options.threads or 0  # implicit: 0 = all cores


def _factors_from(model: Any, user_items: Any, options: FitOptions) -> tuple[np.ndarray, np.ndarray]:
    """Fit an ``implicit`` model and return its (user, item) factors as float32."""
    model.fit(user_items, show_progress=options.progress)
    return np.asarray(model.user_factors, dtype=np.float32), np.asarray(model.item_factors, dtype=np.float32)


class ALS(_FactorModel):
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008) via ``implicit``."""

    Config = ALSConfig
    name = "als"

    def _fit(self, dataset: Dataset, options: FitOptions) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        cfg = self.config
        model = AlternatingLeastSquares(
            factors=cfg.embedding_size,
            regularization=cfg.reg,
            alpha=cfg.alpha,
            iterations=cfg.epochs,
            random_state=options.seed,
            num_threads=_threads(options),
        )
        self.user_factors_, self.item_factors_ = _factors_from(model, self.user_items_, options)
        self._configure_fold_in()

    def _configure_fold_in(self) -> None:
        self._fold_in_alpha = self.config.alpha
        self._fold_in_reg = self.config.reg


class BPR(_FactorModel):
    """Bayesian Personalised Ranking (Rendle et al. 2009) via ``implicit``."""

    Config = BPRConfig
    name = "bpr"

    def _fit(self, dataset: Dataset, options: FitOptions) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        cfg = self.config
        model = BayesianPersonalizedRanking(
            factors=cfg.embedding_size,
            learning_rate=cfg.learning_rate,
            regularization=cfg.reg,
            iterations=cfg.epochs,
            random_state=options.seed,
            num_threads=_threads(options),
        )
        # implicit's BPR appends a bias column to the factors (item bias, user "1"), so the dot
        # product already includes the item bias.
        self.user_factors_, self.item_factors_ = _factors_from(model, self.user_items_, options)
        self._configure_fold_in()

    def _configure_fold_in(self) -> None:
        self._fold_in_reg = max(self.config.reg, 1e-3)
