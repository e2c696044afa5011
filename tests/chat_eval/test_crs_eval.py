"""Known answers of the conversational-recommendation protocol (tastemaker.chat.crs_eval) on
hand-made dialogues."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tastemaker.chat import crs_eval as ce

S, R = "seeker", "recommender"
CATALOG = ["a", "b", "c", "d", "e"]


def dialogue_one() -> list[ce.Utterance]:
    # seeker likes a; recommender suggests b (new); seeker asks more; recommender repeats a and adds c
    return [
        ce.Utterance(S, "I loved @a", ("a",)),
        ce.Utterance(R, "Try @b", ("b",)),
        ce.Utterance(S, "Seen it. More?"),
        ce.Utterance(R, "Rewatch @a or see @c", ("a", "c")),
    ]


def dialogue_two() -> list[ce.Utterance]:
    # no movie before the first recommendation; a recommender turn without a movie is not evaluated
    return [ce.Utterance(S, "something scary"), ce.Utterance(R, "How about @d", ("d",)), ce.Utterance(R, "or not")]


def turns() -> list[ce.Turn]:
    return ce.extract_turns([("one", dialogue_one()), ("two", dialogue_two())])


def test_merge_joins_consecutive_messages_and_dedups_items() -> None:
    merged = ce.merge_turns([(S, "hi", []), (S, "I like @a", ["a"]), (R, "@b and @b", ["b", "b"]), (S, "ok", [])])
    assert [u.speaker for u in merged] == [S, R, S]
    assert merged[0] == ce.Utterance(S, "hi\nI like @a", ("a",))
    assert merged[1].items == ("b",)


def test_redial_messages_become_turns_by_sender() -> None:
    messages = [
        {"text": "Hi", "senderWorkerId": 1, "messageId": 1},
        {"text": "I liked @11", "senderWorkerId": 1, "messageId": 2},
        {"text": "Then @22 and @11", "senderWorkerId": 2, "messageId": 3},
    ]
    utterances = ce.redial_utterances(messages, initiator="1", respondent="2")
    assert utterances == [ce.Utterance(S, "Hi\nI liked @11", ("11",)), ce.Utterance(R, "Then @22 and @11", ("22", "11"))]
    frame = pd.DataFrame([{"conversation_id": "c", "initiator": "1", "respondent": "2", "messages": messages}])
    [turn] = ce.turns_from_frame(frame)
    assert turn.targets == ("22", "11") and turn.context_items == ("11",) and turn.targets_for("dedup") == ("22",)


def test_generic_loader_mentions_are_read() -> None:
    # the generic JSON Lines loader stores a turn's items in "mentions" beside any @ids in the text
    messages = [{"text": "Alien please", "senderWorkerId": "s", "mentions": ["7"]},
                {"text": "Aliens", "senderWorkerId": "r", "mentions": ["8"]}]
    assert ce.redial_utterances(messages, "s", "r")[1].items == ("8",)


def test_turns_contexts_and_targets() -> None:
    t = turns()
    assert [(x.dialogue_id, x.position, x.targets) for x in t] == [("one", 1, ("b",)), ("one", 3, ("a", "c")), ("two", 1, ("d",))]
    assert t[1].context_items == ("a", "b") and t[1].context_text == "I loved @a\nTry @b\nSeen it. More?"
    assert t[2].context_items == ()


def test_pair_counts_of_both_protocols() -> None:
    counts = ce.pair_counts(turns())
    assert counts == {
        "evaluation_turns": 3, "dialogues": 2,
        "pairs_all": 4, "turns_all": 3, "pairs_all_no_context": 1,
        "pairs_dedup": 3, "turns_dedup": 3, "pairs_dedup_no_context": 1,
    }
    assert ce.pair_counts(turns(), keep=lambda i: i != "d")["pairs_dedup"] == 2
    pairs = ce.evaluation_pairs(turns(), CATALOG, "dedup")
    assert pairs.turn.tolist() == [0, 1, 2] and list(pairs.target_ids) == ["b", "c", "d"]
    assert pairs.target.tolist() == [1, 2, 3] and pairs.has_context.tolist() == [True, True, False]


def scores() -> np.ndarray:
    #                a    b    c    d    e
    return np.array([[9.0, 1.0, 2.0, 3.0, 0.0],   # turn 0 (target b): rank 4 of 5, rank 3 with a excluded
                     [9.0, 8.0, 7.0, 0.0, 0.0],   # turn 1 (targets a, c): a 1st; c 3rd, 1st once a, b are excluded
                     [0.0, 0.0, 0.0, 5.0, 0.0]])  # turn 2 (target d): 1st


def test_recall_all_protocol_keeps_context_items() -> None:
    report = ce.evaluate(scores(), turns(), CATALOG, "all", ks=(1, 3))
    assert report.ranks.tolist() == [4, 1, 3, 1]
    assert report.recall == {1: 0.5, 3: 0.75}
    assert report.n_pairs == 4 and report.n_turns == 3 and report.n_no_context == 1
    assert report.recall_no_context == {1: 1.0, 3: 1.0}


def test_recall_dedup_drops_repeats_and_excludes_the_context() -> None:
    report = ce.evaluate(scores(), turns(), CATALOG, "dedup", ks=(1, 3))
    assert report.ranks.tolist() == [3, 1, 1]  # b behind d, c; c first once a and b are out
    assert report.recall == {1: 2 / 3, 3: 1.0}
    kept = ce.evaluate(scores(), turns(), CATALOG, "dedup", ks=(1, 3), exclude_context=False)
    assert kept.ranks.tolist() == [4, 3, 1]


def test_ties_are_pessimistic_and_unknown_targets_miss() -> None:
    flat = np.zeros((3, 5))
    report = ce.evaluate(flat, turns(), CATALOG, "all", ks=(1, 5))
    assert report.recall[1] == 0.0 and report.recall[5] == 1.0
    short_catalog = ["a", "b", "c"]  # d is not in it: its pair is a miss, counted
    report = ce.evaluate(scores()[:, :3], turns(), short_catalog, "all", ks=(3,))
    assert report.n_targets_outside == 1 and np.isinf(report.ranks[-1])


def test_popularity_rank_and_in_catalog_rate() -> None:
    popularity = np.array([1.0, 50.0, 40.0, 30.0, 20.0])  # b is rank 1, a rank 5
    report = ce.evaluate(scores(), turns(), CATALOG, "all", popularity=popularity, list_k=1)
    assert report.in_catalog_rate == 1.0
    assert report.avg_popularity_rank == pytest.approx((5 + 5 + 3) / 3)  # tops: a, a, d
    assert ce.popularity_ranks(popularity).tolist() == [5, 1, 2, 3, 4]


def test_free_form_lists_count_invented_items() -> None:
    lists = [["zzz", "b"], ["a", "c", "nope"], []]
    report = ce.evaluate_lists(lists, turns(), CATALOG, "all", ks=(1, 2), list_k=2)
    assert report.ranks.tolist() == [2, 1, 2, np.inf]
    assert report.recall == {1: 0.25, 2: 0.75}
    assert report.in_catalog_rate == pytest.approx(3 / 4)  # the top-2 lists hold zzz, b, a, c
    assert ce.evaluate_lists(lists, turns(), CATALOG, "all").in_catalog_rate == pytest.approx(3 / 5)


def test_scorer_in_batches_equals_the_matrix() -> None:
    table = scores()
    t = turns()
    index = {id(x): k for k, x in enumerate(t)}

    def scorer(batch: list[ce.Turn]) -> np.ndarray:
        return table[[index[id(x)] for x in batch]]

    batched = ce.evaluate_scorer(scorer, t, CATALOG, "dedup", batch=2, ks=(1, 3))
    assert batched.ranks.tolist() == ce.evaluate(table, t, CATALOG, "dedup", ks=(1, 3)).ranks.tolist()


def test_bad_shapes_and_protocols_are_refused() -> None:
    with pytest.raises(ValueError, match="scores must be"):
        ce.evaluate(np.zeros((2, 5)), turns(), CATALOG)
    with pytest.raises(ValueError, match="protocol"):
        ce.evaluation_pairs(turns(), CATALOG, "every")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one list per turn"):
        ce.evaluate_lists([[]], turns(), CATALOG)


def test_excluded_items_are_never_listed() -> None:
    # dedup excludes the context; the top-3 list of turn 1 (context a, b) is c, then d and e tied (d first)
    popularity = np.array([5.0, 4.0, 3.0, 2.0, 1.0])  # ranks a 1 ... e 5
    report = ce.evaluate(scores(), turns(), CATALOG, "dedup", popularity=popularity, list_k=3)
    # tops: turn 0 (context a): d, c, b -> 4, 3, 2; turn 1: c, d, e -> 3, 4, 5; turn 2: d, a, b -> 4, 1, 2
    assert report.avg_popularity_rank == pytest.approx((4 + 3 + 2 + 3 + 4 + 5 + 4 + 1 + 2) / 9)
    assert report.in_catalog_rate == 1.0


@pytest.mark.realdata
def test_redial_test_split_pair_counts() -> None:
    """The issue's "straightforward reading" of the ReDial test split: 4,969 / 4,498 pairs."""
    from tastemaker.data.loaders.redial import load_redial

    dataset = load_redial(split="test")
    t = ce.turns_from_frame(dataset.extras["dialogues"])
    counts = ce.pair_counts(t)
    assert (counts["pairs_all"], counts["pairs_dedup"], counts["evaluation_turns"]) == (4969, 4498, 3671)
    assert counts["pairs_dedup_no_context"] == 977  # a fifth of the pairs have no movie before them
    head = t[:200]  # a constant scorer earns nothing (pessimistic ties); every target is in the catalog
    report = ce.evaluate(np.zeros((len(head), dataset.n_items), np.float32), head, dataset.catalog["item_id"].tolist(), "all",
                         popularity=np.ones(dataset.n_items))
    assert report.recall == {1: 0.0, 10: 0.0, 50: 0.0} and report.n_targets_outside == 0


@pytest.mark.realdata
def test_redial_splits_join_with_plus() -> None:
    from tastemaker.data.loaders.redial import load_redial

    joined = load_redial(split="train+valid").extras["dialogues"]
    sizes = {s: len(load_redial(split=s).extras["dialogues"]) for s in ("train", "valid")}
    assert joined["split"].value_counts().to_dict() == sizes
    with pytest.raises(ValueError, match="'train\\+tset'"):
        load_redial(split="train+tset")
