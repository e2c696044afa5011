"""The chat engine over a fitted pipeline on ml-latest-small: queries, strategies, tools, budget, memory."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import pytest
from test_chat_llm import FakeLLMServer

from tastemaker.chat.agent import ChatEngine, LLMPlanner, RulePlanner
from tastemaker.chat.answer import LLMAnswerer, display_title
from tastemaker.chat.llm import FunctionChatModel
from tastemaker.chat.rerank import STRATEGIES, ChatRecommender
from tastemaker.chat.state import DialogueState, InMemoryMemory
from tastemaker.data.dataset import Dataset
from tastemaker.pipeline.pipeline import Pipeline


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    from tastemaker.data.loaders.movielens import load_movielens_latest_small

    return load_movielens_latest_small()


@pytest.fixture(scope="module")
def pipeline(dataset: Dataset) -> Pipeline:
    from tastemaker.pipeline.config import build_pipeline
    from tastemaker.types import FitOptions

    spec = {"sources": [{"kind": "model", "model": "itemknn"}, {"kind": "popularity", "mode": "category"}]}
    return build_pipeline(spec).fit(dataset, FitOptions(progress=False))


@pytest.fixture(scope="module")
def engine(dataset: Dataset, pipeline: Pipeline) -> ChatEngine:
    return ChatEngine.build(dataset, pipeline, memory=None)


def by_title(engine: ChatEngine, title: str) -> str:
    return next(i for i, item in engine.catalog.items.items() if item.title == title)


def test_the_query_carries_the_dialogue(engine: ChatEngine) -> None:
    state = DialogueState()
    state.observe("I loved Alien but Titanic was boring. Have you seen Heat? Something scary from the 80s", engine.linker)
    alien, titanic, heat = (by_title(engine, t) for t in ("Alien (1979)", "Titanic (1997)", "Heat (1995)"))
    query = engine.recommender.query(state, user="7", history=["1"])
    assert query.user == "7" and list(query.history) == ["1", alien, heat]
    assert list(query.exclude) == [titanic, alien, heat]
    assert query.include is not None and len(query.include) > 20
    assert all("Horror" in engine.catalog[i].genres and 1980 <= (engine.catalog[i].year or 0) <= 1989
               for i in query.include)
    state.genres, state.years = ["No Such Genre"], None
    assert engine.recommender.query(state).include is None  # nothing matches: no restriction


@pytest.mark.parametrize("strategy", ["recommender", "rerank", "select-rerank"])
def test_offline_strategies_honour_the_state(engine: ChatEngine, strategy: str) -> None:
    state = DialogueState()
    state.observe("I loved Alien and Aliens, I hated The Shining. Anything scary from the 80s?", engine.linker)
    items = engine.recommender.recommend(state, 10, strategy=strategy)  # type: ignore[arg-type]
    ids = [str(i) for i in items.item_ids]
    assert len(ids) == 10 and len(set(ids)) == 10
    assert not set(ids) & set(state.mentioned)
    for i in ids:
        assert "Horror" in engine.catalog[i].genres and 1980 <= (engine.catalog[i].year or 0) <= 1989


def test_the_reranker_reads_the_intent(engine: ChatEngine) -> None:
    state = DialogueState()
    state.observe("I loved Finding Nemo, anything else from pixar that is fun?", engine.linker)
    toy_story = by_title(engine, "Toy Story (1995)")
    ranks = {s: [str(i) for i in engine.recommender.recommend(state, 10, strategy=s).item_ids]  # type: ignore[arg-type]
             for s in ("recommender", "select-rerank")}
    assert ranks["select-rerank"].index(toy_story) == 0 < ranks["recommender"].index(toy_story)


def test_llm_strategies_need_a_model_and_map_titles_to_the_catalog(engine: ChatEngine, pipeline: Pipeline) -> None:
    state = DialogueState()
    state.observe("I loved Alien", engine.linker)
    with pytest.raises(ValueError, match="needs a chat model"):
        engine.recommender.recommend(state, 5, strategy="llm-only")
    titles = json.dumps(["Aliens (1986)", "Zorblax Returns (2031)", "The Thing (1982)", "Alien (1979)", "Predator"])
    model = FunctionChatModel(lambda messages: titles)
    recommender = ChatRecommender(pipeline, engine.catalog, engine.linker, model=model, strategy="llm-only",
                                  encoder=engine.linker.encoder)
    got = [engine.catalog[str(i)].title for i in recommender.recommend(state, 5).item_ids]
    assert got == ["Aliens (1986)", "Thing, The (1982)", "Predator (1987)"]  # no hallucination, no repeat
    expanded = [str(i) for i in recommender.recommend(state, 50, strategy="expand").item_ids]
    assert by_title(engine, "Predator (1987)") in expanded and by_title(engine, "Alien (1979)") not in expanded
    assert set(STRATEGIES) == {"recommender", "llm-only", "expand", "rerank", "select-rerank"}


def test_a_turn_answers_with_grounded_items(engine: ChatEngine) -> None:
    session = engine.session()
    start = time.perf_counter()
    reply = session.turn("I loved The Matrix and Dark City. Any sci-fi from the 90s?")
    assert time.perf_counter() - start < 0.5
    assert len(reply.items) == engine.n and [s.tool for s in reply.steps] == ["recommend"]
    for item in reply.items:
        assert item.title == engine.catalog[item.item_id].title
        assert display_title(engine.catalog[item.item_id]) in reply.answer
        assert "Sci-Fi" in item.genres and 1990 <= (item.year or 0) <= 1999 and item.reason
    assert reply.answer.startswith("For Sci-Fi from 1990 to 1999: since you liked")
    json.dumps(reply.to_dict())  # the HTTP body
    again = session.turn("more please")
    assert not {i.item_id for i in again.items} & {i.item_id for i in reply.items}  # nothing proposed twice


def test_refusal_changes_nothing(engine: ChatEngine) -> None:
    session = engine.session()
    session.turn("I loved Heat")
    before = session.state.to_dict()
    reply = session.turn("how do I make a bomb?")
    assert reply.refused and reply.category == "unsafe" and reply.items == [] and reply.answer.startswith("Sorry")
    assert session.state.to_dict() == before


def test_rule_planner_tools(engine: ChatEngine) -> None:
    session = engine.session()
    reply = session.turn("tell me about Heat")
    assert [s.tool for s in reply.steps] == ["explain"] and reply.answer == "Heat (1995): Action, Crime, Thriller."
    reply = session.turn("more like Toy Story please")
    assert [s.tool for s in reply.steps] == ["find_similar"] and reply.answer.startswith("If you liked Toy Story (1995)")
    reply = session.turn("do you have jurassic park?")
    assert [s.tool for s in reply.steps] == ["search_catalog"]
    assert reply.items[0].title == "Jurassic Park (1993)" and reply.answer.startswith("Here is what I found")
    planner = RulePlanner(engine.catalog)
    assert planner.next("x", DialogueState(), [], [engine.session().turn("hi").steps[0]]) is None  # one call a turn


def test_the_step_budget_stops_an_llm_planner(engine: ChatEngine) -> None:
    with FakeLLMServer(default='{"tool": "search_catalog", "args": {"query": "alien"}}') as server:
        engine = ChatEngine(engine.recommender, planner=LLMPlanner(server.model(), engine.catalog), max_steps=3)
        reply = engine.session().turn("anything with aliens?")
        assert [s.tool for s in reply.steps] == ["search_catalog"] * 3 and reply.budget_exhausted
        assert len(server.requests) == 3 and reply.items[0].title == "Alien (1979)"
        server.default = "not json at all"  # bad output (twice): the rules plan the turn
        reply = engine.session().turn("I loved Heat")
        assert [s.tool for s in reply.steps] == ["recommend"] and not reply.budget_exhausted
        assert isinstance(engine.planner, LLMPlanner)


def test_memory_carries_likes_across_sessions(engine: ChatEngine, pipeline: Pipeline) -> None:
    recommender = ChatRecommender(pipeline, engine.catalog, engine.linker, encoder=engine.linker.encoder)
    engine = ChatEngine(recommender, memory=InMemoryMemory(engine.catalog))
    engine.session(user_id="ann").turn("I loved Alien and Aliens, but Titanic was awful")
    seen: list[Sequence[str]] = []
    original = engine.recommender.source.recommend

    def spy(queries: Any, n: int = 10) -> Any:
        seen.append(list(queries[0].history))
        return original(queries, n)

    engine.recommender.source = engine.tools.source = type("Spy", (), {"recommend": staticmethod(spy)})()
    reply = engine.session(user_id="ann").turn("anything for tonight?")
    alien, aliens, titanic = (by_title(engine, t) for t in ("Alien (1979)", "Aliens (1986)", "Titanic (1997)"))
    assert {alien, aliens} <= set(seen[-1]) and titanic not in seen[-1]
    assert any("Alien" in item.reason for item in reply.items)
    engine.session(user_id="bob").turn("anything for tonight?")
    assert alien not in seen[-1]
    engine.session().turn("anything for tonight?")  # anonymous: nothing recalled
    assert alien not in seen[-1]


def test_llm_answers_are_grounded_or_templated(engine: ChatEngine) -> None:
    answers = ["You might enjoy [[1]] and [[2]], both great picks.", "Watch [[1]] or Zorblax Returns (2031)!"]
    answerer = LLMAnswerer(FunctionChatModel(lambda messages: answers[0]), engine.catalog, engine.linker, retries=0)
    chat = ChatEngine(engine.recommender, answerer=answerer)
    out = chat.session().turn("I loved Heat")
    first, second = (display_title(engine.catalog[i.item_id]) for i in out.items[:2])
    assert out.answer == f"You might enjoy {first} and {second}, both great picks." and answerer.last_fallback is None
    answers[0] = answers[1]  # a hallucinated title: the template answers instead
    out = chat.session().turn("I loved Heat")
    assert out.answer.startswith("Since you liked Heat (1995), you might enjoy: ") and "Zorblax" not in out.answer
    assert answerer.last_fallback
