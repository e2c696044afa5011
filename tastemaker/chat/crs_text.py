"""Text features of dialogues for :mod:`tastemaker.chat.crs_model`: a genre lexicon, era words,
a small sublinear TF-IDF, turn weights, and the link from one catalog's titles to another's
(a dialogue catalog onto an interaction dataset such as MovieLens, by title and year).

The lexicon maps everyday words ("scary", "funny", "kids") onto MovieLens' genre names. It is
a hand-made list, written for English movie talk; other domains pass their own ``patterns``.
"""

from __future__ import annotations

import re
import urllib.parse
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from tastemaker.chat.crs_eval import Turn
from tastemaker.chat.linking import split_title, title_key, title_names

MENTION_TEXT = re.compile(r"@\d+")
_WORD = re.compile(r"[a-z][a-z0-9']+")
STOPWORDS = frozenset(
    """i me my we our you your he she it they them this that these those am is are was were be been being have has had
    do does did a an the and but if or because as until while of at by for with about against between into through
    during before after to from up down in out on off over under again then once here there when where why how all any
    both each few more most other some such no nor not only own same so than too very can will just should now im i'm
    it's its you're that's don't hi hello hey yes yeah ok okay thanks thank""".split()
)
#: everyday words for each MovieLens genre (regular expressions, matched case-blind at a word start)
GENRE_WORDS: dict[str, str] = {
    "Action": r"action|fight|explosion|martial art|kung fu|superhero|marvel",
    "Adventure": r"adventure|quest|superhero|marvel|treasure",
    "Animation": r"animat|cartoon|pixar|anime|disney|dreamworks",
    "Children": r"kids?\b|children|child\b|family|disney|pixar|cartoon|little ones|son\b|daughter",
    "Comedy": r"comed|funny|laugh|hilarious|humou?r|silly|goofy|lighthearted|light hearted",
    "Crime": r"crime|gangster|mob\b|mafia|heist|detective|cops?\b",
    "Documentary": r"documentar|docu",
    "Drama": r"drama|emotional|tear ?jerker|sad\b|\bcry",
    "Fantasy": r"fantasy|magic|wizard|dragon|fairy",
    "Horror": r"horror|scary|scare|creepy|frighten|gore|gory|slasher|zombie|haunt|ghost|spooky|terrify",
    "Musical": r"musical|singing|\bmusic",
    "Mystery": r"myster|whodunit|twist|detective",
    "Romance": r"romance|romantic|rom ?com|love story|chick flick|date night|love movie",
    "Sci-Fi": r"sci ?-?fi|science fiction|space|alien|futur|robot|time travel",
    "Thriller": r"thriller|suspense|psychological|edge of (my|your) seat",
    "War": r"\bwar\b|military|soldier|ww2|wwii|world war",
    "Western": r"western|cowboy",
}
#: era words -> the year they point at ("new" is the catalog's newest year, filled in at fit time)
ERA_WORDS: dict[str, int | None] = {
    r"\b(old|older|classic|classics|oldies)\b": 1975, r"\b(70s|70's|seventies)\b": 1975,
    r"\b(80s|80's|eighties)\b": 1985, r"\b(90s|90's|nineties)\b": 1995, r"\b2000s\b": 2005,
    r"\b(new|newer|recent|latest|current|this year|in theaters|theater)\b": None,
}


def compile_genres(patterns: Mapping[str, str] = GENRE_WORDS) -> list[tuple[str, re.Pattern[str]]]:
    return [(genre, re.compile(r"\b(?:" + p + ")", re.I)) for genre, p in patterns.items()]


def words(text: str) -> list[str]:
    """Lower-case content words, ``@id`` mentions and :data:`STOPWORDS` dropped."""
    return [w for w in _WORD.findall(MENTION_TEXT.sub(" ", text.lower())) if w not in STOPWORDS]


def l2_rows(m: Any) -> Any:
    """Rows scaled to unit L2 norm (zero rows stay zero); sparse in, sparse out."""
    if sp.issparse(m):
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        return (sp.diags(1 / np.where(norms > 0, norms, 1)) @ m).tocsr()
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(norms > 0, norms, 1)


def zscore_rows(m: np.ndarray) -> np.ndarray:
    """Each row centred and scaled to unit deviation (a constant row becomes 0)."""
    m = np.asarray(m, dtype=np.float32)
    sd = m.std(axis=1, keepdims=True)
    return (m - m.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)


