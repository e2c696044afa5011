"""Dialogue state: sentiment, attributes, intent, anaphora, round trips, and the in-memory Memory."""

from __future__ import annotations

import pytest

from tastemaker.chat.linking import CatalogItem, ChatCatalog, EntityLinker
from tastemaker.chat.state import (DialogueState, InMemoryMemory, memory_chunks, parse_genres, parse_years,
                                   read_memory, sentiment)

GENRES = ["Action", "Animation", "Children", "Comedy", "Horror", "Musical", "Romance", "Sci-Fi", "Thriller"]


@pytest.fixture(scope="module")
def linker() -> EntityLinker:
    items = [CatalogItem("1", "The Matrix (1999)", 1999, ("Action", "Sci-Fi")),
             CatalogItem("2", "Titanic (1997)", 1997, ("Romance",)),
             CatalogItem("3", "Toy Story (1995)", 1995, ("Animation", "Children", "Comedy")),
             CatalogItem("4", "The Shining (1980)", 1980, ("Horror",)),
             CatalogItem("5", "Grease (1978)", 1978, ("Musical", "Comedy")),
             CatalogItem("6", "Newest Film (2018)", 2018, ("Thriller",))]
    return EntityLinker(ChatCatalog(items))


@pytest.mark.parametrize("text, sign", [
    ("I loved it", 1), ("I really enjoyed that one", 1), ("it was boring", -1), ("I hated it", -1),
    ("I am not a fan", -1), ("I didn't like it", -1), ("it wasn't bad at all", 1), ("never liked it", -1),
    ("I have seen it", 0), ("it is about a ship", 0),
])
def test_sentiment_lexicon_with_negation(text: str, sign: int) -> None:
    score = sentiment(text)
    assert (score > 0) - (score < 0) == sign


def test_likes_and_dislikes_come_from_each_mention_clause(linker: EntityLinker) -> None:
    state = DialogueState()
    turn = state.observe("I loved The Matrix but I did not like Titanic. Have you seen Toy Story?", linker)
    assert turn.items == ["1", "2", "3"]
    assert state.liked == ["1"] and state.disliked == ["2"] and state.mentioned == ["1", "2", "3"]
    state.observe("Actually Titanic was great", linker)  # the latest opinion wins
    assert state.liked == ["1", "2"] and state.disliked == []
    assert state.intent == "Actually was great"


def test_a_reply_about_it_is_about_the_one_item_just_proposed(linker: EntityLinker) -> None:
    state = DialogueState()
    state.propose("You might enjoy The Shining (1980).", ["4"])
    state.observe("I hated it, too scary", linker)
    assert state.disliked == ["4"] and state.recommended == ["4"] and state.mentioned == []
    state.propose("Try Grease or Toy Story.", ["5", "3"])
    state.observe("I loved it", linker)  # two were proposed: "it" is ambiguous, nothing changes
    assert state.liked == []


def test_assistant_turns_add_mentions_but_no_opinions(linker: EntityLinker) -> None:
    state = DialogueState()
    state.observe("You would love Grease, it is great", linker, role="assistant")
    assert state.mentioned == ["5"] and state.recommended == ["5"] and state.liked == [] and state.intents == []


@pytest.mark.parametrize("text, wanted, avoided", [
    ("something scary please", ["Horror"], []),
    ("a funny cartoon for my kids", ["Comedy", "Animation", "Children"], []),
    ("sci-fi or science fiction", ["Sci-Fi"], []),
    ("no horror please, maybe a romantic comedy", ["Romance", "Comedy"], ["Horror"]),
    ("I love thrillers but I hate musicals", ["Thriller"], ["Musical"]),
    ("I'm not into horror", [], ["Horror"]),
    ("a western", [], []),  # not a genre of this catalog
])
def test_genres_only_from_the_catalog(text: str, wanted: list[str], avoided: list[str]) -> None:
    assert parse_genres(text, GENRES) == (wanted, avoided)


