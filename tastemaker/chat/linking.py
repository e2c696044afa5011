"""The catalog as the chat sees it (:class:`ChatCatalog`), and entity linking (:class:`EntityLinker`).

**Linking** finds the catalog items a turn mentions, as non-overlapping character spans:

1. ``@<id>`` gold mentions (ReDial's convention) pass through when the id is in the catalog.
2. **Exact** title match on normalised keys: accents folded, case folded, ``&`` read as
   "and", punctuation and spaces dropped ("Spider-Man" = "spiderman"), a leading article
   dropped ("The Matrix" = "Matrix"), a trailing ", The" moved to the front (MovieLens'
   "Matrix, The (1999)"), MovieLens' "(a.k.a. X)" alternative titles indexed too. The longest
   match wins.
3. **Fuzzy** match for what is left, on Title-Case runs only (typos in typed titles):
   candidates share character trigrams, and are scored by ``rapidfuzz`` when it is installed,
   else ``difflib``; a score of at least ``min_fuzzy`` (0.86; 0.92 for one word) links.
4. **Plausibility**: a title made only of common words ("It", "Up", "Get Out") links only
   Title-Cased, and then quoted, followed by a year, or else not at a sentence's start, not
   inside a longer capitalised name and not before "movie(s)"; a one-word title ("Titanic")
   needs a capital and, unless quoted or with a year, not to sit inside a name ("Bruce
   Willis"); a number ("1984") needs quotes or its year; a longer title links Title-Cased, or
   in lower case with two uncommon words ("star wars", not "checking out").
5. **Disambiguation** among items of one title: a year in the text beside the mention
   ("Halloween (1978)", "Halloween 2018", "the 1978 Halloween") wins, exactly or within one
   year; else an age cue nearby ("the old one", "original" / "the new one", "remake") picks the
   earliest / latest; else the more popular item (``log1p(popularity)``) plus ``tie_weight``
   times the embedding similarity between the turn and each item's description (with an
   encoder), so the text decides between items of similar popularity.

On the ReDial test split, with each gold ``@id`` replaced by its title, linking reaches
precision 0.980 / recall 0.990, and 0.937 / 0.926 with the years left out
(``tests/chat/test_chat_linking.py``).
"""

from __future__ import annotations

import difflib
import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from tastemaker.chat.guard import InjectionDetector

if TYPE_CHECKING:
    import pandas as pd

    from tastemaker.content.encoders import TextEncoder
    from tastemaker.data.dataset import Dataset

try:  # optional: a faster, equivalent string similarity
    from rapidfuzz.fuzz import ratio as _rapid_ratio
except ImportError:  # pragma: no cover - depends on the environment
    _rapid_ratio = None

