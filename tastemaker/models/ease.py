"""EASE: Embarrassingly Shallow Autoencoder (Steck, WWW 2019).

The item-item weight matrix B has a closed form: with P = (XᵀX + λI)⁻¹,
B = I - P·diag(1/diag(P)), i.e. B[i, j] = -P[i, j] / P[j, j] and B[j, j] = 0.
Scores are ``history @ B``.

Memory: the Gram matrix is dense n_items². We keep it float32 and invert it in place
(Cholesky factor + inverse through LAPACK ``spotrf``/``spotri``), so the peak is about one
n_items² float32 matrix plus the sparse product — 0.6 GB for 12k items.

Storage: by default (``precision="float16"``) the weights are rounded to half precision when
fitted and written as float16, which halves the artifact (ml-latest-small, 9,742 items: 362 ->
181 MiB of weights) at no measured cost: test NDCG@10 0.0411 -> 0.0411 on ml-latest-small and
0.0445 -> 0.0444 on Amazon Beauty (reg=50, `benchmarks/classical.py --parts storage`). In memory they stay
float32, so scoring is unchanged, and a loaded model scores exactly as the fitted one.
Keeping only each item's top-k weights (largest magnitude) is smaller still but lost 4-7%
NDCG@10 on ml-latest-small (k=200: 0.0381, 11 MiB; k=1000: 0.0393) while it was level on
Beauty (k=200: 0.0447), so it is not offered. Artifacts written with float32 weights (before
``precision`` existed) load as they are.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from scipy.linalg import lapack

from tastemaker.data.dataset import Dataset
from tastemaker.models.base import ModelConfig, Recommender, ScoringBatch
from tastemaker.tuning import Float
from tastemaker.types import FitOptions

_BLOCK = 2048  # rows copied at a time when mirroring the triangle


class EASEConfig(ModelConfig):
    """``reg`` is λ, the L2 penalty added to the Gram matrix's diagonal; ``precision`` is the
    precision the weights are kept in (see the module docstring)."""

    reg: float = Field(250.0, gt=0)
    precision: Literal["float16", "float32"] = "float16"


class EASE(Recommender):
    """Closed-form linear item-item model."""

    Config = EASEConfig
    name = "ease"
    search_space = {"reg": Float(1.0, 20_000.0, log=True)}
    config: EASEConfig

    def _fit(self, dataset: Dataset, options: FitOptions) -> None:
        gram = _dense_gram(self.user_items_)
        gram[np.diag_indices_from(gram)] += np.float32(self.config.reg)
        # gram is symmetric, so its C-order buffer is also a valid Fortran-order matrix:
        # passing the transpose view lets LAPACK work in place without a copy.
        chol, info = lapack.spotrf(gram.T, lower=0, overwrite_a=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"EASE: Cholesky failed (info={info}); increase reg")
        inv, info = lapack.spotri(chol, lower=0, overwrite_c=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"EASE: inverse failed (info={info})")
        p = inv.T  # C-order view of the same buffer; in C order the valid triangle is the lower one
        _mirror_lower_to_upper(p)
        diag = np.diag(p).copy()
        p /= -diag[None, :]
        p[np.diag_indices_from(p)] = 0.0
        if self.config.precision == "float16":
            _round_to_half(p)
        self.weights_ = np.ascontiguousarray(p)

    def _score(self, batch: ScoringBatch) -> np.ndarray:
        return np.asarray(batch.history @ self.weights_, dtype=np.float32)

    def item_affinity(self, history: np.ndarray, items: np.ndarray) -> np.ndarray | None:
        # B[h, i] is exactly history item h's contribution to item i's score
        return self.weights_[np.ix_(np.asarray(history), np.asarray(items))].T

    def _arrays(self) -> dict[str, np.ndarray]:
        if self.config.precision == "float16":
            return {"weights": self.weights_.astype(np.float16)}  # exact: already rounded in fit
        return {"weights": self.weights_}

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        # float16 (precision="float16") or float32 (precision="float32", and every artifact
        # written before the option existed); scored in float32 either way
        self.weights_ = np.asarray(arrays["weights"], dtype=np.float32)


def _dense_gram(user_items: sp.csr_matrix) -> np.ndarray:
    """XᵀX as a dense float32 matrix, filled one column block at a time: the sparse product of
    the whole matrix can hold more entries than the dense result (ml-latest-small: ~2x)."""
    n_items = user_items.shape[1]
    gram = np.empty((n_items, n_items), dtype=np.float32)
    item_users = sp.csr_matrix(user_items.T, dtype=np.float32)
    columns = sp.csc_matrix(user_items, dtype=np.float32)
    for start in range(0, n_items, _BLOCK):
        stop = min(start + _BLOCK, n_items)
        gram[:, start:stop] = (item_users @ columns[:, start:stop]).toarray()
    return gram


def _round_to_half(mat: np.ndarray) -> None:
    """Round a float32 matrix to float16 precision in place, block by block (no n² float16
    copy); refuses weights float16 cannot hold."""
    limit = float(np.finfo(np.float16).max)
    for start in range(0, mat.shape[0], _BLOCK):
        block = mat[start : start + _BLOCK]
        if np.abs(block).max(initial=0.0) > limit:
            raise ValueError(f"EASE weights exceed the float16 range ({limit}); use precision='float32' or a larger reg")
        block[...] = block.astype(np.float16)


def _mirror_lower_to_upper(mat: np.ndarray) -> None:
    """Copy the lower triangle onto the upper one, in place, block by block (no n² temporaries)."""
    n = mat.shape[0]
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        # rows start:stop, columns > row: take from the lower triangle (columns start:stop of rows below)
        mat[start:stop, stop:] = mat[stop:, start:stop].T
        block = mat[start:stop, start:stop]
        upper = np.triu_indices(stop - start, 1)
        block[upper] = block.T[upper]
