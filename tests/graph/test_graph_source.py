"""The graph source: the pipeline's source contract, social-proof explanations, real-time
edges (the next retrieval sees them), new users, and MeritRank's fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tastemaker.config import stage_class
from tastemaker.data.dataset import Dataset
from tastemaker.graph.source import GraphSource
from tastemaker.pipeline.pipeline import Pipeline
from tastemaker.testing.pipeline import SourceConformance
from tastemaker.testing.synthetic import checkerboard
from tastemaker.types import FitOptions, Query

OPTIONS = FitOptions(seed=3, threads=1, progress=False)


class TestGraphSource(SourceConformance):
    def make_source(self) -> GraphSource:
        return GraphSource(walks=300)


class TestGraphSourceWithTrust(SourceConformance):
    """The same contract on a graph with trust edges and MeritRank, in small segments."""

    @pytest.fixture(scope="class")
    @classmethod
    def data(cls):  # type: ignore[no-untyped-def]
        board = checkerboard()
        events = pd.DataFrame({"user": board.users.decode(board.interactions["user"]),
                               "item": board.items.decode(board.interactions["item"]),
                               "timestamp": board.interactions["timestamp"]})
        friends = pd.DataFrame({"user": [f"u{u}" for u in range(40)], "friend": [f"u{(u + 2) % 40}" for u in range(40)]})
        return Dataset.from_frames(events, board.catalog[["item_id", "title", "categories"]], social=friends,
                                   name="checkerboard+trust")

    def make_source(self) -> GraphSource:
        return GraphSource(walks=300, max_edges=400, segments=4)


def _social() -> Dataset:
    """Four users: a and b share taste (x, y); a trusts c, who likes z; d likes only w."""
    events = pd.DataFrame({"user": ["a", "a", "b", "b", "b", "c", "c", "d"],
                           "item": ["x", "y", "x", "y", "q", "z", "y", "w"],
                           "timestamp": range(8)})
    return Dataset.from_frames(events, social=pd.DataFrame({"user": ["a"], "friend": ["c"]}), name="social")


def _fit(**params: object) -> tuple[Pipeline, GraphSource]:
    pipe = Pipeline([GraphSource(**params)]).fit(_social(), OPTIONS)
    source = pipe.sources[0]
    assert isinstance(source, GraphSource)
    return pipe, source


def test_registered_as_a_pipeline_kind() -> None:
    assert stage_class("source", "graph") is GraphSource
    config = GraphSource().config
    assert (config.walks, config.walk_length, config.reset, config.beta, config.gatekeeper) == (1000, 100, 0.1, 0.8, 0.99)


def test_explanations_are_social_proof() -> None:
    pipe, source = _fit(walks=2000, meritrank=False)
    resolved = pipe.context_.resolve([Query(user="a")])[0]
    found = source.retrieve([Query(user="a")], 5)[0]
    assert set(found.item_ids) == {"z", "q"}  # z through the trust edge, q through b's taste
    reasons = dict(zip(found.item_ids, source.explain(resolved, found.item_codes), strict=True))
    assert reasons == {"z": "1 person you trust liked this", "q": "liked by people with your taste"}


def test_an_event_changes_the_next_answer_at_once() -> None:
    pipe, source = _fit(walks=500)
    before = source.retrieve([Query(user="d")], 5)[0]
    assert len(before) == 0  # d's only item has no other user
    assert source.add_events(["b"], ["w"], [100.0]) == 1
    after = source.retrieve([Query(user="d")], 5)[0]
    assert set(after.item_ids) == {"x", "y", "q", "z"}  # z: d-w-b-y-c-z
    # and through the pipeline, which also explains it
    shown = pipe.recommend([Query(user="d")], n=4)[0]
    assert set(shown.item_ids) == {"x", "y", "q", "z"} and all(r == "liked by people with your taste" for r in shown.reasons)


def test_events_of_new_users_and_unknown_items() -> None:
    _, source = _fit(walks=500)
    assert source.add_events(["newcomer", "newcomer", "newcomer"], ["w", "x", "no-such-item"]) == 2
    assert "newcomer" in source.new_users_
    # the newcomer is a root of its own (known to the graph, not to the context) ...
    found = source.retrieve([Query(user="newcomer")], 5)[0]
    assert {"y", "q"} <= set(found.item_ids) and not {"w", "x"} & set(found.item_ids)
    # ... and connects d to x's users
    assert "x" in source.retrieve([Query(user="d")], 5)[0].item_ids
    source.add_trust(["d"], ["c"])
    assert "z" in source.retrieve([Query(user="d")], 5)[0].item_ids


def test_round_trip_keeps_live_edges_and_new_users(tmp_path: Path) -> None:
    pipe, source = _fit(walks=400, max_edges=6, segments=3)
    source.add_events(["newcomer", "d", "d"], ["w", "x", "z"], [9.0, 10.0, 11.0])
    queries = [Query(user=u) for u in ("a", "b", "d", "newcomer")] + [Query(history=["x"])]
    loaded = Pipeline.load(pipe.save(tmp_path / "pipe"))
    for a, b in zip(pipe.recommend(queries, n=4), loaded.recommend(queries, n=4), strict=True):
        assert a.item_ids.tolist() == b.item_ids.tolist() and a.reasons == b.reasons
        np.testing.assert_allclose(a.scores, b.scores)
    assert loaded.sources[0].new_users_ == source.new_users_  # type: ignore[attr-defined]


def test_meritrank_lands_only_on_reputed_users_and_falls_back_without_trust() -> None:
    pipe, merit = _fit(walks=2000)
    _, plain = _fit(walks=2000, meritrank=False)
    # a trusts c: with MeritRank a's walks land only on c (and a), so b's taste (q) is out
    assert set(merit.retrieve([Query(user="a")], 5)[0].item_ids) == {"z"}
    assert set(plain.retrieve([Query(user="a")], 5)[0].item_ids) == {"z", "q"}
    # b trusts no one: the plain walk, identical with and without MeritRank
    for q in (Query(user="b"), Query(history=["x"])):
        a, b = merit.retrieve([q], 5)[0], plain.retrieve([q], 5)[0]
        assert a.item_ids.tolist() == b.item_ids.tolist()
        np.testing.assert_allclose(a.scores, b.scores)
    resolved = pipe.context_.resolve([Query(user="a")])[0]
    assert merit.explain(resolved, pipe.context_.items.encode(["z", "q"])) == [
        "1 person you trust liked this", "liked by people with your taste"]


def test_a_new_trust_edge_reaches_the_next_answer_through_the_cache() -> None:
    _, source = _fit(walks=2000)
    assert set(source.retrieve([Query(user="a")], 5)[0].item_ids) == {"z"}  # a's reputation is now cached
    source.add_trust(["a"], ["b"])  # b is reputed from now on: the walks may land on b, and find q
    assert set(source.retrieve([Query(user="a")], 5)[0].item_ids) == {"z", "q"}


def test_cached_and_uncached_answers_are_equal() -> None:
    _, cached = _fit(walks=800)
    _, uncached = _fit(walks=800, reputation_cache=0)
    queries = [Query(user=u) for u in ("a", "b", "c", "d")]
    events = [(["c", "c"], ["q", "w"]), (["a"], ["w"]), (["newcomer", "c"], ["x", "y"])]
    trust = [([], []), (["c"], ["newcomer"]), (["d"], ["a"])]
    for (users, items), (truster, trusted) in zip(events, trust, strict=True):
        for source in (cached, uncached):
            source.add_events(users, items)
            source.add_trust(truster, trusted)
        for a, b in zip(cached.retrieve(queries, 5), uncached.retrieve(queries, 5), strict=True):
            assert a.item_ids.tolist() == b.item_ids.tolist()
            np.testing.assert_array_equal(a.scores, b.scores)
    assert len(cached._merit_cache) > 0 and len(uncached._merit_cache) == 0
