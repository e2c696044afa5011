"""Dialogue state, updated on every turn, and the per-user :class:`Memory` interface.

:meth:`DialogueState.observe` reads one turn with an :class:`~tastemaker.chat.linking.EntityLinker`:

* **mentioned items**: every linked item, in order of first mention (user or assistant);
* **liked / disliked items** (user turns only), from :func:`sentiment` of the clause that holds
  each mention. A turn with no mention but a clear opinion about "it" / "that (one)" is about
  the last item the assistant proposed, when it proposed exactly one;
* **requested attributes**: genres (only the catalog's own categories; :data:`GENRE_WORDS`
  maps everyday words such as "scary" or "cartoon" to them), genres to avoid ("no horror",
  "not a fan of musicals"), and years (:func:`parse_years`: "80s", "from 1995", "after 2010",
  "recent"). People are not parsed: neither the demo catalog (ml-latest-small) nor ReDial lists
  cast or crew, so there is nothing to ground them in; they stay in the free-text intent;
* **intent**: the user's text with the linked spans removed (what the reranker compares with
  item descriptions).

**Sentiment lexicon.** Clauses are split at ``. ! ? ;`` and at "but", "although", "though",
"however", "whereas". A clause scores the sum of its :data:`POSITIVE` (+1) and
:data:`NEGATIVE` (-1) words, each flipped when one of :data:`NEGATIONS` comes within the three
tokens before it ("not a fan" is -1, "not bad" is +1). A question ("Have you seen X?") scores 0.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np

from tastemaker.chat.linking import Mention, key_tokens

if TYPE_CHECKING:
    from tastemaker.chat.linking import ChatCatalog, EntityLinker

Role = Literal["user", "assistant"]

POSITIVE = frozenset("""
love loved loves loving like liked likes enjoy enjoyed enjoys enjoying great awesome amazing favorite favourite
favorites favourites fantastic excellent good best fun funny hilarious brilliant wonderful fan perfect cool
incredible masterpiece beautiful adore adored adores want wanted excited interested recommend gem superb
""".split())
NEGATIVE = frozenset("""
hate hated hates dislike disliked dislikes boring bored awful terrible horrible worst bad meh overrated stupid dull
disappointing disappointed annoying lame waste sucked sucks asleep garbage trash mediocre
""".split())
NEGATIONS = frozenset("""
not no never nor neither without hardly barely didn didnt don dont doesn doesnt wasn wasnt isn isnt aren arent
weren werent won wont cannot cant couldn couldnt wouldn wouldnt haven havent
""".split())
_CLAUSE = re.compile(r"[.!?;]+|\b(?:but|although|though|however|whereas)\b", re.IGNORECASE)

# everyday word (folded tokens, space-joined) -> genre name; only genres the catalog has are used
GENRE_WORDS: Mapping[str, str] = {
    **dict.fromkeys(["horror", "horrors", "scary", "scarier", "frightening", "creepy", "spooky", "slasher"], "horror"),
    **dict.fromkeys(["comedy", "comedies", "funny", "hilarious", "humor", "humour", "humorous", "rom com", "romcom"],
                    "comedy"),
    **dict.fromkeys(["action", "actions"], "action"),
    **dict.fromkeys(["adventure", "adventures"], "adventure"),
    **dict.fromkeys(["animated", "animation", "cartoon", "cartoons", "anime"], "animation"),
    **dict.fromkeys(["kids", "kid", "children", "childrens", "family"], "children"),
    **dict.fromkeys(["crime", "heist", "gangster", "gangsters", "mafia", "mob"], "crime"),
    **dict.fromkeys(["documentary", "documentaries"], "documentary"),
    **dict.fromkeys(["drama", "dramas", "dramatic"], "drama"),
    **dict.fromkeys(["fantasy", "magic", "fairy tale", "fairytale"], "fantasy"),
    **dict.fromkeys(["noir", "film noir"], "film-noir"),
    **dict.fromkeys(["musical", "musicals"], "musical"),
    **dict.fromkeys(["mystery", "mysteries", "whodunit", "detective"], "mystery"),
    **dict.fromkeys(["romance", "romances", "romantic", "rom com", "love story"], "romance"),
    **dict.fromkeys(["sci fi", "scifi", "science fiction", "space", "aliens", "futuristic"], "sci-fi"),
    **dict.fromkeys(["thriller", "thrillers", "suspense", "suspenseful"], "thriller"),
    **dict.fromkeys(["war"], "war"),
    **dict.fromkeys(["western", "westerns", "cowboy", "cowboys"], "western"),
    **dict.fromkeys(["imax"], "imax"),
}
_DECADE_WORDS = {"twenties": 1920, "thirties": 1930, "forties": 1940, "fifties": 1950, "sixties": 1960,
                 "seventies": 1970, "eighties": 1980, "nineties": 1990}
_DECADE = re.compile(r"(?<![\w'])(?:the\s+)?'?((?:19|20)?[0-9]0)'?s\b", re.IGNORECASE)
_RANGE = re.compile(r"\b(?:between|from)\s+((?:19|20)\d{2})\s+(?:and|to|-)\s+((?:19|20)\d{2})\b|"
                    r"\b((?:19|20)\d{2})\s*[-–]\s*((?:19|20)\d{2})\b", re.IGNORECASE)
_AFTER = re.compile(r"\b(?:after|since|newer than|post)\s+((?:19|20)\d{2})\b", re.IGNORECASE)
_BEFORE = re.compile(r"\b(?:before|older than|pre)\s+((?:19|20)\d{2})\b", re.IGNORECASE)
_IN_YEAR = re.compile(r"\b(?:from|in|of|released in|made in)\s+((?:19|20)\d{2})\b", re.IGNORECASE)
_RECENT = re.compile(r"\b(?:recent|recently released|latest|newer|new releases?|this year|last few years)\b",
                     re.IGNORECASE)
_OLD = re.compile(r"\b(?:old|older|classic)\s+(?:movies?|films?|ones)\b|\bold[- ]school\b|\boldies\b", re.IGNORECASE)
_ASKING = frozenset("have has had did do does is are was were what which who how would could can will ever "
                    "should shall may".split())
_ANAPHORA = re.compile(r"\b(?:it|that|that one|this one|this)\b", re.IGNORECASE)


# ---------------------------------------------------------------------- parsing
def clauses(text: str) -> list[tuple[int, int, bool]]:
    """``(start, end, is_question)`` of each clause of ``text`` (see the module doc)."""
    out, start = [], 0
    for match in _CLAUSE.finditer(text):
        out.append((start, match.start(), "?" in match.group(0)))
        start = match.end()
    out.append((start, len(text), False))
    return [c for c in out if text[c[0] : c[1]].strip()]


def sentiment(text: str) -> float:
    """The lexicon score of one clause (module doc): > 0 positive, < 0 negative, 0 neutral."""
    tokens = key_tokens(text)
    score = 0.0
    for k, token in enumerate(tokens):
        polarity = 1.0 if token in POSITIVE else -1.0 if token in NEGATIVE else 0.0
        if polarity and any(t in NEGATIONS for t in tokens[max(0, k - 3) : k]):
            polarity = -polarity
        score += polarity
    return score


def mention_sentiment(text: str, mention: Mention) -> float:
    """The sentiment of the clause that holds ``mention``; 0 in a question that asks about it
    ("Have you seen X?", "Did you like X?"), but "I loved X, anything else?" is an opinion."""
    for start, end, question in clauses(text):
        if start <= mention.start < max(end, start + 1):
            first = key_tokens(text[start:end])[:1]
            return 0.0 if question and first and first[0] in _ASKING else sentiment(text[start:end])
    return 0.0


def parse_genres(text: str, catalog_genres: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(wanted, avoided)`` catalog genres named in ``text`` through :data:`GENRE_WORDS`; a
    genre is avoided when its clause is negative ("no horror", "I hate musicals")."""
    by_name = {g.casefold(): g for g in catalog_genres}
    wanted: list[str] = []
    avoided: list[str] = []
    for start, end, question in clauses(text):
        clause = text[start:end]
        tokens = key_tokens(clause)
        for k in range(len(tokens)):
            for width in (2, 1):
                word = " ".join(tokens[k : k + width])
                genre = by_name.get(GENRE_WORDS.get(word, "\0"))
                if genre is None:
                    continue
                negated = any(t in NEGATIONS for t in tokens[max(0, k - 3) : k]) or "anything but" in clause.casefold()
                negative = negated or (not question and sentiment(clause) < 0)
                (avoided if negative else wanted).append(genre)
                break
    return list(dict.fromkeys(wanted)), list(dict.fromkeys(avoided))


