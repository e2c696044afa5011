"""The dialogue recommender as a pipeline source (``kind = "dialogue"``)::

    [[sources]]
    kind = "dialogue"        # encoder = "tfidf" | "minilm"; interactions = "none" | "ml-latest-small"

Fitted on a dataset with dialogues (``extras["dialogues"]``, the form of the ReDial and the
generic dialogue loaders), over the pipeline's catalog: a
:class:`~tastemaker.chat.crs_model.DialogueModel`, its item side on the catalog's titles and
categories (and, with ``interactions = "ml-latest-small"``, on the bundled MovieLens ratings
linked by title and year), its dialogue side on every dialogue of the dataset.

A query's dialogue is ``Query.context["dialogue"]``: a list of turns, each
``{"speaker": "seeker" | "recommender" (or "user" | "assistant"), "text": str, "items": [ids]}``,
oldest first (:class:`~tastemaker.chat.rerank.ChatRecommender` fills it from the dialogue
state). Without one, the query's history is read as one seeker turn that mentions those items.
Items added to the catalog after fitting score below every fitted item (the model learns items
from dialogues and titles). Each item's reason names the scorer that contributed most to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import field_validator

from tastemaker.chat.crs_eval import Turn, Utterance, redial_utterances
from tastemaker.chat.crs_model import SCORERS, DialogueModel
from tastemaker.data.dataset import Dataset
from tastemaker.pipeline.base import Source, StageConfig, top_codes
from tastemaker.pipeline.context import Resolved
from tastemaker.types import FitOptions, ItemList

_SPEAKERS = {"seeker": "seeker", "user": "seeker", "recommender": "recommender", "assistant": "recommender"}
#: how each scorer words a reason
REASONS = {
    "pop": "often recommended in conversations", "pop_smoothed": "often recommended in conversations",
    "ml_pop_recent": "popular lately", "cooc": "often discussed with what you mentioned",
    "dialogue_ease": "often discussed with what you mentioned",
    "ml_ease": "liked by people who liked what you mentioned", "item_content": "similar to what you mentioned",
    "item_genre": "the same genres as what you mentioned", "item_title": "a title like one you mentioned",
    "item_year": "from the years of what you mentioned", "genre_words": "fits the genres you asked for",
    "genre_words_to_movies": "recommended when people asked for those genres",
    "text_knn": "recommended in similar conversations", "era_words": "from the era you asked for",
    "encoder": "matches what you described",
}


class DialogueSourceConfig(StageConfig):
    """``encoder``: ``"tfidf"`` (TF-IDF + SVD on the descriptions, no extra) or ``"minilm"``
    (the ``text`` extra); ``interactions``: an interaction dataset linked to the catalog by
    title and year (``"ml-latest-small"``, bundled) or ``"none"``; ``weights``: scorer ->
    weight (None: :data:`~tastemaker.chat.crs_model.DEFAULT_WEIGHTS`)."""

    encoder: Literal["tfidf", "minilm"] = "tfidf"
    interactions: Literal["none", "ml-latest-small"] = "none"
    weights: dict[str, float] | None = None

    @field_validator("weights")
    @classmethod
    def _known(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        unknown = sorted(set(value or {}) - set(SCORERS))
        if unknown:
            raise ValueError(f"unknown scorer(s) {unknown}; choose from {', '.join(SCORERS)}")
        return value


def query_turn(query: Any, history: Sequence[str] = ()) -> Turn:
    """The evaluation turn of a query: its ``context["dialogue"]`` (module doc) as the context,
    or its ``history`` as one seeker turn. Raises ValueError naming a malformed turn."""
    raw = (query.context or {}).get("dialogue") if query is not None else None
    if raw is None:
        return Turn("query", 1, (Utterance("seeker", "", tuple(dict.fromkeys(history))),), ())
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise ValueError("context.dialogue must be a list of turns")
    turns = []
    for k, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            raise ValueError(f"context.dialogue[{k}] must be an object with speaker, text and items")
        speaker = _SPEAKERS.get(str(entry.get("speaker", "seeker")))
        if speaker is None:
            raise ValueError(f"context.dialogue[{k}].speaker must be one of {', '.join(_SPEAKERS)}")
        items = entry.get("items", ())
        if not isinstance(items, Sequence) or isinstance(items, str):
            raise ValueError(f"context.dialogue[{k}].items must be a list of item ids")
        turns.append(Utterance(speaker, str(entry.get("text", "") or ""), tuple(dict.fromkeys(str(i) for i in items))))
    return Turn("query", len(turns), tuple(turns), ())


class DialogueSource(Source):
    kind = "dialogue"
    Config = DialogueSourceConfig
    config: DialogueSourceConfig
    model_: DialogueModel

    def _fit(self, dataset: Dataset, options: FitOptions) -> None:
        frame = dataset.extras.get("dialogues")
        if frame is None or not len(frame):
            raise ValueError(f"{dataset.name}: the dialogue source needs a dataset with dialogues "
                             "(extras['dialogues'], as the redial and generic dialogue loaders give)")
        ctx = self.context_
        cats = ctx.categories
        names = ctx.category_names
        categories = [[str(names[c]) for c in cats.indices[cats.indptr[k]: cats.indptr[k + 1]]] for k in range(len(ctx.items))]
        interactions = None
        if self.config.interactions == "ml-latest-small":
            from tastemaker.data.loaders.movielens import load_movielens_latest_small

            interactions = load_movielens_latest_small()
        encoder = None
        if self.config.encoder == "minilm":
            from tastemaker.content.encoders import MiniLMEncoder

            encoder = MiniLMEncoder(threads=options.threads, progress=False)
        model = DialogueModel(encoder, weights=self.config.weights, threads=options.threads or 1)
        model.fit_items(ctx.items.ids.astype(str).tolist(), [str(t) for t in ctx.titles], categories=categories,
                        interactions=interactions)
        dialogues = [(str(r.conversation_id), redial_utterances(r.messages, r.initiator, r.respondent))
                     for r in frame.itertuples(index=False)]
        self.model_ = model.fit_dialogues(dialogues)

    def _turns(self, queries: Sequence[Resolved]) -> list[Turn]:
        ids = self.context_.items.ids
        return [query_turn(q.query, [str(ids[c]) for c in q.history if c < self.model_.n]) for q in queries]

    def _scores(self, queries: Sequence[Resolved]) -> np.ndarray:
        scores = self.model_.score(self._turns(queries))
        extra = len(self.context_.items) - self.model_.n
        if extra > 0:  # items added after fitting: below every fitted item
            floor = scores.min(axis=1, keepdims=True) - 1.0
            scores = np.hstack([scores, np.broadcast_to(floor, (len(scores), extra))])
        return scores

    def retrieve_resolved(self, queries: Sequence[Resolved], k: int) -> list[ItemList]:
        self._check_fitted()
        if not queries:
            return []
        return [self._listed(*top_codes(row, k, q)) for row, q in zip(self._scores(queries), queries, strict=True)]

    def explain(self, query: Resolved, codes: np.ndarray) -> list[str]:
        weights = {k: v for k, v in self.model_.weights.items() if v}
        parts = self.model_.scorers(self._turns([query]), list(weights))
        names = list(parts)
        inside = np.asarray(codes) < self.model_.n
        safe = np.where(inside, codes, 0)
        contributions = np.stack([weights[n] * np.broadcast_to(parts[n], (1, self.model_.n))[0, safe] for n in names])
        best = contributions.argmax(axis=0)
        return [REASONS[names[b]] if ok else "new in the catalog" for b, ok in zip(best, inside, strict=True)]

    def item_categories(self) -> list[list[str]]:
        """Each context item's genres as the model knows them (the catalog's plus those of its
        linked interaction dataset), so the chat can state and filter by them."""
        self._check_fitted()
        names = self.model_.genre_names
        out = [[names[j] for j in np.flatnonzero(row)] for row in self.model_.genres > 0]
        return out + [[] for _ in range(len(self.context_.items) - len(out))]

    # ------------------------------------------------------------------ persistence
    def save_files(self, path: Path) -> None:
        self.model_.save(path / "dialogue-model")

    def load_files(self, path: Path) -> None:
        self.model_ = DialogueModel.load(path / "dialogue-model")
        # a sentence encoder loads its weights lazily, on its first cache miss: load them now,
        # with the version, rather than in the middle of some later request
        getattr(self.model_.encoder, "model", None)