def turn_weights(turn: Turn, decay: float, seeker: float = 1.0, recommender: float = 0.5) -> np.ndarray:
    """Weight of each context turn: ``decay ** age`` (the latest turn 1), times the speaker's weight."""
    n = len(turn.context)
    return np.array(
        [decay ** (n - 1 - i) * (seeker if u.speaker == "seeker" else recommender) for i, u in enumerate(turn.context)],
        np.float32,
    )


class Tfidf:
    """Sublinear TF-IDF over :func:`words`, rows L2-normalised (sparse). State: ``vocabulary``
    (sorted words) and ``idf``."""

    vocabulary: dict[str, int]
    idf: np.ndarray

    def fit(self, docs: Sequence[str], min_df: int = 2) -> Tfidf:
        df = Counter(w for d in docs for w in set(words(d)))
        kept = sorted(w for w, c in df.items() if c >= min_df)
        return self.restore(np.asarray(kept, dtype=str),
                            np.array([np.log((1 + len(docs)) / (1 + df[w])) + 1 for w in kept], np.float32))

    def restore(self, vocabulary: np.ndarray, idf: np.ndarray) -> Tfidf:
        self.vocabulary = {str(w): k for k, w in enumerate(vocabulary)}
        self.idf = np.asarray(idf, np.float32)
        return self

    def transform(self, docs: Sequence[str]) -> sp.csr_matrix:
        rows, cols, vals = [], [], []
        for r, d in enumerate(docs):
            for w, tf in Counter(w for w in words(d) if w in self.vocabulary).items():
                rows.append(r)
                cols.append(self.vocabulary[w])
                vals.append(1 + np.log(tf))
        m = sp.csr_matrix((vals, (rows, cols)), shape=(len(docs), len(self.vocabulary)), dtype=np.float32)
        return l2_rows(m.multiply(self.idf[None, :]).tocsr())


# ---------------------------------------------------------------------- catalog to catalog
def clean_title(title: str) -> str:
    """Whitespace collapsed and URL escapes undone (ReDial writes "?" as %3F)."""
    return " ".join(urllib.parse.unquote(str(title)).split())


def title_year(title: str) -> int | None:
    return split_title(clean_title(title))[1]


def _keys(title: str) -> tuple[list[str], list[str], int | None]:
    """(keys of the title and its alternatives, keys of the part before a subtitle, year)."""
    body, year = split_title(clean_title(title))
    names = title_names(body)
    keys = [k for k in dict.fromkeys(title_key(n) for n in names) if k]
    main = names[0] if names else body
    shorts = [k for k in dict.fromkeys(title_key(main.split(s, 1)[0]) for s in (":", " - ") if s in main) if k]
    return keys, shorts, year


def link_titles(titles: Sequence[str], other_titles: Sequence[str]) -> np.ndarray:
    """Row of ``other_titles`` for each of ``titles`` (-1 when none). Tried in order: the same
    title key (or alternative title) and year, year +-1; the name before a subtitle on either
    side against the other's name, year +-1; the name alone when the other catalog has it once
    (crowd-made entries such as ReDial's often carry a wrong year, or none)."""
    exact: dict[tuple[str, int | None], int] = {}
    short: dict[tuple[str, int | None], int] = {}
    by_name: dict[str, set[int]] = {}
    for row, title in enumerate(other_titles):
        keys, shorts, year = _keys(title)
        for key in keys:
            exact.setdefault((key, year), row)
            by_name.setdefault(key, set()).add(row)
        for key in shorts:
            short.setdefault((key, year), row)
    out = np.full(len(titles), -1, dtype=np.int64)
    for r, title in enumerate(titles):
        keys, shorts, year = _keys(title)
        found = None
        if year is not None:
            years = (year, year - 1, year + 1)
            tries = [(exact, (k, y)) for k in keys for y in years]
            tries += [(short, (keys[0], y)) for y in years] if keys else []
            tries += [(exact, (k, y)) for k in shorts for y in years]
            found = next((lookup[key] for lookup, key in tries if key in lookup), None)
        if found is None:
            found = next((next(iter(by_name[k])) for k in keys if len(by_name.get(k, ())) == 1), None)
        out[r] = -1 if found is None else found
    return out