def parse_years(text: str, *, latest: int | None = None) -> tuple[int, int] | None:
    """The year range ``text`` asks for, inclusive, or None: "80s"/"1980s"/"eighties" ->
    (1980, 1989); "between 1990 and 1995"; "after 2010" -> (2010, latest); "before 2000" ->
    (1900, 1999); "from 1995" -> (1995, 1995); "recent"/"latest" -> the last three years
    up to ``latest`` (the catalog's newest year); "old movies"/"classic films" -> up to 1979."""
    top = latest or 2100
    if m := _RANGE.search(text):
        low, high = sorted(int(g) for g in m.groups() if g)
        return low, high
    if m := _AFTER.search(text):
        return int(m.group(1)), top
    if m := _BEFORE.search(text):
        return 1900, int(m.group(1)) - 1
    if m := _DECADE.search(text):
        digits = m.group(1)
        decade = int(digits) if len(digits) == 4 else (1900 if int(digits) >= 30 else 2000) + int(digits)
        return decade, decade + 9
    for word, decade in _DECADE_WORDS.items():
        if re.search(rf"\b{word}\b", text, re.IGNORECASE):
            return decade, decade + 9
    if m := _IN_YEAR.search(text):
        return int(m.group(1)), int(m.group(1))
    if latest is not None and _RECENT.search(text):
        return latest - 2, latest
    if _OLD.search(text):
        return 1900, 1979
    return None