@pytest.mark.parametrize("text, years", [
    ("something from the 80s", (1980, 1989)), ("a 1990s film", (1990, 1999)), ("the eighties", (1980, 1989)),
    ("from 1995", (1995, 1995)), ("after 2010", (2010, 2018)), ("before 2000", (1900, 1999)),
    ("between 1990 and 1995", (1990, 1995)), ("anything recent", (2016, 2018)), ("old movies", (1900, 1979)),
    ("I am 30 years old", None), ("I watched it twice", None), ("in the '70s", (1970, 1979)),
])
def test_years(text: str, years: tuple[int, int] | None) -> None:
    assert parse_years(text, latest=2018) == years


def test_attributes_ignore_years_inside_titles(linker: EntityLinker) -> None:
    state = DialogueState()
    state.observe("I liked The Shining (1980), anything scary but no musicals?", linker)
    assert state.years is None and state.genres == ["Horror"] and state.avoided_genres == ["Musical"]
    state.observe("ok, something recent", linker)
    assert state.years == (2016, 2018) and state.genres == ["Horror"]  # the catalog's newest year is 2018


def test_state_round_trips_through_a_dict(linker: EntityLinker) -> None:
    state = DialogueState()
    state.observe("I loved The Matrix, something from the 90s", linker)
    state.propose("Try Titanic.", ["2"])
    data = state.to_dict()
    assert data["years"] == [1990, 1999] and data["liked"] == ["1"] and data["recommended"] == ["2"]
    assert DialogueState.from_dict(data) == state


def test_memory_chunks_round_trip_and_recall_by_relevance(linker: EntityLinker) -> None:
    catalog = linker.catalog
    state = DialogueState()
    state.observe("I loved The Matrix but Titanic was boring. Anything scary?", linker)
    chunks = memory_chunks(state, catalog)
    assert chunks[:2] == ["liked: @1 The Matrix (1999) | Action, Sci-Fi", "disliked: @2 Titanic (1997) | Romance"]
    hints = read_memory(chunks)
    assert hints.liked == ["1"] and hints.disliked == ["2"] and hints.genres == ["Horror"]
    memory = InMemoryMemory(catalog, top_k=1)
    memory.remember("u", state)
    assert memory.recall("u", "romance like titanic") == ["disliked: @2 Titanic (1997) | Romance"]
    assert memory.recall("someone else", "x") == []
    later = DialogueState()
    later.observe("Titanic was great actually", linker)
    memory.remember("u", later)  # the new opinion replaces the old one
    assert not any(c.startswith("disliked: @2") for c in memory.chunks["u"])
    assert "liked: @2 Titanic (1997) | Romance" in memory.chunks["u"]


def test_questions_about_an_item_carry_no_opinion(linker: EntityLinker) -> None:
    state = DialogueState()
    state.observe("Have you seen Titanic? Did you like Grease?", linker)
    assert state.liked == [] and state.disliked == [] and state.mentioned == ["2", "5"]
    state.observe("I loved The Matrix, anything else like it?", linker)
    assert state.liked == ["1"]


def test_memory_recall_by_encoder_finds_meaning_not_only_words(linker: EntityLinker) -> None:
    """Under a sentence encoder, "something scary" recalls the Horror preference though no
    word is shared; word overlap alone falls back to recency (the newest chunk)."""
    pytest.importorskip("sentence_transformers", reason="the text extra (installed by make test)")
    from tastemaker.content.encoders import MiniLMEncoder

    chunks = ["genre: Horror", "genre: Comedy", "liked: @1 Toy Story (1995) | Animation, Children"]
    by_meaning = InMemoryMemory(linker.catalog, top_k=1, encoder=MiniLMEncoder(threads=1, progress=False))
    by_words = InMemoryMemory(linker.catalog, top_k=1)
    for memory in (by_meaning, by_words):
        memory.chunks["u"] = list(chunks)
    assert by_meaning.recall("u", "in the mood for something terrifying tonight") == ["genre: Horror"]
    assert by_words.recall("u", "in the mood for something terrifying tonight") == [chunks[-1]]
    assert by_meaning.recall("u", "more cartoons for my kids")[0] == chunks[-1]
