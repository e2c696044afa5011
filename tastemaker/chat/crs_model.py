"""The dialogue recommender: scores a whole catalog from a dialogue's context (CARE's external
recommender, with the dialogue text as well as its entity sequence).

Fitted in two parts, so that cross-fitting re-fits only the cheap one:

* :meth:`DialogueModel.fit_items`: the catalog side. Titles and years, genres (the catalog's,
  plus those of the interaction dataset's linked items), descriptions encoded by a text
  encoder, title words, and, when an interaction dataset is given (e.g. ml-latest-small for a
  movie catalog), the link to it by title and year (:func:`~tastemaker.chat.crs_text.link_titles`),
  its popularity and an EASE model of its ratings over the linked items;
* :meth:`DialogueModel.fit_dialogues`: the dialogue side, from training dialogues' turns and
  mentions: popularity, co-occurrence of mentions, CARE's entity-sequence model (EASE over
  each dialogue's mention set), genre words -> the items recommended after them, and the
  training contexts for a TF-IDF k-NN.

**Scorers** (:data:`SCORERS`; each a matrix turns x catalog from the context only, z-scored
per turn): priors (``pop``: training mentions; ``pop_smoothed``: the same smoothed by a
Poisson model of the counts on the linked popularity and release-year bins, so unmentioned
items get a graded prior; ``ml_pop_recent``: linked popularity over the dataset's last four
years); the context's items (``cooc``, ``dialogue_ease``, ``ml_ease``, and similarity of
the context's items by description ``item_content``, genres ``item_genre``, title words
``item_title`` and release year ``item_year``); and the context's text (``genre_words``:
lexicon genres; ``genre_words_to_movies``: those genres -> the items recommended after them
in training; ``text_knn``: training turns with a similar context vote for what was
recommended there; ``era_words``: "80s", "new" -> years; ``encoder``: the encoder's cosine
between the context, with ``@id`` replaced by titles, and each description). Context items
are weighted by recency (0.5 per turn) and halved when only the recommender mentioned them;
text by 0.8 per turn.

:meth:`DialogueModel.score` blends them with :attr:`DialogueModel.weights`, by default
:data:`DEFAULT_WEIGHTS` for the encoder's kind: those ``benchmarks/chat.py`` tunes on cross-fitted ReDial training
turns (:func:`~tastemaker.chat.crs_eval.tune_weights`), so they fit movie dialogues in
English; re-tune them for other data. Persisted by :meth:`save` / :meth:`load` (arrays, no
pickle; the EASE models as model artifacts). The pipeline source ``kind = "dialogue"``
(:mod:`tastemaker.chat.source`) wraps it.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import minimize

from tastemaker.chat.crs_eval import Turn, Utterance, extract_turns
from tastemaker.chat.crs_text import (ERA_WORDS, GENRE_WORDS, MENTION_TEXT, Tfidf, clean_title, compile_genres, l2_rows,
                                      link_titles, title_year, turn_weights, zscore_rows)
from tastemaker.data.dataset import Dataset
from tastemaker.types import FitOptions, Query

PRIORS = ("pop", "pop_smoothed", "ml_pop_recent")
MOVIE_ONLY = ("cooc", "dialogue_ease", "ml_ease", "item_content", "item_genre", "item_title", "item_year")
TEXT = ("genre_words", "genre_words_to_movies", "text_knn", "era_words", "encoder")
SCORERS = PRIORS + MOVIE_ONLY + TEXT
#: per encoder kind, tuned by ``benchmarks/chat.py`` on cross-fitted ReDial training turns
#: (R@10 + R@50, dedup); the TF-IDF encoder's text is too noisy to earn the encoder a weight
DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    "minilm": {
        "pop": 0.75, "pop_smoothed": 3.0, "ml_pop_recent": 1.5, "cooc": 0.5, "dialogue_ease": 0.1, "ml_ease": 2.0,
        "item_content": 1.5, "item_genre": 5.0, "item_title": 1.0, "item_year": 0.5, "genre_words": 3.0,
        "genre_words_to_movies": 1.5, "era_words": 2.0, "encoder": 3.0,
    },
    "tfidf": {
        "pop": 1.0, "pop_smoothed": 3.0, "ml_pop_recent": 0.75, "cooc": 0.75, "dialogue_ease": 0.2, "ml_ease": 1.5,
        "item_content": 3.0, "item_genre": 3.0, "item_title": 1.0, "genre_words": 3.0, "genre_words_to_movies": 1.0,
        "era_words": 2.0,
    },
}


def encoder_kind(encoder: Any) -> str:
    """``"minilm"`` for a MiniLM sentence encoder, else ``"tfidf"`` (the defaults' keys)."""
    return "minilm" if encoder is not None and "MiniLM" in type(encoder).__name__ else "tfidf"


_YEAR_BINS = ((0, 1980), (1980, 1990), (1990, 2000), (2000, 2005), (2005, 2010), (2010, 2014), (2014, 2016),
              (2016, 2017), (2017, 2018), (2018, 3000))
Dialogue = tuple[str, Sequence[Utterance]]
_ERA_PATTERNS = [(re.compile(p, re.I), year) for p, year in ERA_WORDS.items()]  # compiled once, not per request


def _csr_arrays(prefix: str, m: sp.csr_matrix) -> dict[str, np.ndarray]:
    m = sp.csr_matrix(m)
    return {f"{prefix}.data": m.data, f"{prefix}.indices": m.indices, f"{prefix}.indptr": m.indptr,
            f"{prefix}.shape": np.asarray(m.shape)}


def _csr(arrays: Mapping[str, np.ndarray], prefix: str) -> sp.csr_matrix:
    return sp.csr_matrix((arrays[f"{prefix}.data"], arrays[f"{prefix}.indices"], arrays[f"{prefix}.indptr"]),
                         shape=tuple(int(x) for x in arrays[f"{prefix}.shape"]))


class DialogueModel:
    """Scores a catalog from dialogue contexts (module doc). ``encoder``: a fitted
    :class:`~tastemaker.content.encoders.TextEncoder` (None: a TF-IDF + SVD encoder fitted on
    the descriptions and, later, nothing else); ``weights``: scorer -> weight."""

    def __init__(self, encoder: Any | None = None, *, weights: Mapping[str, float] | None = None,
                 threads: int = 1, genre_words: Mapping[str, str] = GENRE_WORDS) -> None:
        unknown = sorted(set(weights or {}) - set(SCORERS))
        if unknown:
            raise ValueError(f"unknown scorer(s) {unknown} in weights; choose from {', '.join(SCORERS)}")
        self.encoder = encoder
        self.weights = dict(DEFAULT_WEIGHTS[encoder_kind(encoder)] if weights is None else weights)
        self.threads = threads
        self.genre_names = list(genre_words)
        self.genre_patterns = compile_genres(genre_words)

    # ------------------------------------------------------------------ the catalog side
    def fit_items(self, item_ids: Sequence[str], titles: Sequence[str], *,
                  categories: Sequence[Sequence[str]] | None = None, interactions: Dataset | None = None) -> DialogueModel:
        """Fit the catalog side (module doc). ``interactions``: a dataset with titles whose
        items are linked to these by title and year (its ratings, popularity and genres)."""
        self.item_ids = [str(i) for i in item_ids]
        self.index = {i: k for k, i in enumerate(self.item_ids)}
        self.n = n = len(self.item_ids)
        self.titles = [clean_title(t) for t in titles]
        years = np.array([title_year(t) or np.nan for t in self.titles], np.float32)
        self.years = np.nan_to_num(years, nan=float(np.nanmedian(years)) if np.isfinite(years).any() else 2000.0)
        self.newest = int(np.nanmax(years)) - 1 if np.isfinite(years).any() else 2017
        genres = np.zeros((n, len(self.genre_names)), np.float32)
        column = {g: j for j, g in enumerate(self.genre_names)}
        item_categories = [list(c or ()) for c in categories] if categories is not None else [[] for _ in range(n)]
        tags: list[list[str]] = [[] for _ in range(n)]
        ml_count = ml_recent = ml_liked = np.zeros(n, np.float32)
        linked = np.zeros(n, bool)
        self.ml_ease = None
        self.ml_id_of: list[str | None] = [None] * n
        if interactions is not None:
            other = interactions.catalog
            link = link_titles(self.titles, other["title"].astype(str).tolist())
            linked = link >= 0
            other_categories = other["categories"].tolist() if "categories" in other else [[]] * len(other)
            other_tags = other["tags"].tolist() if "tags" in other else [[]] * len(other)
            for k in np.flatnonzero(linked):
                item_categories[k] = list(dict.fromkeys([*item_categories[k], *(other_categories[link[k]] or ())]))
                raw = other_tags[link[k]]
                tags[k] = [str(t) for t in list(raw)[:8]] if isinstance(raw, list | tuple | np.ndarray) else []
            ml_count, ml_recent, ml_liked = self._linked_counts(interactions, link, linked)
            self.ml_id_of = [str(other["item_id"].iloc[link[k]]) if linked[k] else None for k in range(n)]
            self.ml_ease = self._fit_ease(interactions, link, linked)
        for k, cats in enumerate(item_categories):
            for c in cats:
                if c in column:
                    genres[k, column[c]] = 1.0
        self.genres = genres / np.sqrt(np.maximum(genres.sum(1, keepdims=True), 1))
        self.ml_count_recent = ml_recent
        columns = [np.log1p(ml_count), np.log1p(ml_recent), np.log1p(ml_liked), linked.astype(np.float32),
                   np.isnan(years).astype(np.float32)]
        columns += [((self.years >= a) & (self.years < b)).astype(np.float32) for a, b in _YEAR_BINS]
        self.prior_features = np.stack(columns, 1)
        self.linked = linked
        plain = [title.rsplit(" (", 1)[0] if title_year(title) else title for title in self.titles]
        self.title_words = Tfidf().fit(plain, min_df=1).transform(plain)
        self.descriptions = [self._description(k, item_categories[k], tags[k]) for k in range(n)]
        if self.encoder is None:
            from tastemaker.content.tfidf import TfidfSvdEncoder

            self.encoder = TfidfSvdEncoder(dimension=min(128, max(2, n - 1)), min_df=1 if n < 50 else 2).fit(self.descriptions)
        self.item_vectors = np.asarray(self.encoder.encode(self.descriptions), np.float32)
        return self

    def _description(self, k: int, categories: Sequence[str], tags: Sequence[str]) -> str:
        text = self.titles[k]
        if categories:
            text += ". Genres: " + ", ".join(categories)
        if tags:
            text += ". Tags: " + ", ".join(tags)
        return text

    def _linked_counts(self, interactions: Dataset, link: np.ndarray, linked: np.ndarray) -> tuple[np.ndarray, ...]:
        inter = interactions.interactions
        codes = inter["item"].to_numpy()
        other_codes = interactions.catalog["item"].to_numpy()
        size = int(max(codes.max(initial=0), other_codes.max(initial=0))) + 1
        stamps = inter["timestamp"].to_numpy(dtype=float) if "timestamp" in inter else np.zeros(len(inter))
        recent = stamps >= np.nanmax(stamps, initial=0.0) - 4 * 365.25 * 86400
        values = inter["value"].to_numpy(dtype=float) if "value" in inter else np.ones(len(inter))
        out = []
        for mask in (np.ones(len(codes), bool), recent, values >= 4.0):
            per_code = np.bincount(codes[mask], minlength=size)
            counts = np.zeros(self.n, np.float32)
            counts[linked] = per_code[other_codes[link[linked]]]
            out.append(counts)
        return tuple(out)

    def _fit_ease(self, interactions: Dataset, link: np.ndarray, linked: np.ndarray, reg: float = 300.0) -> Any:
        from tastemaker.config import model_class

        other = interactions.catalog
        id_of_code = dict(zip(other["item"].to_numpy(), other["item_id"].astype(str), strict=True))
        inter = interactions.interactions
        item = np.array([id_of_code[c] for c in inter["item"].to_numpy()])
        keep = np.isin(item, other["item_id"].astype(str).to_numpy()[link[linked]])
        frame = pd.DataFrame({"user": inter["user"].to_numpy()[keep].astype(str), "item": item[keep]})
        model = model_class("ease")(reg=reg, precision="float32")
        return model.fit(Dataset.from_frames(frame, name=f"{interactions.name}/linked"),
                         FitOptions(progress=False, threads=self.threads))

    # ------------------------------------------------------------------ the dialogue side
    def fit_dialogues(self, dialogues: Sequence[Dialogue]) -> DialogueModel:
        """Fit the dialogue side on ``dialogues`` ((id, turns) pairs, :mod:`~tastemaker.chat.crs_eval`'s form)."""
        from tastemaker.config import model_class

        turns = extract_turns(dialogues)
        mentions = self._mentions(dialogues)
        counts = np.asarray(mentions.sum(0)).ravel()
        self.pop = np.log1p(counts).astype(np.float32)
        self.pop_smoothed = self._smoothed(counts)
        cooc = (mentions.T @ mentions).tocsr()
        cooc.setdiag(0)
        cooc.eliminate_zeros()
        self.cooc = cooc
        targets = self._targets(turns, "dedup")
        self.after_genre = np.log1p(self._context_genres(turns).T @ targets.toarray()).astype(np.float32)
        self.knn_tfidf = Tfidf().fit([t.context_text for t in turns], min_df=2)
        self.knn_contexts = self._knn_contexts(turns)
        self.knn_targets = self._targets(turns, "all")
        rows = [(str(d), i) for d, (_, us) in enumerate(dialogues) for i in {i for u in us for i in u.items if i in self.index}]
        frame = pd.DataFrame(rows, columns=["user", "item"])
        self.dialogue_ease = None
        self.dialogue_id_of: list[str | None] = [None] * self.n
        if len(frame):
            model = model_class("ease")(reg=30.0, precision="float32")
            self.dialogue_ease = model.fit(Dataset.from_frames(frame, name="dialogues/mentions"),
                                           FitOptions(progress=False, threads=self.threads))
            known = set(frame["item"])
            self.dialogue_id_of = [i if i in known else None for i in self.item_ids]
        return self

    def _mentions(self, dialogues: Sequence[Dialogue]) -> sp.csr_matrix:
        rows, cols = [], []
        for d, (_, utterances) in enumerate(dialogues):
            for item in {i for u in utterances for i in u.items if i in self.index}:
                rows.append(d)
                cols.append(self.index[item])
        return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(dialogues), self.n))

    def _targets(self, turns: Sequence[Turn], protocol: Any) -> sp.csr_matrix:
        pairs = [(t, self.index[i]) for t, turn in enumerate(turns) for i in turn.targets_for(protocol) if i in self.index]
        rows, cols = zip(*pairs, strict=True) if pairs else ((), ())
        return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(turns), self.n))

    def _smoothed(self, counts: np.ndarray) -> np.ndarray:
        """log(count + 0.3 * expected count), the expectation from a Poisson regression of the
        counts on the prior features (linked popularity, release-year bins)."""
        z = self.prior_features

        def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
            eta = np.clip(z @ w, -20, 10)
            return float((np.exp(eta) - counts * eta).sum() + 0.1 * w @ w), z.T @ (np.exp(eta) - counts) + 0.2 * w

        w = minimize(loss, np.zeros(z.shape[1]), jac=True, method="L-BFGS-B").x
        return np.log(counts + 0.3 * np.exp(z @ w)).astype(np.float32)

    # ------------------------------------------------------------------ context features
    def context_items(self, turns: Sequence[Turn], decay: float = 0.5, recommender: float = 0.5) -> sp.csr_matrix:
        """Turns x catalog: each context item weighted by ``decay ** (turns since its latest
        mention)``, halved when only the recommender mentioned it there."""
        rows, cols, vals = [], [], []
        for t, turn in enumerate(turns):
            weights: dict[str, float] = {}
            for w, u in zip(turn_weights(turn, decay, 1.0, recommender)[::-1], turn.context[::-1], strict=True):
                for item in u.items:
                    if item in self.index and item not in weights:
                        weights[item] = float(w)
            for item, w in weights.items():
                rows.append(t)
                cols.append(self.index[item])
                vals.append(w)
        return sp.csr_matrix((vals, (rows, cols)), shape=(len(turns), self.n), dtype=np.float32)

    def _context_genres(self, turns: Sequence[Turn], decay: float = 0.8) -> np.ndarray:
        out = np.zeros((len(turns), len(self.genre_names)), np.float32)
        for t, turn in enumerate(turns):
            for w, u in zip(turn_weights(turn, decay), turn.context, strict=True):
                for j, (_, pattern) in enumerate(self.genre_patterns):
                    if pattern.search(u.text):
                        out[t, j] += w
        return out

    def _titled(self, text: str) -> str:
        """``@id`` -> the item's title, so that the encoder reads names."""
        return MENTION_TEXT.sub(lambda m: self.titles[self.index[m.group(0)[1:]]] if m.group(0)[1:] in self.index
                                else "a movie", text)

    def _context_vectors(self, turns: Sequence[Turn], decay: float = 0.8) -> np.ndarray:
        texts = sorted({self._titled(u.text) for t in turns for u in t.context})
        position = {x: k for k, x in enumerate(texts)}
        dim = self.item_vectors.shape[1]
        vectors = np.asarray(self.encoder.encode(texts), np.float32) if texts else np.zeros((0, dim), np.float32)
        out = np.zeros((len(turns), dim), np.float32)
        for t, turn in enumerate(turns):
            for w, u in zip(turn_weights(turn, decay), turn.context, strict=True):
                out[t] += w * vectors[position[self._titled(u.text)]]
        return l2_rows(out)

    def _knn_contexts(self, turns: Sequence[Turn]) -> sp.csr_matrix:
        texts, owner, weight = [], [], []
        for t, turn in enumerate(turns):
            for w, u in zip(turn_weights(turn, 0.8), turn.context, strict=True):
                texts.append(u.text)
                owner.append(t)
                weight.append(w)
        pooled = sp.csr_matrix((weight, (owner, np.arange(len(texts)))), shape=(len(turns), len(texts)))
        return l2_rows(pooled @ self.knn_tfidf.transform(texts))

    def _text_knn(self, turns: Sequence[Turn], k: int = 400) -> np.ndarray:
        similarity = (self._knn_contexts(turns) @ self.knn_contexts.T).toarray()
        if k < similarity.shape[1]:
            kth = -np.partition(-similarity, k - 1, axis=1)[:, k - 1 : k]
            similarity = np.where(similarity >= kth, similarity, 0)
        return np.asarray(similarity @ self.knn_targets.toarray(), np.float32)

    def _era_words(self, turns: Sequence[Turn]) -> np.ndarray:
        out = np.zeros((len(turns), self.n), np.float32)
        eras = [(pattern, year or self.newest) for pattern, year in _ERA_PATTERNS]
        for t, turn in enumerate(turns):
            for w, u in zip(turn_weights(turn, 0.8), turn.context, strict=True):
                for pattern, year in eras:
                    if pattern.search(u.text):
                        out[t] += w * np.exp(-np.abs(self.years - year) / 8.0)
        return out

    def _item_year(self, context: sp.csr_matrix) -> np.ndarray:
        out = np.zeros(context.shape, np.float32)
        coo = context.tocoo()
        for t, k, w in zip(coo.row, coo.col, coo.data, strict=True):
            out[t] += w * np.exp(-np.abs(self.years - self.years[k]) / 5.0)
        return out

    def _model_scores(self, model: Any, turns: Sequence[Turn], id_of: Sequence[str | None]) -> np.ndarray:
        """A fitted model's scores of the catalog (``id_of``: the model's id of each item, None
        where it has none); 0 for a turn whose context has no item the model knows."""
        out = np.zeros((len(turns), self.n), np.float32)
        columns = np.array([k for k, i in enumerate(id_of) if i is not None])
        if model is None or not len(columns):
            return out
        queries = [Query(history=[id_of[self.index[i]] for i in t.context_items if i in self.index and id_of[self.index[i]]],
                         exclude_seen=False) for t in turns]
        out[:, columns] = np.nan_to_num(model.score(queries, [id_of[k] for k in columns]), nan=0.0)
        out[[len(q.history) == 0 for q in queries]] = 0.0
        return out

    # ------------------------------------------------------------------ scoring
    def scorers(self, turns: Sequence[Turn], names: Sequence[str] = SCORERS, dtype: Any = np.float32
                ) -> dict[str, np.ndarray]:
        """Each named scorer's matrix (turns x catalog, z-scored per turn; the priors one row)."""
        unknown = sorted(set(names) - set(SCORERS))
        if unknown:
            raise ValueError(f"unknown scorer(s) {unknown}; choose from {', '.join(SCORERS)}")
        context = self.context_items(turns)
        wanted = set(names)
        genre_words = self._context_genres(turns) if wanted & {"genre_words", "genre_words_to_movies"} else None
        makers: dict[str, Any] = {
            "pop": lambda: self.pop[None, :],
            "pop_smoothed": lambda: self.pop_smoothed[None, :],
            "ml_pop_recent": lambda: np.log1p(self.ml_count_recent)[None, :],
            "cooc": lambda: (context @ self.cooc).toarray(),
            "dialogue_ease": lambda: self._model_scores(self.dialogue_ease, turns, self.dialogue_id_of),
            "ml_ease": lambda: self._model_scores(self.ml_ease, turns, self.ml_id_of),
            "item_content": lambda: (context @ self.item_vectors) @ self.item_vectors.T,
            "item_genre": lambda: (context @ self.genres) @ self.genres.T,
            "item_title": lambda: (context @ self.title_words @ self.title_words.T).toarray(),
            "item_year": lambda: self._item_year(context),
            "genre_words": lambda: genre_words @ self.genres.T,
            "genre_words_to_movies": lambda: genre_words @ self.after_genre,
            "text_knn": lambda: self._text_knn(turns),
            "era_words": lambda: self._era_words(turns),
            "encoder": lambda: self._context_vectors(turns) @ self.item_vectors.T,
        }
        return {name: zscore_rows(np.asarray(makers[name]())).astype(dtype) for name in names}

    def score(self, turns: Sequence[Turn], weights: Mapping[str, float] | None = None) -> np.ndarray:
        """The blend ``sum(weight * scorer)`` for ``turns`` (turns x catalog, float32)."""
        weights = {k: v for k, v in (self.weights if weights is None else weights).items() if v}
        out = np.zeros((len(turns), self.n), np.float32)
        for name, matrix in self.scorers(turns, list(weights)).items():
            out += np.float32(weights[name]) * matrix
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the fitted model under ``path`` (a folder)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays = {"item_ids": np.asarray(self.item_ids, dtype=str), "titles": np.asarray(self.titles, dtype=str),
                  "years": self.years, "genres": self.genres, "prior_features": self.prior_features,
                  "ml_count_recent": self.ml_count_recent, "linked": self.linked, "item_vectors": self.item_vectors,
                  "pop": self.pop, "pop_smoothed": self.pop_smoothed, "after_genre": self.after_genre,
                  "knn_vocabulary": np.asarray(list(self.knn_tfidf.vocabulary), dtype=str), "knn_idf": self.knn_tfidf.idf,
                  "ml_id_of": np.asarray([i or "" for i in self.ml_id_of], dtype=str),
                  "dialogue_id_of": np.asarray([i or "" for i in self.dialogue_id_of], dtype=str)}
        for name in ("title_words", "cooc", "knn_contexts", "knn_targets"):
            arrays |= _csr_arrays(name, getattr(self, name))
        np.savez(path / "arrays.npz", **arrays)
        for name in ("ml_ease", "dialogue_ease"):
            if getattr(self, name) is not None:
                getattr(self, name).save(path / name)
        encoder: dict[str, Any] = {"kind": type(self.encoder).__name__}
        if hasattr(self.encoder, "save") and type(self.encoder).__name__ == "TfidfSvdEncoder":
            self.encoder.save(path / "encoder")
        meta = {"weights": self.weights, "genre_words": dict(zip(self.genre_names, (p.pattern for _, p in self.genre_patterns),
                                                                 strict=True)),
                "newest": self.newest, "encoder": encoder, "has": {n: getattr(self, n) is not None for n in ("ml_ease", "dialogue_ease")}}
        (path / "model.json").write_text(json.dumps(meta, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path, *, encoder: Any | None = None, threads: int = 1) -> DialogueModel:
        """Read what :meth:`save` wrote; ``encoder``: the text encoder, when it was not a
        TF-IDF one saved with the model (MiniLM is loaded from its package)."""
        from tastemaker.artifact import load_model

        path = Path(path)
        meta = json.loads((path / "model.json").read_text())
        if encoder is None:
            kind = meta["encoder"]["kind"]
            if kind == "TfidfSvdEncoder":
                from tastemaker.content.tfidf import TfidfSvdEncoder

                encoder = TfidfSvdEncoder.load(path / "encoder")
            elif kind == "MiniLMEncoder":
                from tastemaker.content.encoders import MiniLMEncoder

                encoder = MiniLMEncoder(threads=threads, progress=False)
            else:
                raise ValueError(f"{path}: the model's encoder is a {kind}; pass it as encoder=")
        model = cls(encoder, weights=meta["weights"], threads=threads)
        model.genre_names = list(meta["genre_words"])
        model.genre_patterns = [(g, re.compile(p, re.I)) for g, p in meta["genre_words"].items()]
        model.newest = int(meta["newest"])
        with np.load(path / "arrays.npz", allow_pickle=False) as npz:
            arrays = dict(npz)
        model.item_ids = [str(i) for i in arrays["item_ids"]]
        model.index = {i: k for k, i in enumerate(model.item_ids)}
        model.n = len(model.item_ids)
        model.titles = [str(t) for t in arrays["titles"]]
        for name in ("years", "genres", "prior_features", "ml_count_recent", "linked", "item_vectors", "pop",
                     "pop_smoothed", "after_genre"):
            setattr(model, name, arrays[name])
        for name in ("title_words", "cooc", "knn_contexts", "knn_targets"):
            setattr(model, name, _csr(arrays, name))
        model.knn_tfidf = Tfidf().restore(arrays["knn_vocabulary"], arrays["knn_idf"])
        model.ml_id_of = [str(i) or None for i in arrays["ml_id_of"]]
        model.dialogue_id_of = [str(i) or None for i in arrays["dialogue_id_of"]]
        for name in ("ml_ease", "dialogue_ease"):
            setattr(model, name, load_model(path / name) if meta["has"][name] else None)
        return model


def cross_fitted(model: DialogueModel, dialogues: Sequence[Dialogue], folds: int = 5, *, dtype: Any = np.float16
                 ) -> tuple[list[Turn], dict[str, np.ndarray]]:
    """Every scorer on the evaluation turns of ``dialogues``, each fold's (dialogue k goes to
    fold ``k % folds``) from a copy of ``model`` whose dialogue side is fitted on the other
    folds, so no turn is scored by a model that saw it: what blend weights are tuned on
    (:class:`~tastemaker.chat.crs_eval.WeightTuner`). The item side is ``model``'s."""
    fold = {d: k % folds for k, (d, _) in enumerate(dialogues)}
    ordered: list[Turn] = []
    parts: list[dict[str, np.ndarray]] = []
    sizes = []
    for k in range(folds):
        fitted = copy.copy(model).fit_dialogues([d for d in dialogues if fold[d[0]] != k])
        held = extract_turns([d for d in dialogues if fold[d[0]] == k])
        parts.append(fitted.scorers(held, dtype=dtype))
        ordered += held
        sizes.append(len(held))
    merged = {name: np.concatenate([np.broadcast_to(p[name], (s, model.n)) for p, s in zip(parts, sizes, strict=True)])
              for name in parts[0]}
    return ordered, merged