def strip_spans(text: str, mentions: Sequence[Mention]) -> str:
    """``text`` without the mentions' spans, whitespace collapsed."""
    out, last = [], 0
    for m in sorted(mentions, key=lambda m: m.start):
        out.append(text[last : m.start])
        last = max(last, m.end)
    out.append(text[last:])
    return " ".join(" ".join(out).split())


# ---------------------------------------------------------------------- the state
@dataclass
class Turn:
    """One observed turn: who spoke, the text, the linked items and, per item, the sentiment."""

    role: Role
    text: str
    items: list[str] = field(default_factory=list)
    sentiments: dict[str, float] = field(default_factory=dict)


@dataclass
class DialogueState:
    """What the dialogue has established so far (see the module doc); JSON-ready by :meth:`to_dict`.

    ``mentioned``: items in order of first mention; ``liked`` / ``disliked``: the user's
    opinions (the latest wins); ``genres`` / ``avoided_genres``: catalog genres asked for or
    against; ``years``: the inclusive year range asked for (the latest request wins);
    ``intent``: the latest user turn minus its linked spans; ``intents``: every user turn's;
    ``recommended``: what the assistant proposed, in order; ``turns``: every turn observed."""

    mentioned: list[str] = field(default_factory=list)
    liked: list[str] = field(default_factory=list)
    disliked: list[str] = field(default_factory=list)
    genres: list[str] = field(default_factory=list)
    avoided_genres: list[str] = field(default_factory=list)
    years: tuple[int, int] | None = None
    intent: str = ""
    intents: list[str] = field(default_factory=list)
    recommended: list[str] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)

    def observe(self, text: str, linker: EntityLinker, role: Role = "user") -> Turn:
        """Update the state with one turn and return what was read from it."""
        mentions = linker.link(text)
        items = list(dict.fromkeys(m.item_id for m in mentions))
        turn = Turn(role, text, items)
        _extend(self.mentioned, items)
        if role == "assistant":
            _extend(self.recommended, items)
            self.turns.append(turn)
            return turn
        for m in mentions:
            turn.sentiments[m.item_id] = turn.sentiments.get(m.item_id, 0.0) + mention_sentiment(text, m)
        if not mentions and _ANAPHORA.search(text):
            last = next((t for t in reversed(self.turns) if t.role == "assistant"), None)
            if last is not None and len(last.items) == 1 and (score := sentiment(text)):
                turn.sentiments[last.items[0]] = score
        for item_id, score in turn.sentiments.items():
            if score > 0:
                _move(item_id, self.liked, self.disliked)
            elif score < 0:
                _move(item_id, self.disliked, self.liked)
        self.intent = strip_spans(text, mentions)
        if self.intent:
            self.intents.append(self.intent)
        wanted, avoided = parse_genres(self.intent, linker.catalog.genres)
        for genre in wanted:
            _move(genre, self.genres, self.avoided_genres)
        for genre in avoided:
            _move(genre, self.avoided_genres, self.genres)
        latest = max((it.year for it in linker.catalog.items.values() if it.year), default=None)
        years = parse_years(self.intent, latest=latest)
        if years is not None:
            self.years = years
        self.turns.append(turn)
        return turn

    def propose(self, text: str, item_ids: Sequence[str]) -> Turn:
        """Record the engine's own reply: its items join ``recommended`` (not ``mentioned``:
        the user has not talked about them). :meth:`observe` with ``role="assistant"`` is for
        replaying a recorded dialogue, whose assistant mentions are part of the context."""
        turn = Turn("assistant", text, list(dict.fromkeys(item_ids)))
        _extend(self.recommended, turn.items)
        self.turns.append(turn)
        return turn

    def recent_intent(self, turns: int = 3) -> str:
        """The last ``turns`` user intents, joined (what the reranker reads)."""
        return " ".join(self.intents[-turns:])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the inverse of :meth:`from_dict`)."""
        out = asdict(self)
        out["years"] = list(self.years) if self.years else None
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DialogueState:
        """A state from :meth:`to_dict`'s output (e.g. kept between requests in a store)."""
        fields = dict(data)
        years = fields.pop("years", None)
        turns = [Turn(**t) for t in fields.pop("turns", [])]
        known = {k: v for k, v in fields.items() if k in cls.__dataclass_fields__}
        return cls(**known, years=(int(years[0]), int(years[1])) if years else None, turns=turns)


