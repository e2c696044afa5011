"""Hyperparameter search: a known optimum is found, the search is seeded, and evaluate/train
run it with the trial history in the report."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("optuna")

from tastemaker.cli import main  # noqa: E402
from tastemaker.models.ease import EASE  # noqa: E402
from tastemaker.tuning import Choice, Float, Int, search  # noqa: E402


def test_search_finds_a_known_optimum_and_is_seeded() -> None:
    space = {"x": Float(1.0, 10_000.0, log=True), "k": Int(1, 50), "kind": Choice(("a", "b"))}

    def value(p: dict) -> float:  # best at x = 100, k = 20, kind = "b"
        return -((math.log10(p["x"]) - 2) ** 2) - ((p["k"] - 20) / 10) ** 2 - (p["kind"] == "a")

    best, history = search(value, space, 40, seed=3, progress=False)
    assert 50 < best["x"] < 200 and 14 <= best["k"] <= 26 and best["kind"] == "b"
    assert len(history) == 40 and max(t["value"] for t in history) == value(best)
    again, _ = search(value, space, 40, seed=3, progress=False)
    assert again == best
    fixed, trials = search(value, space, 5, seed=3, fixed={"unused": 1}, start=[{"x": 100.0, "k": 20, "kind": "b"}], progress=False)
    assert trials[0]["params"] == {"unused": 1, "x": 100.0, "k": 20, "kind": "b"} and fixed["unused"] == 1


def test_evaluate_searches_and_reports_every_trial(tmp_path, capsys) -> None:
    from tastemaker.data.dataset import save_dataset
    from tastemaker.testing.synthetic import checkerboard

    saved = save_dataset(checkerboard(10, 10), tmp_path / "data")
    out = tmp_path / "report"
    assert main(["evaluate", "--saved", str(saved), "--models", "ease", "--trials", "6", "--out", str(out), "--quiet"]) == 0
    assert "tuning: a 6-trial search per model" in capsys.readouterr().out
    (ease,) = json.loads((out / "report.json").read_text())["results"]
    assert len(ease["tuning"]) == 6
    regs = [t["params"]["reg"] for t in ease["tuning"]]
    low, high = EASE.search_space["reg"].low, EASE.search_space["reg"].high
    assert all(low <= r <= high for r in regs)
    assert ease["params"]["reg"] == max(ease["tuning"], key=lambda t: t["ndcg@10"])["params"]["reg"]


def test_train_tunes_first_when_asked(tmp_path, capsys) -> None:
    from tastemaker.data.dataset import save_dataset
    from tastemaker.testing.synthetic import checkerboard

    saved = save_dataset(checkerboard(), tmp_path / "data")
    assert main(["train", "--saved", str(saved), "--model", "itemknn", "--param", "weighting=bm25", "--trials", "4",
                 "--out", str(tmp_path / "art"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "best of 4 trials:" in printed and "'weighting': 'bm25'" in printed and "ItemKNN(k=" in printed


def test_a_pipeline_search_tunes_each_model_source_alone(tmp_path, capsys) -> None:
    """tune_pipeline: the configured params are tried first, the winner is at least as good on
    validation, stages without a search space keep their config; evaluate --pipeline --trials
    reports every trial on the pipeline row and on that source's row."""
    from tastemaker.data.dataset import save_dataset
    from tastemaker.data.splits import leave_one_out
    from tastemaker.pipeline import ModelSource, Pipeline, PopularitySource
    from tastemaker.testing.synthetic import checkerboard
    from tastemaker.tuning import tune_pipeline
    from tastemaker.types import FitOptions

    data = checkerboard(12, 12)
    split = leave_one_out(data)
    pipe = Pipeline([ModelSource(model="ease", params={"reg": 20_000.0}), PopularitySource()])
    tuned, history = tune_pipeline(pipe, split.train, split.validation, 5, FitOptions(progress=False, seed=1), progress=False)
    assert len(history) == 5 and {t["source"] for t in history} == {"ease"}
    assert history[0]["params"] == {"reg": 20_000.0}  # the configured point first
    best = max(history, key=lambda t: t["value"])
    assert tuned.sources[0].config.params == best["params"] and best["value"] >= history[0]["value"]
    assert tuned.sources[1].config == pipe.sources[1].config and not pipe.is_fitted  # the input is left alone

    saved = save_dataset(data, tmp_path / "data")
    spec = tmp_path / "pipe.toml"
    spec.write_text("[[sources]]\nkind = 'model'\nmodel = 'ease'\nparams = { reg = 20000.0 }\n[[sources]]\nkind = 'popularity'\n")
    out = tmp_path / "report"
    assert main(["evaluate", "--saved", str(saved), "--pipeline", str(spec), "--trials", "4", "--out", str(out), "--quiet"]) == 0
    assert "each model source tuned alone, 4 trials" in capsys.readouterr().out
    rows = {r["model"]: r for r in json.loads((out / "report.json").read_text())["results"]}
    assert len(rows["pipeline (ease+popular)"]["tuning"]) == 4 and len(rows["ease alone"]["tuning"]) == 4
    assert rows["popular alone"]["tuning"] == []
