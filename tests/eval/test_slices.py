"""The cold-start / long-tail protocol: which items are cold, head and tail, who is evaluated,
per-slice metrics with hand-computed answers, and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from tastemaker.data.dataset import Dataset
from tastemaker.errors import NotFittedError
from tastemaker.eval.slices import SLICES, ColdStartSplit, cold_start_split, evaluate_slices, plot_slices, slices_markdown
from tastemaker.models.popularity import MostPopular
from tastemaker.testing.synthetic import successor_sequences
from tastemaker.types import FitOptions

OPTIONS = FitOptions(progress=False, threads=1, seed=0)

# Item codes follow the catalog order: A=0, B=1, ..., G=6 (G has no events at all).
EVENTS = [
    ("u1", "A", 1), ("u1", "B", 2), ("u1", "C", 3), ("u1", "D", 4),
    ("u2", "A", 1), ("u2", "B", 2), ("u2", "E", 9),
    ("u3", "A", 2), ("u3", "C", 3), ("u3", "B", 5),
    ("u4", "A", 3), ("u4", "F", 10),  # two events: train only
    ("u5", "B", 1), ("u5", "C", 2), ("u5", "A", 6), ("u5", "E", 8),
    ("u6", "A", 1), ("u6", "B", 2), ("u6", "C", 7),
    ("u7", "E", 8), ("u7", "F", 10), ("u7", "A", 11),  # every event before the target is on a cold item
]  # fmt: skip
A, B, C, D, E, F, G = range(7)


def tiny() -> Dataset:
    frame = pd.DataFrame(EVENTS, columns=["user", "item", "timestamp"])
    catalog = pd.DataFrame({"item_id": list("ABCDEFG"), "title": [f"item {c}" for c in "ABCDEFG"]})
    return Dataset.from_frames(frame, catalog=catalog, name="tiny")


def tiny_split() -> ColdStartSplit:
    # 22 event times; the 0.8 quantile is 8, so the items first seen at 8 or later, E and F, are cold.
    return cold_start_split(tiny(), how="time", quantile=0.8, head_share=0.5)


def codes(data: Dataset, users: list[str]) -> list[int]:
    return [data.users.code(u) for u in users]


def test_time_split_known_answer() -> None:
    data = tiny()
    split = tiny_split()
    assert split.cold_items.tolist() == [E, F]
    # training popularity (distinct users): A 7 (u7's warm target returns to train), B 4, C 3;
    # ceil(0.5 x 3 warm items) = 2 head items.
    assert split.head_items.tolist() == [A, B]
    assert split.tail_items.tolist() == [C]
    # u4 has two events (train only); u7 has no training event left once E and F are removed.
    assert split.test["user"].tolist() == codes(data, ["u1", "u2", "u3", "u5", "u6"])
    assert split.test["item"].tolist() == [D, E, B, E, C]
    train = split.train.interactions
    assert train.groupby("user")["item"].apply(list).to_dict() == dict(
        zip(codes(data, ["u1", "u2", "u3", "u4", "u5", "u6", "u7"]),
            [[A, B, C], [A, B], [A, C], [A], [B, C, A], [A, B], [A]], strict=True)
    )  # fmt: skip
    assert split.item_slice(np.array([A, C, D, E, G])).tolist() == ["head", "long-tail", "", "cold", ""]
    assert split.summary() == {
        "items": 7, "cold_items": 2, "head_items": 2, "tail_items": 1, "train_events": 14,
        "test_cases": 5, "test_head": 1, "test_long-tail": 1, "test_cold": 2,
    }  # fmt: skip


def test_cold_items_have_no_training_events_but_stay_rankable() -> None:
    data = tiny()
    split = tiny_split()
    train = split.train
    assert not np.isin(train.interactions["item"].to_numpy(), split.cold_items).any()
    assert (train.item_popularity()[split.cold_items] == 0).all()
    # with_interactions keeps the vocabularies and the catalog: cold items can still be ranked
    assert train.items == data.items and train.users == data.users
    assert train.catalog["item_id"].tolist() == list("ABCDEFG")
    top = MostPopular().fit(train, OPTIONS).recommend_codes(split.test["user"].to_numpy(), n=7)
    assert np.isin(split.cold_items, top).all()


def test_most_popular_per_slice_known_answer() -> None:
    split = tiny_split()
    model = MostPopular().fit(split.train, OPTIONS)
    # Scores A 7, B 4, C 3, the rest 0; training items excluded. k = 5 takes in every zero-score
    # candidate, so the order within the tie is the documented one (lower code first) — with a
    # smaller k, recommend_codes may cut a tie at any of its members.
    #   u1 [D, E, F, G] hit@1 | u2 [C, D, E, F, G] hit@3 | u3 [B, D, E, F, G] hit@1
    #   u5 [D, E, F, G] hit@2 | u6 [C, D, E, F, G] hit@1          (cold items E and F in every list)
    result = evaluate_slices(model, split, k=5)
    assert list(result) == list(SLICES)
    r2, r3 = 1 / math.log2(3), 1 / math.log2(4)
    expected = {
        "all": {"n": 5, "hr@5": 1.0, "ndcg@5": (3 + r3 + r2) / 5, "mrr@5": (3 + 1 / 3 + 1 / 2) / 5,
                "cold_exposure@5": 10 / 23},
        "head": {"n": 1, "hr@5": 1.0, "ndcg@5": 1.0, "mrr@5": 1.0, "cold_exposure@5": 2 / 5},
        "long-tail": {"n": 1, "hr@5": 1.0, "ndcg@5": 1.0, "mrr@5": 1.0, "cold_exposure@5": 2 / 5},
        "cold": {"n": 2, "hr@5": 1.0, "ndcg@5": (r3 + r2) / 2, "mrr@5": (1 / 3 + 1 / 2) / 2, "cold_exposure@5": 4 / 9},
    }  # fmt: skip
    for name, row in expected.items():
        assert result[name] == pytest.approx(row), name
    assert evaluate_slices(model, split, k=5, slices=("cold",)) == {"cold": result["cold"]}
    # at k = 1, u3 gets B and u6 gets C (a unique best unseen item each): both hits
    top1 = evaluate_slices(model, split, k=1, slices=("head", "long-tail"))
    assert top1["head"]["hr@1"] == 1.0 and top1["long-tail"]["hr@1"] == 1.0


def test_empty_slice_is_nan() -> None:
    split = cold_start_split(tiny(), how="time", quantile=0.8, head_share=0.2)  # head = {A}: no target
    result = evaluate_slices(MostPopular().fit(split.train, OPTIONS), split, k=3)
    assert result["head"]["n"] == 0 and math.isnan(result["head"]["ndcg@3"])
    assert result["long-tail"]["n"] == 2  # B and C


def test_head_ties_go_to_the_lower_code() -> None:
    # Catalog order makes B code 0 and A code 1. A and B have two training users each, C and Y
    # one; Z (first seen at 10, after the 0.8 cut of 7.6) is cold. One head item: B, the lower code.
    frame = pd.DataFrame(
        [("u1", "A", 1), ("u1", "B", 2), ("u1", "C", 3), ("u1", "Z", 10),
         ("u2", "B", 1), ("u2", "A", 2), ("u2", "Y", 4), ("u2", "Z", 11)],
        columns=["user", "item", "timestamp"],
    )  # fmt: skip
    data = Dataset.from_frames(frame, catalog=pd.DataFrame({"item_id": list("BACYZ")}))
    split = cold_start_split(data, how="time", quantile=0.8, head_share=0.2)
    assert split.cold_items.tolist() == [4]
    assert split.head_items.tolist() == [0]  # B
    assert split.tail_items.tolist() == [1, 2, 3]


def test_random_split_is_seeded() -> None:
    data = successor_sequences(n_users=60, n_items=40, length=8)
    first = cold_start_split(data, how="random", share=0.25, seed=3)
    again = cold_start_split(data, how="random", share=0.25, seed=3)
    other = cold_start_split(data, how="random", share=0.25, seed=4)
    assert first.cold_items.tolist() == again.cold_items.tolist()
    assert first.test.equals(again.test) and first.train.interactions.equals(again.train.interactions)
    assert first.cold_items.tolist() != other.cold_items.tolist()
    assert len(first.cold_items) == 10  # a quarter of the 40 items with events
    assert not np.isin(first.train.interactions["item"].to_numpy(), first.cold_items).any()
    assert first.name == "cold-start-random"
    # every item is in exactly one of cold / head / tail here (each has training events or is cold)
    parts = np.concatenate([first.cold_items, first.head_items, first.tail_items])
    assert sorted(parts.tolist()) == list(range(40))


def test_time_cut_on_positions_warns() -> None:
    with pytest.warns(UserWarning, match="sequence positions"):
        cold_start_split(successor_sequences(n_users=30, n_items=20, length=6), how="time")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"quantile": 0.0}, "quantile"),
        ({"quantile": 1.5}, "quantile"),
        ({"how": "random", "share": 0.0}, "share"),
        ({"how": "random", "share": 1.0}, "share"),
        ({"head_share": 1.0}, "head_share"),
        ({"min_events": 1}, "min_events"),
        ({"how": "newest"}, "how"),
    ],
)
def test_bad_split_parameters(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        cold_start_split(tiny(), **kwargs)


def test_bad_evaluation_input() -> None:
    split = tiny_split()
    model = MostPopular().fit(split.train, OPTIONS)
    with pytest.raises(ValueError, match="k must be"):
        evaluate_slices(model, split, k=0)
    with pytest.raises(ValueError, match="unknown slice"):
        evaluate_slices(model, split, slices=("all", "fresh"))
    with pytest.raises(NotFittedError):
        evaluate_slices(MostPopular(), split)
    elsewhere = MostPopular().fit(successor_sequences(n_users=10, n_items=12, length=4), OPTIONS)
    with pytest.raises(ValueError, match="fit it on split.train"):
        evaluate_slices(elsewhere, split)


def test_markdown_and_plot(tmp_path) -> None:
    split = tiny_split()
    result = evaluate_slices(MostPopular().fit(split.train, OPTIONS), split, k=5)
    text = slices_markdown({"most-popular": result}, k=5)
    assert "| most-popular | cold | 2 | 1.0000 | 0.5655 | 0.4167 | 0.4444 |" in text
    path = plot_slices({"tiny": {"most-popular": result, "again": result}}, tmp_path / "plots" / "slices.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="at least one"):
        plot_slices({}, tmp_path / "none.png")


def test_cli_cold_start_protocol(tmp_path, capsys) -> None:
    from tastemaker.cli import main

    out = tmp_path / "report"
    code = main(["evaluate", "--models", "most-popular", "--protocol", "cold-start", "--cold-how", "random",
                 "--cold-share", "0.2", "--threads", "1", "--quiet", "--out", str(out)])  # fmt: skip
    assert code == 0
    payload = json.loads((out / "slices.json").read_text())
    assert payload["split"] == "cold-start-random"
    slices = payload["results"]["most-popular"]
    assert set(slices) == set(SLICES)
    # popularity never ranks an item without training users above one with some
    assert slices["cold"]["hr@10"] == 0.0 and slices["all"]["hr@10"] > 0.0
    assert "| most-popular | cold |" in capsys.readouterr().out
    assert main(["evaluate", "--protocol", "cold-start", "--cold-quantile", "1.2", "--quiet", "--out", str(out)]) == 2


@pytest.mark.realdata
def test_ease_cannot_reach_cold_items_on_movielens() -> None:
    from tastemaker.data.loaders import load_dataset
    from tastemaker.models.ease import EASE

    data = load_dataset("movielens-latest-small")
    split = cold_start_split(data, how="time", quantile=0.9)
    summary = split.summary()
    # measured: 1,138 cold items; 610 test cases, 429 head, 147 long-tail, 20 cold
    assert summary["cold_items"] > 500 and summary["test_cold"] >= 10 and summary["test_long-tail"] > 50
    result = evaluate_slices(EASE(reg=200.0).fit(split.train, OPTIONS), split, k=10)
    # EASE's weights for an item without training events are all zero: it is never recommended
    assert result["cold"]["hr@10"] == 0.0 and result["cold"]["ndcg@10"] == 0.0
    assert result["all"]["cold_exposure@10"] == 0.0
    assert result["all"]["ndcg@10"] > 0.01
    assert result["head"]["ndcg@10"] > result["long-tail"]["ndcg@10"]