def _extend(target: list[str], values: Sequence[str]) -> None:
    for v in values:
        if v not in target:
            target.append(v)


def _move(value: str, into: list[str], out_of: list[str]) -> None:
    if value in out_of:
        out_of.remove(value)
    if value in into:
        into.remove(value)
    into.append(value)


# ---------------------------------------------------------------------- memory
@runtime_checkable
class Memory(Protocol):
    """A per-user memory across sessions (MR.Rec's local memory, kept small).

    ``remember(user_id, state)`` stores what a dialogue established; ``recall(user_id, query)``
    returns the most relevant chunks for ``query`` (the current turn), best first. A chunk is a
    line ``"<kind>: <text>"`` with kind ``liked``, ``disliked``, ``mentioned``, ``genre``,
    ``avoid-genre`` or ``profile``, and items written ``@<item_id>`` followed by their title
    (:func:`memory_chunks` writes them; :func:`read_memory` reads them back), so any
    implementation that stores and ranks lines works with the chat."""

    def recall(self, user_id: str, query: str) -> list[str]: ...

    def remember(self, user_id: str, state: DialogueState) -> None: ...


def memory_chunks(state: DialogueState, catalog: ChatCatalog) -> list[str]:
    """The chunks that ``state`` adds to a user's memory (see :class:`Memory`)."""
    def item(i: str) -> str:
        return f"@{i} {catalog[i].facts()}" if i in catalog else f"@{i}"

    chunks = [f"liked: {item(i)}" for i in state.liked] + [f"disliked: {item(i)}" for i in state.disliked]
    opinion = set(state.liked) | set(state.disliked)
    chunks += [f"mentioned: {item(i)}" for i in state.mentioned if i not in opinion and i not in state.recommended]
    chunks += [f"genre: {g}" for g in state.genres] + [f"avoid-genre: {g}" for g in state.avoided_genres]
    return chunks


