"""ALS and BPR beyond the conformance suite: each fold-in solves its model's own objective
(known answers from implicit's solver and from a generic optimiser), and the progress bars
carry the model's name."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize

from tastemaker.models.mf import ALS, BPR, bpr_user_vector
from tastemaker.testing.conformance import OPTIONS
from tastemaker.testing.synthetic import checkerboard
from tastemaker.types import FitOptions, Query


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return checkerboard()


@pytest.mark.parametrize("factors", [8, 32])  # 19 history items: the direct solve, then Woodbury's
def test_als_fold_in_is_implicits_exact_user_solve(data, factors) -> None:  # type: ignore[no-untyped-def]
    """implicit's confidence is alpha * r (not 1 + alpha * r): its own Cholesky solver for a
    user, given our item factors, must give our fold-in."""
    from implicit.cpu.als import AlternatingLeastSquares

    model = ALS(embedding_size=factors, reg=1.0, alpha=10.0, epochs=5).fit(data, OPTIONS)
    reference = AlternatingLeastSquares(factors=factors, regularization=1.0, alpha=10.0, num_threads=1)
    reference.item_factors = model.item_factors_.copy()
    histories = model.user_items_
    expected = reference.recalculate_user(np.arange(histories.shape[0]), histories)
    np.testing.assert_allclose(model._fold_in(histories), expected, rtol=1e-3, atol=1e-5)
    # and the trained user vectors are that solve against the final item factors
    np.testing.assert_allclose(model.user_factors_, expected, rtol=1e-3, atol=1e-5)


def test_als_known_user_with_a_new_event_equals_the_anonymous_session(data) -> None:  # type: ignore[no-untyped-def]
    model = ALS(embedding_size=8, reg=1.0, alpha=10.0, epochs=10).fit(data, OPTIONS)
    history = list(data.items.decode(data.sequences()[data.users.code("u4")]))
    items = list(data.items.ids)
    np.testing.assert_allclose(
        model.score([Query(user="u4", history=["i1"])], items),
        model.score([Query(history=[*history, "i1"])], items),
        rtol=1e-5,
        atol=1e-6,
    )


def _bpr_objective(item_factors, liked, weights, reg, x):  # type: ignore[no-untyped-def]
    """BPR's per-user objective written out plainly: mean over liked i of the weighted sum
    over negatives j of softplus(s_j - s_i), plus reg/2 |x|² (bias column fixed at 1)."""
    scores = item_factors @ np.concatenate([x, [1.0]])
    negatives = np.setdiff1d(np.flatnonzero(weights > 0), liked)
    w = weights[negatives] / weights[negatives].sum()
    pairs = np.logaddexp(0.0, scores[negatives][None, :] - scores[liked][:, None])
    return float((pairs @ w).mean() + 0.5 * reg * x @ x)


def test_bpr_fold_in_is_the_optimum_of_bprs_objective() -> None:
    """Known answer: a generic optimiser on the objective written out plainly."""
    rng = np.random.default_rng(0)
    item_factors = rng.normal(scale=0.5, size=(60, 6))  # 5 factors + the bias column
    weights = rng.integers(1, 20, size=60).astype(float)  # popularity of each item
    weights[7] = 0.0  # an item nobody had: never a negative
    liked = np.array([3, 11, 12, 30, 41, 59])
    vector = bpr_user_vector(item_factors, liked, weights, reg=0.05)
    assert vector[-1] == 1.0  # the user's bias column is held at 1
    best = scipy.optimize.minimize(
        lambda x: _bpr_objective(item_factors, liked, weights, 0.05, x), np.zeros(5), method="BFGS",
        options={"gtol": 1e-10},
    )
    np.testing.assert_allclose(vector[:-1], best.x, atol=1e-4)
    assert _bpr_objective(item_factors, liked, weights, 0.05, vector[:-1]) <= best.fun + 1e-9


def test_bpr_fold_in_beats_the_learned_vector_on_its_own_objective(data) -> None:  # type: ignore[no-untyped-def]
    """SGD stops short of the per-user optimum: the fold-in's objective is lower, and its
    scores rank the items as the learned vector does (the conformance floors)."""
    model = BPR(embedding_size=8, learning_rate=0.05, epochs=200).fit(data, OPTIONS)
    weights = np.bincount(model.user_items_.indices, minlength=data.n_items).astype(float)
    for user in (0, 5, 17):
        liked = model.user_items_[user].indices
        folded = model._fold_in(model.user_items_[[user]])[0]
        assert folded[-1] == 1.0
        learned = model.user_factors_[user]
        assert _bpr_objective(model.item_factors_, liked, weights, model.config.reg, folded[:-1].astype(float)) < (
            _bpr_objective(model.item_factors_, liked, weights, model.config.reg, learned[:-1].astype(float))
        )


def test_bpr_fold_in_samples_negatives_in_a_large_catalog() -> None:
    """Above ``negatives`` candidate items a fixed popularity-stratified sample stands in for
    the sum: deterministic, and close to the exact optimum."""
    rng = np.random.default_rng(1)
    item_factors = rng.normal(scale=0.3, size=(3000, 9))
    weights = rng.pareto(1.5, size=3000) + 1.0
    liked = rng.choice(3000, 40, replace=False)
    exact = bpr_user_vector(item_factors, liked, weights, reg=0.05, negatives=10_000)
    sampled = bpr_user_vector(item_factors, liked, weights, reg=0.05, negatives=1024)
    np.testing.assert_array_equal(sampled, bpr_user_vector(item_factors, liked, weights, reg=0.05, negatives=1024))
    cosine = exact[:-1] @ sampled[:-1] / (np.linalg.norm(exact[:-1]) * np.linalg.norm(sampled[:-1]))
    assert cosine > 0.99  # 0.9939 measured (1024 of 2960 candidates; 0.9974 with 2048)


@pytest.mark.parametrize(("model", "label"), [(ALS(embedding_size=4, epochs=3), "als"), (BPR(embedding_size=4, epochs=3), "bpr")])
def test_progress_bars_are_labelled(data, model, label, capsys) -> None:  # type: ignore[no-untyped-def]
    model.fit(data, FitOptions(seed=1, threads=1, progress=True))
    err = capsys.readouterr().err
    assert f"{label}: 100%" in err and "3/3" in err, err
    model.fit(data, FitOptions(seed=1, threads=1, progress=False))
    assert capsys.readouterr().err == ""


def test_no_openblas_thread_warning_outside_make() -> None:
    """implicit warns when OpenBLAS may use several threads inside its OpenMP loops; `make`
    sets OPENBLAS_NUM_THREADS=1, a user's shell usually does not. The fit limits BLAS itself."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"} | {"OPENBLAS_NUM_THREADS": "2"}
    code = ("from tastemaker.models.mf import ALS, BPR\nfrom tastemaker.testing.synthetic import checkerboard\n"
            "from tastemaker.types import FitOptions\nd = checkerboard()\n"
            "ALS(epochs=2).fit(d, FitOptions(progress=False)); BPR(epochs=2).fit(d, FitOptions(progress=False))\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "OpenBLAS is configured" not in proc.stderr, proc.stderr
