"""SASRec: conformance, known answers on a synthetic sequential pattern, losses, fold-in,
checkpoint resume and a quality floor on real data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tastemaker.models.neural.sasrec import SASRec
from tastemaker.testing.conformance import OPTIONS, RecommenderConformance
from tastemaker.testing.synthetic import successor_sequences
from tastemaker.training import NextItemValidation, holdout_last
from tastemaker.types import FitOptions, Query

FAST = dict(epochs=40, batch_size=16, embedding_size=32, dropout=0.0, learning_rate=5e-3, validation_users=0)


class TestSASRec(RecommenderConformance):
    checkerboard = False  # order-based: its known answer is the successor pattern below

    def make_model(self):
        return SASRec(**FAST)


@pytest.fixture(scope="module")
def successor():
    return successor_sequences(n_users=120, n_items=20, length=10)


@pytest.mark.parametrize("loss", ["ce", "bce", "sampled-softmax", "gbce"])
def test_learns_the_successor_pattern_with_every_loss(successor, loss) -> None:
    # Known answer: item i is always followed by item i + 1 (mod 20).
    model = SASRec(**FAST | {"epochs": 60, "negatives": 6}, loss=loss).fit(successor, OPTIONS)
    queries = [Query(history=[f"i{i}", f"i{(i + 1) % 20}", f"i{(i + 2) % 20}"]) for i in range(20)]
    tops = [items.item_ids[0] for items in model.recommend(queries, n=1)]
    assert tops == [f"i{(i + 3) % 20}" for i in range(20)]


def test_fold_in_equals_full_recompute(successor) -> None:
    model = SASRec(**FAST).fit(successor, OPTIONS)
    items = list(successor.items.ids)
    for user in ["u0", "u5", "u17"]:
        history = list(successor.items.decode(successor.sequences()[successor.users.code(user)]))
        known = model.score([Query(user=user)], items)
        anonymous = model.score([Query(history=history)], items)
        np.testing.assert_allclose(known, anonymous, rtol=1e-5, atol=1e-5)
        # a known user's new events are appended: same as the anonymous longer history
        new = [f"i{(int(history[-1][1:]) + 1) % 20}"]
        np.testing.assert_allclose(
            model.score([Query(user=user, history=new)], items),
            model.score([Query(history=history + new)], items),
            rtol=1e-5, atol=1e-5,
        )


def test_new_event_changes_the_next_recommendation(successor) -> None:
    model = SASRec(**FAST).fit(successor, OPTIONS)
    history = list(successor.items.decode(successor.sequences()[0]))
    last = int(history[-1][1:])
    (before,) = model.recommend([Query(user="u0")], n=1)
    (after,) = model.recommend([Query(user="u0", history=[f"i{(last + 1) % 20}"])], n=1)
    assert before.item_ids[0] == f"i{(last + 1) % 20}"
    assert after.item_ids[0] == f"i{(last + 2) % 20}"


def test_early_stopping_restores_the_best_epoch(successor) -> None:
    settings = {"validation_users": "all", "patience": 3, "epochs": 30, "dropout": 0.3, "refit": False}
    model = SASRec(**FAST | settings).fit(successor, OPTIONS)
    result = model.train_result_
    assert result.best_epoch >= 0 and result.best_metric > 0.5
    assert result.epochs_run < 30  # it stopped early ...
    assert result.best_metric == max(h["ndcg@10"] for h in result.history)
    assert result.history[-1]["ndcg@10"] < result.best_metric  # ... after the best epoch
    # Re-run the validation on the fitted model (public scoring path): the restored weights
    # reproduce the best epoch's metric, not the last epoch's.
    holdout = holdout_last(successor.sequences(), "all", np.random.default_rng(OPTIONS.seed))
    histories = [holdout.train[u] for u in holdout.users]
    items = list(successor.items.ids)
    queries = [Query(history=list(successor.items.decode(h))) for h in histories]
    scores = torch.as_tensor(model.score(queries, items))
    gains = NextItemValidation(histories, holdout.targets).gains(lambda rows: scores[rows])
    assert float(gains.mean()) == pytest.approx(result.best_metric, abs=1e-6)


def test_refit_trains_on_everything_for_the_best_epoch_count(successor) -> None:
    """With ``refit`` (the default) the model validation chose is retrained from the same initial
    weights on every sequence, held-out items included, for the best epoch's count: exactly a
    fit without validation for that many epochs."""
    settings = {"validation_users": "all", "patience": 3, "epochs": 30, "dropout": 0.3}
    model = SASRec(**FAST | settings).fit(successor, OPTIONS)
    result = model.train_result_
    assert result.refit_epochs == result.best_epoch + 1 < result.epochs_run
    plain = SASRec(**FAST | settings | {"validation_users": 0, "epochs": result.best_epoch + 1}).fit(successor, OPTIONS)
    items = list(successor.items.ids)
    queries = [Query(user=u) for u in ["u0", "u7", "u42"]]
    np.testing.assert_allclose(model.score(queries, items), plain.score(queries, items), rtol=1e-5, atol=1e-6)


def test_checkpoint_resume_matches_uninterrupted_training(successor, tmp_path) -> None:
    options = FitOptions(seed=3, threads=1, progress=False)
    full = SASRec(**FAST | {"epochs": 6}).fit(successor, options)
    # Stop after 3 epochs with a checkpoint, then "restart" and continue to 6 from it.
    resumable = FitOptions(seed=3, threads=1, progress=False, checkpoint=str(tmp_path / "sasrec.ckpt"))
    SASRec(**FAST | {"epochs": 3}).fit(successor, resumable)
    resumed = SASRec(**FAST | {"epochs": 6}).fit(successor, resumable)
    assert resumed.train_result_.epochs_run == 6
    assert [h["epoch"] for h in resumed.train_result_.history] == [0, 1, 2, 3, 4, 5]
    items = list(successor.items.ids)
    np.testing.assert_allclose(
        resumed.score([Query(user="u1")], items), full.score([Query(user="u1")], items), rtol=1e-4, atol=1e-4
    )


def test_checkpoint_resume_with_validation_and_refit(successor, tmp_path) -> None:
    """A resumed fit that validates and refits ends where an uninterrupted one does; the refit
    begun after a shorter first run is discarded once the first run continues, and a finished
    fit resumed again changes nothing."""
    options = FitOptions(seed=3, threads=1, progress=False)
    settings = FAST | {"validation_users": "all", "patience": 0, "dropout": 0.3}
    full = SASRec(**settings | {"epochs": 6}).fit(successor, options)
    resumable = FitOptions(seed=3, threads=1, progress=False, checkpoint=str(tmp_path / "sasrec.ckpt"))
    SASRec(**settings | {"epochs": 3}).fit(successor, resumable)
    assert (tmp_path / "sasrec.ckpt.refit").is_file()
    resumed = SASRec(**settings | {"epochs": 6}).fit(successor, resumable)
    again = SASRec(**settings | {"epochs": 6}).fit(successor, resumable)
    assert resumed.train_result_.best_epoch == full.train_result_.best_epoch
    assert resumed.train_result_.refit_epochs == full.train_result_.best_epoch + 1
    items = list(successor.items.ids)
    for model in (resumed, again):
        np.testing.assert_allclose(
            model.score([Query(user="u1")], items), full.score([Query(user="u1")], items), rtol=1e-4, atol=1e-4
        )


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="divisible"):
        SASRec(embedding_size=30, heads=4).fit(successor_sequences(n_users=5), OPTIONS)
    with pytest.raises(ValueError):
        SASRec(loss="hinge")


@pytest.mark.realdata
def test_movielens_quality_floor_fully_trained(data_root) -> None:
    """SASRec-CE trained to convergence on ML-100K (window 50, 30 epochs, cosine schedule; full
    ranking, test item): 0.0764 measured, level with the benchmark's 66-epoch window-200 run
    (0.0770) and above EASE (0.0695) and MostPopular (0.0449). The floor sits 11 % below, so a
    model losing a seventh of its quality fails. (~75 s on one thread. The old floor, five
    Beauty epochs at 0.011, passed any model above popularity.)"""
    from tastemaker.data.loaders import load_dataset
    from tastemaker.data.splits import leave_one_out
    from tastemaker.eval.protocols import evaluate_model

    split = leave_one_out(load_dataset("movielens-100k"))
    model = SASRec(
        loss="ce", max_length=50, dropout=0.2, epochs=30, learning_rate=3e-3, scheduler="cosine", warmup_epochs=1.0,
        validation_users=0,
    ).fit(split.train_with_validation(), FitOptions(seed=42, threads=1, progress=False))
    ndcg = evaluate_model(model, split.test, ks=(10,), diversity=False)[0]["ndcg@10"]
    assert ndcg >= 0.068, ndcg