@dataclass
class MemoryHints:
    """What recalled chunks say: items liked / disliked, genres wanted / avoided, other text."""

    liked: list[str] = field(default_factory=list)
    disliked: list[str] = field(default_factory=list)
    genres: list[str] = field(default_factory=list)
    avoided_genres: list[str] = field(default_factory=list)
    text: str = ""


def read_memory(chunks: Sequence[str]) -> MemoryHints:
    """The hints in recalled chunks (see :class:`Memory` for the format; odd lines are text)."""
    hints = MemoryHints()
    extra = []
    for chunk in chunks:
        kind, _, rest = chunk.partition(":")
        ids = re.findall(r"@(\S+)", rest)
        kind = kind.strip().casefold()
        if kind in ("liked", "mentioned") and ids:
            _extend(hints.liked, ids[:1])
        elif kind == "disliked" and ids:
            _extend(hints.disliked, ids[:1])
        elif kind == "genre":
            _extend(hints.genres, [rest.strip()])
        elif kind == "avoid-genre":
            _extend(hints.avoided_genres, [rest.strip()])
        else:
            extra.append(chunk.strip())
    hints.text = " ".join(extra)
    return hints


class InMemoryMemory:
    """:class:`Memory` in a dict (for tests and a single process): the latest ``limit`` chunks
    per user, the ``top_k`` most relevant recalled. Relevance: with a text ``encoder``, the
    cosine between the query and each chunk (so "something scary" finds "genre: Horror" under
    a sentence encoder), plus a small bonus per shared word; without one, shared words alone.
    Ties go to the newest chunk."""

    def __init__(self, catalog: ChatCatalog, *, limit: int = 200, top_k: int = 20, encoder: Any | None = None) -> None:
        self.catalog = catalog
        self.limit = limit
        self.top_k = top_k
        self.encoder = encoder
        self.chunks: dict[str, list[str]] = {}

    def remember(self, user_id: str, state: DialogueState) -> None:
        new = memory_chunks(state, self.catalog)
        old = [c for c in self.chunks.get(user_id, []) if c not in new and not _contradicted(c, new)]
        self.chunks[user_id] = (old + new)[-self.limit :]

    def recall(self, user_id: str, query: str) -> list[str]:
        chunks = self.chunks.get(user_id, [])
        if not chunks:
            return []
        words = set(key_tokens(query))
        relevance = np.array([0.01 * len(words & set(key_tokens(c))) for c in chunks])
        if self.encoder is not None and query.strip():
            # items are written "@id Title (year) genres": the encoder reads the words, not the id
            vectors = np.asarray(self.encoder.encode([query, *(re.sub(r"@\S+", " ", c) for c in chunks)]), np.float64)
            norms = np.linalg.norm(vectors, axis=1)
            relevance += vectors[1:] @ vectors[0] / np.where(norms[1:] * norms[0] > 0, norms[1:] * norms[0], 1.0)
        ranked = sorted(range(len(chunks)), key=lambda k: (-round(float(relevance[k]), 6), -k))
        return [chunks[k] for k in ranked[: self.top_k]]


def _contradicted(chunk: str, new: Sequence[str]) -> bool:
    """An old opinion about an item (or genre) that a new chunk replaces."""
    _, _, rest = chunk.partition(":")
    subject = rest.split()[0] if rest.split() else ""
    return any(c.partition(":")[2].split()[:1] == [subject] for c in new)