ARTICLES = frozenset({"the", "a", "an"})
_SUFFIX_ARTICLE = re.compile(r"^(.*?),\s*(the|a|an|la|le|les|l'|il|el|der|die|das|los|las|lo)$", re.IGNORECASE)
_YEAR_SUFFIX = re.compile(r"\s*\((\d{4})(?:\s*[-–]\s*\d{0,4})?\)\s*$")
_ALIAS_SUFFIX = re.compile(r"\s*\(([^()]+)\)\s*$")
_TOKEN = re.compile(r"[^\W_]+|&")
_GOLD = re.compile(r"@(\d+)")
_YEAR_AFTER = re.compile(r"^\s*[(\[,]?\s*(?:from|in|of)?\s*((?:19|20)\d{2})(?!\d)\s*[)\]]?")
_YEAR_BEFORE = re.compile(r"(?<!\d)((?:19|20)\d{2})(?:'s)?\s+(?:version\s+of\s+)?$")
_OLD_CUES = frozenset({"old", "older", "original", "classic"})
_NEW_CUES = frozenset({"new", "newer", "remake", "latest", "recent", "reboot"})
_QUOTES = "\"'“”‘’*«»"
# Words of ordinary conversation: a title made only of these ("It", "Up", "Her", "Get Out")
# links only with evidence that it is a title (see the module doc). English function words,
# plus the most frequent words of the ReDial *train* sample's messages, less names.
COMMON_WORDS = frozenset("""
a about above across action actor actors actually add adventure after again against ago agree ah all almost along
already alright also always am amazing among an and animated animation another any anyone anything appreciate are
around as ask at away awesome back bad based be became because become been before behind believe below best bet
better between big bit book both boy boys but by bye call called came can cannot care cause chance change chat
check children choice choices classic classics close come comedies comedy comes coming cool could couldn couple
course crazy creepy cute d dad day days dead definitely did didn die different do documentary does doesn doing
don done dont down drama dramas during each early either else end enjoy enjoyed enough especially even evening
ever every everyone everything example excellent excited eyes face fact fall familiar family fan fantastic fantasy
far fast father favorite favorites feel few fi film films find fine first five flick flicks for forever forward
found four free friend friends from full fun funny game gave genre genres get gets girl girls give glad go god
going gone good goodbye gory got great group guess guy guys had haha half hand hands happy hard has have haven
havent having he head hear heard heart hello help helped helpful helps her here hers hey hi high highly
hilarious him his hmm hmmm hold home hope hoping horror hot house how however huge human humor i idea ideas if
ill im in inside interested interesting into is isn it its itself ive job just keep kid kids kill kind kinda kinds
know known last late lately later least left less let life light like liked line lines list little live ll lol
long look looking looks lost lot lots love loved m made make makes man many may maybe me mean meant men might
mind mine mom mood more morning most mother movie movies much music musical musicals must my myself name need
never new newer next nice night no none nor not nothing now of off oh ok okay old older on once one ones only
open opinion or original other others our out over own part particular people perfect perhaps personally pick
place play please point prefer pretty probably problem psychological quite quot rather re read real really recent
recently recommend recommendation recommendations red remake remember rest reviews rewatch right romance romantic
run s sad said same saw say scary school sci second see seeing seeking seems seen sequel sequels series serious
set she should show shows side similar since so some someone something sometimes son songs soon sorry sort sound
sounds specific start still stop stories story stuff style such suggest suggested suggestion suggestions super
superhero sure suspense sweet t take taken talk talking taste tell than thank thanks that thats the theater
theaters their them theme then there these they thing things think thinking this those though thought three
thriller thrillers through time times title to today together told tonight too took top trailer tried true try
trying turn two type types u under until up upon us usually ve version very wait want wanted war was wasn watch
watched watching water way we week weekend weird welcome well went were what whats when where which while who
whole why will with within without woman women won wonderful work world worth would wow ya yea yeah year years
yep yes yet you young your yours yourself
""".split())
CONNECTORS = frozenset({"of", "the", "a", "an", "and", "in", "on", "to", "for", "with", "at", "from", "by", "or",
                        "is", "vs", "de", "la", "le", "du", "des", "el", "my", "me", "it", "s", "t"})


