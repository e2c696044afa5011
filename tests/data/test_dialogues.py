"""The generic JSON Lines dialogue loader: its output matches ReDial's, bad lines name themselves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tastemaker.data.loaders.dialogues import load_dialogues
from tastemaker.errors import DataError

DIALOGUES = [
    {"dialogue_id": "d1", "user_id": "u7", "turns": [
        {"speaker": "seeker", "text": "I loved Alien, and @2 was dull", "items": ["1"], "liked": ["1"], "disliked": ["2"]},
        {"speaker": "recommender", "text": "Then try @3", "items": []},
        {"speaker": "seeker", "text": "Seen it. Anything else?"}]},
    {"dialogue_id": 2, "turns": [{"speaker": "seeker", "text": "something funny"},
                                 {"speaker": "recommender", "text": "How about this one?", "items": ["4"]}]},
]


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(json.dumps(r) if not isinstance(r, str) else r for r in rows) + "\n")
    return path


def test_dialogues_load_in_redials_shape(tmp_path: Path) -> None:
    catalog = tmp_path / "items.jsonl"
    catalog.write_text("\n".join(json.dumps({"item_id": str(i), "title": f"Film {i} (199{i})"}) for i in range(1, 6)))
    data = load_dialogues(_write(tmp_path / "d.jsonl", DIALOGUES), catalog=catalog)
    frame = data.extras["dialogues"]
    assert frame["conversation_id"].tolist() == ["d1", "2"]
    first = frame.iloc[0]
    assert first["initiator"] == "u7" and frame.iloc[1]["initiator"] == "seeker:2"
    assert [m["mentions"] for m in first["messages"]] == [["1", "2"], ["3"], []]
    assert [m["speaker"] for m in first["messages"]] == ["seeker", "recommender", "seeker"]
    assert first["movie_mentions"] == {"1": "Film 1 (1991)", "2": "Film 2 (1992)", "3": "Film 3 (1993)"}
    assert {k: v["liked"] for k, v in first["initiator_questions"].items()} == {"1": 1, "2": 0}
    inter = data.interactions
    events = sorted(zip(data.users.decode(inter["user"]), data.items.decode(inter["item"]), inter["event_type"], strict=True))
    assert events == [("u7", "1", "liked"), ("u7", "2", "disliked")]
    assert data.n_items == 5  # the catalog's items, mentioned or not


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"turns": [{"speaker": "seeker", "text": "hi"}]}, "dialogue_id is missing"),
        ({"dialogue_id": "x", "turns": []}, "turns must be a non-empty list"),
        ({"dialogue_id": "x", "turns": [{"speaker": "bot", "text": "hi"}]}, r"turns\[0\]\.speaker must be one of"),
        ({"dialogue_id": "x", "turns": [{"speaker": "seeker", "text": "hi", "items": "12"}]}, r"turns\[0\]\.items must be a list"),
        ("{not json", "bad JSON"),
    ],
)
def test_a_bad_line_names_its_file_and_line(tmp_path: Path, line: object, message: str) -> None:
    path = _write(tmp_path / "bad.jsonl", [DIALOGUES[0], line])
    with pytest.raises(DataError, match=rf"bad\.jsonl, line 2: .*{message}"):
        load_dialogues(path)
    skipped = load_dialogues(path, on_error="skip")
    assert skipped.extras["dialogues"]["conversation_id"].tolist() == ["d1"]
