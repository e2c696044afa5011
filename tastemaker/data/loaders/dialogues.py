"""Conversational datasets in a generic JSON Lines form, so any of them can be evaluated
without code (beside the ReDial loader, whose output this one matches).

One dialogue per line::

    {"dialogue_id": "d1", "user_id": "u7",
     "turns": [{"speaker": "seeker", "text": "I loved Alien, anything like it?",
                "items": ["1214"], "liked": ["1214"]},
               {"speaker": "recommender", "text": "Try Aliens.", "items": ["1200"]}]}

* ``dialogue_id`` (required, text) and ``turns`` (required, a non-empty list);
* per turn: ``speaker`` (required: ``"seeker"`` or ``"recommender"``), ``text`` (required,
  may be empty), ``items`` (optional: ids of the items the turn mentions, in order),
  ``liked`` / ``disliked`` (optional: the seeker's opinion of mentioned items);
* ``user_id`` (optional): the seeker, when known (else ``seeker:<dialogue_id>``).

Item ids may also be written in the text as ``@<item_id>`` (ReDial's convention); both
forms are read and merged. An optional catalog file (``catalog=``, any table
:func:`~tastemaker.data.loaders.load_table` reads, or a JSON Lines file with ``item_id`` and
``title``) gives titles; without one, the catalog is the mentioned ids.

The result has ReDial's shape: interactions are the seeker's opinion of each mentioned item
(``liked`` / ``disliked`` / ``mentioned``, values 1 / 0 / 0.5, in order of first mention),
and ``extras["dialogues"]`` has the columns ``conversation_id``, ``initiator``,
``respondent``, ``messages`` (dicts with ``text``, ``senderWorkerId``, ``messageId``,
``speaker`` and ``mentions``, the turn's item ids), ``movie_mentions`` ({id: title}),
``initiator_questions`` ({id: {"liked": 1 / 0 / 2}}), ``respondent_questions`` and ``split``.
A bad line (missing field, unknown speaker, ids that are not text) names its file and line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from tastemaker.data.dataset import Dataset
from tastemaker.data.loaders._files import Member
from tastemaker.data.validate import OnError, RowErrors, read_json_lines
from tastemaker.errors import DataError

SPEAKERS = ("seeker", "recommender")
_MENTION = re.compile(r"@([A-Za-z0-9_\-:.]+)")


def load_dialogues(path: str | Path, *, catalog: str | Path | None = None, on_error: OnError = "raise",
                   name: str | None = None) -> Dataset:
    """Dialogues in the generic JSON Lines form (see the module doc); ``catalog``: titles."""
    file = Path(path)
    if not file.is_file():
        raise DataError("no such file", file=str(file))
    errors = RowErrors(on_error)
    member = Member(file)
    rows = []
    for line, record in read_json_lines(member, errors=errors):
        parsed = _dialogue(record)
        if isinstance(parsed, str):
            errors.add(parsed, file=member.label, line=line, reason="bad dialogue")
            continue
        rows.append(parsed)
    if not rows:
        raise DataError("no valid dialogue", file=member.label)
    dialogues = pd.DataFrame(rows, columns=["conversation_id", "initiator", "respondent", "messages", "movie_mentions",
                                            "initiator_questions", "respondent_questions", "split"])
    titles = _catalog(catalog) if catalog is not None else {}
    mentioned = {i for mentions in dialogues["movie_mentions"] for i in mentions}
    items = sorted(set(titles) | mentioned)
    frame = pd.DataFrame({"item_id": items, "title": [titles.get(i, "") for i in items]})
    for mentions in dialogues["movie_mentions"]:
        for i in mentions:
            mentions[i] = titles.get(i, "")
    events = []
    for row in dialogues.itertuples(index=False):
        for item, answer in row.initiator_questions.items():
            kind, value = {1: ("liked", 1.0), 0: ("disliked", 0.0)}.get(answer["liked"], ("mentioned", 0.5))
            events.append((row.initiator, item, kind, value, row.conversation_id))
    interactions = pd.DataFrame(events, columns=["user", "item", "event_type", "value", "conversation_id"])
    return Dataset.from_frames(interactions, frame, name=name or f"dialogues/{file.stem}",
                               extras={"dialogues": dialogues, **errors.extras("dialogues")})


def _dialogue(record: Any) -> tuple[Any, ...] | str:
    """One line's ReDial-shaped row, or what is wrong with it."""
    if not isinstance(record, dict):
        return "a dialogue must be a JSON object"
    dialogue_id = record.get("dialogue_id")
    if not isinstance(dialogue_id, str | int) or str(dialogue_id) == "":
        return "dialogue_id is missing"
    turns = record.get("turns")
    if not isinstance(turns, list) or not turns:
        return "turns must be a non-empty list"
    seeker = str(record.get("user_id") or f"seeker:{dialogue_id}")
    recommender = f"recommender:{dialogue_id}"
    messages, order, questions = [], [], {}
    for k, turn in enumerate(turns):
        where = f"turns[{k}]"
        if not isinstance(turn, dict):
            return f"{where} must be an object"
        speaker = turn.get("speaker")
        if speaker not in SPEAKERS:
            return f"{where}.speaker must be one of {SPEAKERS}, got {speaker!r}"
        text = turn.get("text")
        if not isinstance(text, str):
            return f"{where}.text must be text"
        lists = {}
        for key in ("items", "liked", "disliked"):
            value = turn.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str | int) and str(v) for v in value):
                return f"{where}.{key} must be a list of item ids"
            lists[key] = [str(v) for v in value]
        mentions = list(dict.fromkeys(lists["items"] + _MENTION.findall(text)))
        messages.append({"text": text, "senderWorkerId": seeker if speaker == "seeker" else recommender, "messageId": k,
                         "speaker": speaker, "mentions": mentions})
        order += [m for m in mentions if m not in order]
        if speaker == "seeker":
            for item in mentions:
                questions.setdefault(item, {"suggested": 0, "seen": 2, "liked": 2})
            for item in lists["liked"]:
                questions[item] = {"suggested": 0, "seen": 1, "liked": 1}
            for item in lists["disliked"]:
                questions[item] = {"suggested": 0, "seen": 1, "liked": 0}
    ordered = {item: questions[item] for item in order if item in questions}
    return (str(dialogue_id), seeker, recommender, messages, {m: "" for m in order}, ordered, {}, "all")


def _catalog(path: str | Path) -> dict[str, str]:
    file = Path(path)
    if file.suffix in (".jsonl", ".json"):
        out = {}
        for number, line in enumerate(file.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    row = json.loads(line)
                    out[str(row["item_id"])] = str(row.get("title", ""))
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise DataError("a catalog line needs item_id (and title)", file=str(file), line=number) from None
        return out
    table = pd.read_csv(file, dtype=str)
    if "item_id" not in table.columns:
        raise DataError("the catalog needs an item_id column", file=str(file))
    return dict(zip(table["item_id"], table.get("title", pd.Series([""] * len(table))).fillna(""), strict=True))
