"""ReDial (Li et al., NeurIPS 2018): conversational movie recommendation dialogues.

Files: ``movies_with_mentions.csv`` (``movieId,movieName,nbMentions``) and one JSON Lines file
per split, ``<split>_data.jsonl`` (any ``<split>_data*`` name, plain or .gz, e.g. the official
``test_data`` or a ``train_data_sample500.jsonl.gz``). A dialogue line has ``conversationId``,
``initiatorWorkerId``, ``respondentWorkerId``, ``messages`` (``text`` mentions movies as
``@<movieId>``), ``movieMentions`` ({id: title}) and ``initiatorQuestions`` /
``respondentQuestions`` ({id: {"suggested", "seen", "liked"}}, where 2 means "did not say").

* Interactions: one per movie in each dialogue's ``initiatorQuestions``: ``user`` = the seeker
  (``initiatorWorkerId``), ``item`` = the movie id, ``event_type`` = ``"liked"`` /
  ``"disliked"`` / ``"mentioned"`` for liked = 1 / 0 / 2, and ``value`` = 1.0 / 0.0 / 0.5.
  ``timestamp`` is the order: dialogues in file order (splits train, valid, test), and within
  one the order of first mention in the messages. Extra columns ``conversation_id``,
  ``suggested``, ``seen``.
* Catalog: the movie list (``title`` with runs of spaces collapsed, ``nb_mentions``), plus
  titles from ``movieMentions`` for mentioned movies the list lacks.
* ``extras["dialogues"]``: a DataFrame with ``conversation_id``, ``initiator``,
  ``respondent``, ``messages`` (list of dicts), ``movie_mentions`` (dict),
  ``initiator_questions``, ``respondent_questions`` (dicts) and ``split``.

``split`` is ``"test"``, ``"train"``, ``"valid"``, several joined by ``+`` (``"train+valid"``,
what a model is fitted on before testing) or ``"all"`` (every split file found).
A dialogue line lacking ``conversationId``, ``initiatorWorkerId`` or a ``messages`` list is a
bad row.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from tastemaker.data.dataset import Dataset
from tastemaker.data.loaders._files import Member, locate
from tastemaker.data.validate import Field, OnError, RowErrors, read_delimited, read_json_lines
from tastemaker.errors import MissingDataError

SPLITS = ("train", "valid", "test")
_MENTION = re.compile(r"@(\d+)")
_LIKED: dict[object, tuple[str, float]] = {1: ("liked", 1.0), 0: ("disliked", 0.0), 2: ("mentioned", 0.5)}
_REQUIRED = ("conversationId", "initiatorWorkerId", "messages")


def load_redial(
    path: str | Path | None = None,
    *,
    split: str = "test",
    on_error: OnError = "raise",
    download: bool = False,
    cache_dir: str | Path | None = None,
) -> Dataset:
    """ReDial dialogues of one split, several (``"train+valid"``) or all of them (see the module doc)."""
    wanted = list(SPLITS) if split == "all" else [s.strip() for s in str(split).split("+")]
    bad = [s for s in wanted if s not in SPLITS]
    if bad or not wanted:
        raise ValueError(f"split must be one of {(*SPLITS, 'all')} or several joined by '+', not {split!r}")
    expects = ([] if split == "all" else [f"{s}_data*" for s in wanted]) + ["movies_with_mentions.csv"]
    files = locate("redial", path, expects, download=download, cache_dir=cache_dir)
    if split == "all":
        members = {s: m for s in SPLITS if (m := files.find(f"{s}_data*")) is not None}
    else:
        members = {s: files.get(f"{s}_data*", main=len(wanted) == 1) for s in wanted}
    if not members:
        raise MissingDataError(f"{files.root}: no dialogue file (expected one of test_data*, train_data*, valid_data*)")
    errors = RowErrors(on_error)
    dialogues = pd.DataFrame(
        [d for s, member in members.items() for d in _read_split(member, s, errors)],
        columns=[
            "conversation_id",
            "initiator",
            "respondent",
            "messages",
            "movie_mentions",
            "initiator_questions",
            "respondent_questions",
            "split",
        ],
    )
    movies = read_delimited(
        files.get("movies_with_mentions.csv"),
        [Field("movieId", "id"), Field("movieName"), Field("nbMentions", "int")],
        errors=errors,
        header=True,
        quoting=True,
    )
    catalog = pd.DataFrame(
        {
            "item_id": movies["movieId"],
            "title": movies["movieName"].str.split().str.join(" "),
            "nb_mentions": movies["nbMentions"],
        }
    )
    known = set(catalog["item_id"].tolist())
    extra = {
        str(i): " ".join(str(t).split())
        for mentions in dialogues["movie_mentions"]
        for i, t in mentions.items()
        if str(i) not in known
    }
    if extra:
        catalog = pd.concat(
            [catalog, pd.DataFrame({"item_id": list(extra), "title": list(extra.values())})], ignore_index=True
        )
        catalog["nb_mentions"] = catalog["nb_mentions"].astype("Int64")
    interactions = pd.DataFrame(
        _events(dialogues), columns=["user", "item", "event_type", "value", "conversation_id", "suggested", "seen"]
    )
    return Dataset.from_frames(
        interactions, catalog, name=f"redial/{split}", extras={"dialogues": dialogues, **errors.extras("redial")}
    )


def _read_split(member: Member, split: str, errors: RowErrors) -> list[tuple[Any, ...]]:
    rows = []
    for line, record in read_json_lines(member, errors=errors):
        missing = [k for k in _REQUIRED if not isinstance(record, dict) or record.get(k) in (None, "")]
        if missing or not isinstance(record["messages"], list):
            problem = f"dialogue lacks {missing}" if missing else "messages is not a list"
            errors.add(problem, file=member.label, line=line, reason="bad dialogue")
            continue
        rows.append(
            (
                str(record["conversationId"]),
                str(record["initiatorWorkerId"]),
                str(record.get("respondentWorkerId", "")),
                record["messages"],
                _as_dict(record.get("movieMentions")),
                _as_dict(record.get("initiatorQuestions")),
                _as_dict(record.get("respondentQuestions")),
                split,
            )
        )
    return rows


def _as_dict(value: object) -> dict[str, Any]:
    """The questions and mentions are objects, or ``[]`` when a dialogue has none."""
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def _events(dialogues: pd.DataFrame) -> list[tuple[Any, ...]]:
    events = []
    for row in dialogues.itertuples(index=False):
        texts = [str(m.get("text", "")) if isinstance(m, dict) else "" for m in row.messages]
        mentioned = [movie for text in texts for movie in _MENTION.findall(text)]
        order = {movie: i for i, movie in reversed(list(enumerate(mentioned)))}
        for movie in sorted(row.initiator_questions, key=lambda m: order.get(m, len(order))):
            answers = row.initiator_questions[movie] if isinstance(row.initiator_questions[movie], dict) else {}
            event, value = _LIKED.get(answers.get("liked"), _LIKED[2])
            events.append(
                (row.initiator, movie, event, value, row.conversation_id, answers.get("suggested"), answers.get("seen"))
            )
    return events