# ---------------------------------------------------------------------- text normalisation
def fold(text: str) -> str:
    """Accents dropped, case folded."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def split_title(title: str) -> tuple[str, int | None]:
    """``"Toy Story (1995)"`` -> ``("Toy Story", 1995)``; no year -> ``(title, None)``."""
    match = _YEAR_SUFFIX.search(title)
    if match:
        return title[: match.start()].strip(), int(match.group(1))
    return title.strip(), None


def title_names(name: str) -> list[str]:
    """A title without its year, and its alternative titles: ``"Seven (a.k.a. Se7en)"`` ->
    ``["Seven", "Se7en"]``; ``"Matrix, The"`` -> ``["The Matrix"]``."""
    names = []
    rest = name.strip()
    while (match := _ALIAS_SUFFIX.search(rest)) and match.start() > 0:
        names.append(re.sub(r"^\s*a\.k\.a\.\s*", "", match.group(1), flags=re.IGNORECASE))
        rest = rest[: match.start()].strip()
    names.insert(0, rest)
    out = []
    for entry in names:
        moved = _SUFFIX_ARTICLE.match(entry.strip())
        out.append(f"{moved.group(2)} {moved.group(1)}" if moved else entry.strip())
    return [n for n in out if n]


def key_tokens(text: str) -> list[str]:
    """Folded word tokens, ``&`` as ``and``."""
    return ["and" if t == "&" else t for t in _TOKEN.findall(fold(text))]


def title_key(name: str) -> str:
    """The exact-match key of a title (see the module doc): ``"The Lion King"`` -> ``"lionking"``."""
    tokens = key_tokens(name)
    if len(tokens) > 1 and tokens[0] in ARTICLES:
        tokens = tokens[1:]
    return "".join(tokens)


def similarity(a: str, b: str) -> float:
    """String similarity in [0, 1] (rapidfuzz's ratio when installed, else difflib's)."""
    if _rapid_ratio is not None:
        return float(_rapid_ratio(a, b)) / 100.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


# ---------------------------------------------------------------------- the catalog
@dataclass(frozen=True)
class CatalogItem:
    """One item's facts, all taken from the catalog. ``flagged``: the guard does not trust its
    free text (:class:`~tastemaker.chat.guard.InjectionDetector`), so ranking never reads it."""

    item_id: str
    title: str
    year: int | None = None
    genres: tuple[str, ...] = ()
    text: str = ""
    popularity: float = 0.0
    flagged: bool = False

    @property
    def name(self) -> str:
        """The title without its year."""
        return split_title(self.title)[0]

    def facts(self) -> str:
        """``"Toy Story (1995) | Adventure, Animation"``: what an answer may say about it."""
        return " | ".join(p for p in (self.title, ", ".join(self.genres)) if p)

    def description(self) -> str:
        """Title, genres and (unless flagged) free text: what a text encoder or an LLM reads."""
        from tastemaker.content.describe import describe

        return describe({"title": self.title, "categories": list(self.genres), "text": "" if self.flagged else self.text})


class ChatCatalog:
    """The items the chat may talk about, by external id (see :class:`CatalogItem`)."""

    def __init__(self, items: Iterable[CatalogItem], detector: InjectionDetector | None = None) -> None:
        """``items`` (the first of a repeated id wins); each one's title and free text go
        through ``detector`` (default :class:`InjectionDetector`), which sets ``flagged``."""
        detector = detector or InjectionDetector()
        self.items: dict[str, CatalogItem] = {}
        for item in items:
            if item.item_id in self.items:
                continue
            flagged = item.flagged or detector.flagged(f"{item.title}. {item.text}" if item.text else item.title)
            self.items[item.item_id] = item if flagged == item.flagged else replace(item, flagged=flagged)
        self.ids: list[str] = list(self.items)
        self.genres: list[str] = sorted({g for it in self.items.values() for g in it.genres})

    @classmethod
    def from_frame(
        cls, catalog: pd.DataFrame, popularity: Sequence[float] | np.ndarray | None = None,
        detector: InjectionDetector | None = None,
    ) -> ChatCatalog:
        """From catalog rows (``item_id``, ``title``, optional ``categories``, ``year``, ``text``,
        ``description``, ``tags``). ``popularity`` (aligned with the rows) defaults to an
        ``nb_mentions`` or ``popularity`` column, else 0."""
        rows = catalog.to_dict("records")
        if popularity is None:
            column = next((c for c in ("nb_mentions", "popularity") if c in catalog.columns), None)
            popularity = catalog[column].fillna(0).to_numpy(dtype=float) if column else np.zeros(len(rows))
        items = []
        for row, pop in zip(rows, np.asarray(popularity, dtype=float), strict=True):
            title = _text(row.get("title")) or str(row["item_id"])
            year = _year(row.get("year")) or split_title(title)[1]
            listed = row.get("categories")
            genres = tuple(str(g) for g in (listed if isinstance(listed, list | tuple | np.ndarray) else ()) if str(g))
            free = " ".join(_text(row.get(f)) for f in ("text", "description") if _text(row.get(f)))
            items.append(CatalogItem(str(row["item_id"]), title, year, genres, free, float(pop)))
        return cls(items, detector)

    @classmethod
    def from_dataset(
        cls, dataset: Dataset, popularity: Sequence[float] | np.ndarray | None = None,
        detector: InjectionDetector | None = None,
    ) -> ChatCatalog:
        """From a dataset's catalog; popularity defaults to ``nb_mentions`` (ReDial) or the
        number of users per item."""
        if popularity is None and "nb_mentions" not in dataset.catalog.columns:
            popularity = dataset.item_popularity()
        return cls.from_frame(dataset.catalog, popularity, detector)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, item_id: str) -> CatalogItem:
        return self.items[item_id]

    def get(self, item_id: str) -> CatalogItem | None:
        return self.items.get(item_id)

    @property
    def flagged(self) -> list[str]:
        """Ids of the items whose free text the guard flagged."""
        return [i for i, it in self.items.items() if it.flagged]

    def matching(self, genres: Sequence[str] = (), years: tuple[int, int] | None = None,
                 exclude_genres: Sequence[str] = ()) -> list[str]:
        """Ids of items with any of ``genres`` (all items when empty), a year in ``years``
        (inclusive; items without a year are out), and none of ``exclude_genres``."""
        want, avoid = set(genres), set(exclude_genres)
        return [i for i, it in self.items.items() if (not want or want.intersection(it.genres))
                and not avoid.intersection(it.genres)
                and (years is None or (it.year is not None and years[0] <= it.year <= years[1]))]


def _text(value: Any) -> str:
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    return "" if missing else " ".join(str(value).split())


def _year(value: Any) -> int | None:
    try:
        return int(value) if 1800 <= int(value) <= 2100 else None
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------- linking
@dataclass(frozen=True)
class Mention:
    """One linked span: ``text[start:end]`` (``surface``) names ``item_id``. ``method``:
    ``"gold"`` (``@id``), ``"exact"`` or ``"fuzzy"``; ``score``: the string similarity."""

    item_id: str
    start: int
    end: int
    surface: str
    method: Literal["gold", "exact", "fuzzy"]
    score: float = 1.0


class EntityLinker:
    """Links text to catalog items (see the module doc). Building it indexes every title once
    (about 0.2 s for 10k items); :meth:`link` takes well under a millisecond per turn."""

    def __init__(self, catalog: ChatCatalog, *, encoder: TextEncoder | None = None, fuzzy: bool = True,
                 min_fuzzy: float = 0.86, tie_weight: float = 1.0) -> None:
        self.catalog = catalog
        self.encoder = encoder
        self.fuzzy = fuzzy
        self.min_fuzzy = min_fuzzy
        self.tie_weight = tie_weight
        self._keys: dict[str, list[str]] = defaultdict(list)
        for item_id, item in catalog.items.items():
            for name in title_names(split_title(item.title)[0]):
                key = title_key(name)
                if key and item_id not in self._keys[key]:
                    self._keys[key].append(item_id)
        self._max_tokens = min(12, max((len(key_tokens(n)) for it in catalog.items.values()
                                        for n in title_names(it.name)), default=1))
        self._trigrams: dict[str, list[str]] = defaultdict(list)
        for key in self._keys:
            for gram in _grams(key):
                self._trigrams[gram].append(key)
        self._vectors: dict[str, np.ndarray] = {}

    # -------------------------------------------------------------- public
    def link(self, text: str) -> list[Mention]:
        """The items ``text`` mentions, in text order, spans not overlapping."""
        mentions: list[Mention] = []
        for match in _GOLD.finditer(text):
            if match.group(1) in self.catalog:
                mentions.append(Mention(match.group(1), match.start(), match.end(), match.group(0), "gold"))
        masked = _GOLD.sub(lambda m: " " * len(m.group(0)), text)
        tokens = [(m.start(), m.end(), "and" if m.group(0) == "&" else fold(m.group(0)), m.group(0))
                  for m in _TOKEN.finditer(masked)]
        taken = [False] * len(tokens)
        for i, j, keys, score, method in self._spans(masked, tokens, taken):
            item_id, span_end = self._choose(masked, tokens[i][0], tokens[j - 1][1], keys)
            start = tokens[i][0]
            mentions.append(Mention(item_id, start, span_end, text[start:span_end], method, score))
        return sorted(mentions, key=lambda m: m.start)

    def resolve(self, title: str) -> str | None:
        """The item one title names (as an LLM or a user writes it, e.g. ``"Heat (1995)"``),
        or None when nothing in the catalog is close enough."""
        name, year = split_title(title.strip().strip(_QUOTES).strip())
        key = title_key(name)
        if not key:
            return None
        candidates: list[tuple[str, float]] = [(key, 1.0)] if key in self._keys else self._fuzzy_keys(key)
        if not candidates:
            return None
        text = f"{name} ({year})" if year else name
        return self._choose(text, 0, len(name), candidates)[0]

    def search(self, query: str, k: int = 10) -> list[str]:
        """Up to ``k`` item ids whose titles best match ``query`` (exact first, then fuzzy)."""
        key = title_key(split_title(query)[0])
        if not key:
            return []
        scored = [(key, 1.0)] if key in self._keys else []
        scored += [(c, s) for c, s in self._fuzzy_keys(key, floor=0.6) if c != key]
        # then titles that contain the query ("halloween" -> "Halloween II")
        containing = [c for c in self._keys if key in c][:50] if len(key) >= 4 else []
        scored += [(c, 0.5 + 0.1 * len(key) / len(c)) for c in containing if c not in dict(scored)]
        out: list[str] = []
        for candidate, _ in sorted(scored, key=lambda p: -p[1]):
            for item_id in sorted(self._keys[candidate], key=lambda i: -self.catalog[i].popularity):
                if item_id not in out:
                    out.append(item_id)
        return out[:k]

    # -------------------------------------------------------------- spans
    def _spans(self, text: str, tokens: list[tuple[int, int, str, str]], taken: list[bool]
               ) -> list[tuple[int, int, list[tuple[str, float]], float, Literal["exact", "fuzzy"]]]:
        found: list[tuple[int, int, str]] = []
        for i in range(len(tokens)):
            skip = 1 if tokens[i][2] in ARTICLES and i + 1 < len(tokens) else 0
            key = ""
            for j in range(i + skip, min(len(tokens), i + skip + self._max_tokens)):
                key += tokens[j][2]
                if key in self._keys and self._plausible(text, tokens, i, j + 1):
                    found.append((i, j + 1, key))
        found.sort(key=lambda s: (-(s[1] - s[0]), s[0]))
        chosen: list[tuple[int, int, list[tuple[str, float]], float, Literal["exact", "fuzzy"]]] = []
        for i, j, key in found:
            if not any(taken[i:j]):
                taken[i:j] = [True] * (j - i)
                chosen.append((i, j, [(key, 1.0)], 1.0, "exact"))
        if self.fuzzy:
            for i, j, keys in self._fuzzy_spans(text, tokens, taken):
                taken[i:j] = [True] * (j - i)
                chosen.append((i, j, keys, keys[0][1], "fuzzy"))
        return chosen

    def _plausible(self, text: str, tokens: list[tuple[int, int, str, str]], i: int, j: int) -> bool:
        """Whether tokens[i:j] (which match a title's key) read as that title here (module doc, 4)."""
        content = tokens[i + 1 : j] if tokens[i][2] in ARTICLES and j - i > 1 else tokens[i:j]
        start, end = tokens[i][0], tokens[j - 1][1]
        quoted = start > 0 and text[start - 1] in _QUOTES and end < len(text) and text[end] in _QUOTES
        evidence = quoted or bool(_YEAR_AFTER.match(text[end : end + 16]))
        cased = all(t[3][:1].isupper() or t[3][:1].isdigit() or (t[2] in CONNECTORS and k > 0)
                    for k, t in enumerate(content))
        if all(t[2].isdigit() for t in content):
            return evidence  # "1984", "2012", "2": a number is a title only when quoted or with its year
        # a capitalised word inside a longer name ("Bruce Willis", "Steven King", "I Loved Black
        # Swan") is not a one-word title; "Godfather And Scarface" is two
        inside = len(content) == 1 and (
            (j < len(tokens) and tokens[j][3][:1].isupper() and tokens[j][2] not in CONNECTORS
             and text[end : tokens[j][0]].strip() == "")
            or (i > 0 and tokens[i - 1][3][:1].isupper() and tokens[i - 1][2] not in CONNECTORS
                and text[tokens[i - 1][1] : start].strip() == "" and not _sentence_start(text, tokens[i - 1][0])))
        if all(t[2] in COMMON_WORDS for t in content):
            # "Comedy movies", "a Thriller movie": a genre or a word, not the film called that
            followed = j < len(tokens) and tokens[j][2] in {"movie", "movies", "film", "films", "flick", "flicks"}
            return cased and (evidence or not (inside or followed or _sentence_start(text, start)))
        if len(content) == 1 or len("".join(t[2] for t in content)) < 4:
            return cased and (evidence or not inside)
        # in lower case, two uncommon words are needed ("star wars" yes, "checking out" no)
        return cased or evidence or sum(t[2] not in COMMON_WORDS for t in content) >= 2

    def _fuzzy_spans(self, text: str, tokens: list[tuple[int, int, str, str]], taken: list[bool]
                     ) -> list[tuple[int, int, list[tuple[str, float]]]]:
        """Title-Case runs not yet linked, longest sub-span first."""
        def capital(k: int) -> bool:
            return k < len(tokens) and not taken[k] and (tokens[k][3][:1].isupper() or tokens[k][3][:1].isdigit())

        runs: list[tuple[int, int]] = []
        k = 0
        while k < len(tokens):
            end = k
            while capital(end) or (k < end < len(tokens) and tokens[end][2] in CONNECTORS and capital(end + 1)):
                end += 1
            if end > k:
                runs.append((k, min(end, k + 8)))
            k = max(end, k + 1)
        out = []
        for a, b in runs:
            for length in range(b - a, 0, -1):
                hit = None
                for i in range(a, b - length + 1):
                    content = tokens[i : i + length]
                    if content[0][2] in ARTICLES and length > 1:
                        content = content[1:]
                    key = "".join(t[2] for t in content)
                    if len(key) < 6 or content[0][2] in COMMON_WORDS or content[-1][2] in COMMON_WORDS:
                        continue
                    if length == 1 and _sentence_start(text, tokens[i][0]):
                        continue
                    if not self._plausible(text, tokens, i, i + length):
                        continue
                    # one word is easily a near-miss of another ("California", "Kalifornia")
                    keys = self._fuzzy_keys(key, floor=max(self.min_fuzzy, 0.92) if len(content) == 1 else None)
                    if keys:
                        hit = (i, i + length, keys)
                        break
                if hit:
                    out.append(hit)
                    break
        return out

    def _fuzzy_keys(self, key: str, floor: float | None = None) -> list[tuple[str, float]]:
        """Index keys within ``floor`` (default ``min_fuzzy``) of ``key``, best first."""
        floor = self.min_fuzzy if floor is None else floor
        grams = _grams(key)
        counts: dict[str, int] = defaultdict(int)
        for gram in grams:
            for candidate in self._trigrams.get(gram, ()):
                counts[candidate] += 1
        scored = []
        for candidate, shared in counts.items():
            if 2 * shared / (len(grams) + len(_grams(candidate))) >= floor - 0.3:
                score = similarity(key, candidate)
                if score >= floor:
                    scored.append((candidate, score))
        return sorted(scored, key=lambda p: -p[1])[:5]

    # -------------------------------------------------------------- disambiguation
    def _choose(self, text: str, start: int, end: int, keys: list[tuple[str, float]]) -> tuple[str, int]:
        """The item among those of ``keys`` (key, string score) that the span names, and the
        span's end (extended over a year written after it)."""
        after = _YEAR_AFTER.match(text[end : end + 16])
        before = _YEAR_BEFORE.search(text[max(0, start - 16) : start])
        year = int(after.group(1)) if after else int(before.group(1)) if before else None
        if after:
            end += after.end()
            if end < len(text) and text[end] in _QUOTES and text[start - 1 : start] in _QUOTES:
                end += 1
        best_score = keys[0][1]
        candidates = [(item_id, score) for key, score in keys if score >= best_score - 0.02
                      for item_id in self._keys[key]]
        if len(candidates) == 1:
            return candidates[0][0], end

        def year_match(item_id: str) -> int:  # 2: the year written, 1: one year off, 0: no year to go on
            item_year = self.catalog[item_id].year
            return 0 if year is None or item_year is None else 2 if item_year == year else int(abs(item_year - year) <= 1)

        top = max(year_match(i) for i, _ in candidates)
        candidates = [(i, s) for i, s in candidates if year_match(i) == top]
        years = {i: y for i, _ in candidates if (y := self.catalog[i].year) is not None}
        if year is None and len(set(years.values())) > 1:
            # "the old one", "the remake": an age cue near the mention picks the earliest or latest
            near = set(key_tokens(text[max(0, start - 30) : start] + " " + text[end : end + 40]))
            old, new = bool(near & _OLD_CUES), bool(near & _NEW_CUES)
            if old != new:
                pick = min(years.values()) if old else max(years.values())
                candidates = [(i, s) for i, s in candidates if years.get(i) == pick]
        sims = self._similarities(text, [i for i, _ in candidates]) if len(candidates) > 1 else np.zeros(1)
        scores = [math.log1p(self.catalog[i].popularity) + self.tie_weight * float(sim) + s
                  for (i, s), sim in zip(candidates, sims, strict=True)]
        return candidates[int(np.argmax(scores))][0], end

    def _similarities(self, text: str, item_ids: list[str]) -> np.ndarray:
        if self.encoder is None:
            return np.zeros(len(item_ids))
        missing = [i for i in item_ids if i not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, self.encoder.encode([self.catalog[i].description() for i in missing]),
                                     strict=True))
        query = self.encoder.encode([text])[0]
        return np.array([float(self._vectors[i] @ query) for i in item_ids])


def _grams(key: str) -> set[str]:
    padded = f"^{key}$"
    return {padded[k : k + 3] for k in range(len(padded) - 2)}


def _sentence_start(text: str, start: int) -> bool:
    before = text[:start].rstrip(" \t\"'“‘(*")
    return not before or before[-1] in ".!?\n:;"


