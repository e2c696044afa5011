"""The chat engine: guard -> state -> a planner calling tools under a step budget -> a grounded answer.

    engine = ChatEngine.build(dataset, pipeline)          # offline: rules, TF-IDF rerank, templates
    session = engine.session(user_id="42")
    reply = session.turn("I loved The Matrix, something like it from the 90s?")
    reply.answer, reply.items, reply.state.to_dict()

A turn runs:

1. the guard classifies the request (:func:`~tastemaker.chat.guard.classify_request`); an
   unsafe, manipulative or off-topic one gets a polite refusal and changes nothing;
2. the dialogue state reads the turn (:meth:`~tastemaker.chat.state.DialogueState.observe`);
   with a user id and a :class:`~tastemaker.chat.state.Memory`, what is remembered of the user
   and relevant to the turn is recalled;
3. a planner calls tools (:class:`ChatTools`: ``search_catalog``, ``recommend``,
   ``find_similar``, ``explain``) until it answers or ``max_steps`` tool calls are spent.
   :class:`RulePlanner` (offline default) picks one tool from the wording: "tell me about X"
   -> explain, "more like X" / "similar to X" -> find_similar, "do you have X" -> search,
   else recommend. :class:`LLMPlanner` asks a chat model for ``{"tool": ..., "args": ...}``
   JSON, one call per step, and falls back to the rules on bad output;
4. the answer names the items of the last tool that returned items, with catalog facts only
   (:mod:`~tastemaker.chat.answer`); the state records the reply, and the memory the state.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from tastemaker.chat.answer import LLMAnswerer, explain_item, template_answer
from tastemaker.chat.guard import RequestCategory, classify_request, refusal
from tastemaker.chat.linking import ChatCatalog, EntityLinker
from tastemaker.chat.llm import ChatModel, ChatModelError, ChatOutputError, complete_parsed, parse_object
from tastemaker.chat.rerank import CandidateSource, ChatRecommender, Strategy, dialogue_block, fit_text_encoder
from tastemaker.chat.state import DialogueState, Memory, MemoryHints, parse_genres, parse_years, read_memory
from tastemaker.types import ItemList, Query

if TYPE_CHECKING:
    from tastemaker.content.encoders import TextEncoder
    from tastemaker.data.dataset import Dataset

TOOLS: tuple[str, ...] = ("search_catalog", "recommend", "find_similar", "explain")


@dataclass(frozen=True)
class ToolCall:
    """One step: the tool, its arguments and what it returned (item ids, or a text)."""

    tool: str
    args: dict[str, Any]
    items: tuple[str, ...] = ()
    text: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"tool": self.tool, "args": self.args, "items": list(self.items), "text": self.text}


@dataclass(frozen=True)
class ChatItem:
    """A proposed item with its catalog facts and why it was proposed."""

    item_id: str
    title: str
    year: int | None
    genres: tuple[str, ...]
    score: float
    reason: str
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "title": self.title, "year": self.year, "genres": list(self.genres),
                "score": self.score, "reason": self.reason, "source": self.source}


@dataclass
class ChatReply:
    """What one turn returns. ``category`` is the guard's ("ok" unless ``refused``); ``steps``
    the tool calls made (never more than ``max_steps``); ``budget_exhausted``: the turn used
    all ``max_steps`` calls and the planner was not asked for more."""

    answer: str
    items: list[ChatItem]
    state: DialogueState
    refused: bool = False
    category: RequestCategory = "ok"
    steps: list[ToolCall] = field(default_factory=list)
    budget_exhausted: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the HTTP response body."""
        return {"answer": self.answer, "items": [i.to_dict() for i in self.items], "state": self.state.to_dict(),
                "refused": self.refused, "category": self.category, "steps": [s.to_dict() for s in self.steps],
                "budget_exhausted": self.budget_exhausted}


# ---------------------------------------------------------------------- tools
class ChatTools:
    """The agent's tools, each grounded in the catalog: nothing they return is outside it."""

    def __init__(self, recommender: ChatRecommender) -> None:
        self.recommender = recommender
        self.catalog: ChatCatalog = recommender.catalog
        self.linker: EntityLinker = recommender.linker
        self.source: CandidateSource = recommender.source

    def search_catalog(self, query: str, k: int = 5) -> list[str]:
        """Items by title (exact, then fuzzy); failing that, the most popular items of the
        genres and years the query names."""
        found = self.linker.search(query, k)
        if found:
            return found
        wanted, avoided = parse_genres(query, self.catalog.genres)
        years = parse_years(query)
        if not (wanted or years):
            return []
        ids = self.catalog.matching(wanted, years, avoided)
        return sorted(ids, key=lambda i: -self.catalog[i].popularity)[:k]

    def recommend(self, state: DialogueState, n: int = 5, *, strategy: Strategy | None = None,
                  user: str | None = None, history: Sequence[str] = (), hints: MemoryHints | None = None) -> ItemList:
        """The CARE recommendation for the dialogue (:class:`~tastemaker.chat.rerank.ChatRecommender`)."""
        return self.recommender.recommend(state, n, strategy=strategy, user=user, history=history, hints=hints)

    def find_similar(self, item_id: str, n: int = 5, *, state: DialogueState | None = None) -> ItemList:
        """Items like ``item_id`` (a one-item session), leaving out what the dialogue rejected or showed."""
        if item_id not in self.catalog:
            return ItemList.empty()
        blocked = [item_id, *(state.disliked + state.recommended if state else [])]
        return self.source.recommend([Query(history=[item_id], exclude=blocked)], n)[0]

    def explain(self, item_id: str, reason: str = "") -> str:
        """The item's catalog facts and, when given, why it was proposed."""
        item = self.catalog.get(item_id)
        return explain_item(item, reason) if item is not None else "That item is not in our catalog."


# ---------------------------------------------------------------------- planners
class Planner(Protocol):
    """Chooses the next tool call of a turn, or None to answer now. ``steps``: the calls made
    so far in this turn; ``mentioned``: the items the turn itself linked."""

    def next(self, message: str, state: DialogueState, mentioned: Sequence[str], steps: Sequence[ToolCall]
             ) -> tuple[str, dict[str, Any]] | None: ...


_EXPLAIN = re.compile(r"\b(?:tell me (?:more )?about|what(?:'s| is) .{0,40}\babout|explain|why (?:did|would|do) you)\b",
                      re.IGNORECASE)
_SIMILAR = re.compile(r"\b(?:similar to|more like|movies like|films like|something like|anything like|like that)\b",
                      re.IGNORECASE)
_SEARCH = re.compile(r"\b(?:do you have|is there|search(?: for)?|find(?: me)?|look up|in (?:the|your) catalog)\b",
                     re.IGNORECASE)


class RulePlanner:
    """The offline planner: one tool from the turn's wording (see the module doc). ``catalog``
    lets "do you have X" search by X's catalog title."""

    def __init__(self, catalog: ChatCatalog | None = None) -> None:
        self.titles = {i: it.title for i, it in catalog.items.items()} if catalog is not None else {}
        self.genres = catalog.genres if catalog is not None else []

    def next(self, message: str, state: DialogueState, mentioned: Sequence[str], steps: Sequence[ToolCall]
             ) -> tuple[str, dict[str, Any]] | None:
        if steps:
            return None
        target = mentioned[-1] if mentioned else (state.recommended[-1] if state.recommended else None)
        if _EXPLAIN.search(message) and target is not None:
            return "explain", {"item_id": target}
        # "more like X from the 80s" asks for more than X: the full recommendation honours both
        asks_attributes = bool(parse_genres(state.intent, self.genres)[0] or parse_years(state.intent))
        if _SIMILAR.search(message) and mentioned and not asks_attributes:
            return "find_similar", {"item_id": mentioned[-1]}
        if _SEARCH.search(message):
            title = self.titles.get(mentioned[-1]) if mentioned and self.titles else None
            return "search_catalog", {"query": title or state.intent or message}
        return "recommend", {}


class LLMPlanner:
    """A chat model picks each step as JSON ``{"tool": name, "args": {...}}`` (or ``{"tool":
    "answer"}``) from :data:`TOOLS`; a bad reply (after one retry) hands the turn to ``fallback``."""

    def __init__(self, model: ChatModel, catalog: ChatCatalog, fallback: Planner | None = None) -> None:
        self.model = model
        self.catalog = catalog
        self.fallback = fallback or RulePlanner(catalog)

    def next(self, message: str, state: DialogueState, mentioned: Sequence[str], steps: Sequence[ToolCall]
             ) -> tuple[str, dict[str, Any]] | None:
        done = "\n".join(f"- {s.tool}({s.args}) -> {list(s.items)[:10] or s.text[:200]}" for s in steps) or "none"
        prompt = [{"role": "system", "content":
                   "You plan tool calls for a movie recommender. Tools: search_catalog(query), recommend(), "
                   "find_similar(item_id), explain(item_id). Reply with JSON only: {\"tool\": name, \"args\": {...}} "
                   "or {\"tool\": \"answer\"} when the results so far answer the user."},
                  {"role": "user", "content": f"{dialogue_block(state, self.catalog)}\nItems this turn: "
                                              f"{list(mentioned)}\nCalls so far:\n{done}"}]

        def parse(text: str) -> tuple[str, dict[str, Any]] | None:
            value = parse_object(text, ["tool"])
            tool, args = value["tool"], value.get("args", {})
            if tool == "answer":
                return None
            if tool not in TOOLS or not isinstance(args, dict):
                raise ChatOutputError(f"unknown tool {tool!r}")
            return tool, args

        try:
            result: tuple[str, dict[str, Any]] | None = complete_parsed(self.model, prompt, parse)
            return result
        except (ChatOutputError, ChatModelError):
            return self.fallback.next(message, state, mentioned, steps)


# ---------------------------------------------------------------------- the engine
class ChatEngine:
    """What every conversation shares (catalog, linker, recommender, planner, memory); build
    it once per process. ``n``: items per reply; ``max_steps``: tool calls per turn."""

    def __init__(self, recommender: ChatRecommender, *, memory: Memory | None = None,
                 answerer: LLMAnswerer | None = None, planner: Planner | None = None, max_steps: int = 3,
                 n: int = 5) -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.recommender = recommender
        self.tools = ChatTools(recommender)
        self.catalog = recommender.catalog
        self.linker = recommender.linker
        self.memory = memory
        self.answerer = answerer
        self.planner: Planner = planner or RulePlanner(recommender.catalog)
        self.max_steps = max_steps
        self.n = n

    @classmethod
    def build(cls, catalog: Dataset | ChatCatalog, source: CandidateSource, *, model: ChatModel | None = None,
              strategy: Strategy = "select-rerank", encoder: TextEncoder | None = None, memory: Memory | None = None,
              llm_answers: bool = False, llm_planner: bool = False, candidates: int = 50, max_steps: int = 3,
              n: int = 5, exclude_mentioned: bool = True) -> ChatEngine:
        """An engine over a catalog (a dataset's, or a :class:`ChatCatalog` built from a
        store's items) and a fitted pipeline (``source``). Offline by default: TF-IDF encoder
        fitted on the catalog, rule planner, template answers. With a ``model``, reranking uses
        it; ``llm_answers`` / ``llm_planner`` let it phrase answers and choose tools too."""
        if not isinstance(catalog, ChatCatalog):
            catalog = ChatCatalog.from_dataset(catalog)
        encoder = encoder or fit_text_encoder(catalog)
        linker = EntityLinker(catalog, encoder=encoder)
        recommender = ChatRecommender(source, catalog, linker, model=model, strategy=strategy, candidates=candidates,
                                      exclude_mentioned=exclude_mentioned, encoder=encoder)
        answerer = LLMAnswerer(model, catalog, linker) if model is not None and llm_answers else None
        planner = LLMPlanner(model, catalog) if model is not None and llm_planner else None
        return cls(recommender, memory=memory, answerer=answerer, planner=planner, max_steps=max_steps, n=n)

    def session(self, user_id: str | None = None, state: DialogueState | None = None) -> ChatSession:
        """A conversation (optionally resumed from a saved ``state``)."""
        return ChatSession(self, user_id, state)


class ChatSession:
    """One conversation: :meth:`turn` per user message; ``state`` is its dialogue state."""

    def __init__(self, engine: ChatEngine, user_id: str | None = None, state: DialogueState | None = None) -> None:
        self.engine = engine
        self.user_id = user_id
        self.state = state or DialogueState()

    def turn(self, message: str, user_id: str | None = None) -> ChatReply:
        """Answer one user message (see the module doc)."""
        engine, state = self.engine, self.state
        user = user_id or self.user_id
        self.user_id = user
        linked = engine.linker.link(message)
        verdict = classify_request(message, mentions_items=bool(linked))
        if not verdict.allowed:
            return ChatReply(refusal(verdict.category), [], state, refused=True, category=verdict.category)
        turn = state.observe(message, engine.linker, "user")
        hints = read_memory(engine.memory.recall(user, message)) if engine.memory is not None and user else None
        steps: list[ToolCall] = []
        results: ItemList | None = None
        found_by: ToolCall | None = None
        explanation = ""
        exhausted = False
        while True:
            if len(steps) >= engine.max_steps:
                exhausted = True
                break
            plan = engine.planner.next(message, state, turn.items, steps)
            if plan is None:
                break
            call, found, text = self._run(plan[0], plan[1], hints, results)
            steps.append(call)
            if found is not None and len(found):
                results, found_by = found, call
            if text:
                explanation = text
        if results is None and not explanation and not exhausted:
            # nothing found yet and budget left: recommend, as a recorded step within the budget
            call, results, _ = self._run("recommend", {}, hints, None)
            steps.append(call)
        items = self._items(results) if results is not None else []
        if explanation:
            answer = explanation
        elif engine.answerer is not None:
            answer = engine.answerer.answer(state, [i.item_id for i in items])
        else:
            tool = found_by.tool if found_by else "recommend"
            kind: Literal["recommend", "similar", "search"] = (
                "similar" if tool == "find_similar" else "search" if tool == "search_catalog" else "recommend")
            anchor = str(found_by.args.get("item_id", "")) if found_by else None
            answer = template_answer([i.item_id for i in items], engine.catalog, state, kind=kind, anchor=anchor)
        state.propose(answer, [i.item_id for i in items])
        if engine.memory is not None and user:
            engine.memory.remember(user, state)
        return ChatReply(answer, items, state, steps=steps, budget_exhausted=exhausted)

    def _run(self, tool: str, args: dict[str, Any], hints: MemoryHints | None, results: ItemList | None
             ) -> tuple[ToolCall, ItemList | None, str]:
        """Run one tool call (arguments checked: ids must be catalog items)."""
        tools, n = self.engine.tools, self.engine.n
        item_id = str(args.get("item_id", ""))
        if tool == "recommend":
            found = tools.recommend(self.state, n, user=self.user_id, hints=hints)
            return ToolCall(tool, {}, tuple(str(i) for i in found.item_ids)), found, ""
        if tool == "find_similar" and item_id in self.engine.catalog:
            found = tools.find_similar(item_id, n, state=self.state)
            return ToolCall(tool, {"item_id": item_id}, tuple(str(i) for i in found.item_ids)), found, ""
        if tool == "search_catalog":
            query = str(args.get("query", ""))[:200]
            ids = tools.search_catalog(query, n)
            found = _as_list(ids, "search", "matches your search")
            return ToolCall(tool, {"query": query}, tuple(ids)), found, ""
        if tool == "explain" and item_id in self.engine.catalog:
            reason = ""
            if results is not None and item_id in {str(i) for i in results.item_ids}:
                reason = results.reasons[[str(i) for i in results.item_ids].index(item_id)] if results.reasons else ""
            text = tools.explain(item_id, reason)
            return ToolCall(tool, {"item_id": item_id}, (item_id,), text), None, text
        return ToolCall(tool, dict(args), (), "refused: unknown tool or item"), None, ""

    def _items(self, found: ItemList) -> list[ChatItem]:
        out = []
        for k, raw in enumerate(found.item_ids[: self.engine.n]):
            item = self.engine.catalog.get(str(raw))
            if item is None:  # a pipeline item the chat catalog lacks is never shown
                continue
            reason = found.reasons[k] if found.reasons else ""
            source = found.sources[k] if found.sources else ""
            out.append(ChatItem(item.item_id, item.title, item.year, item.genres, float(found.scores[k]), reason, source))
        return out


def _as_list(ids: Sequence[str], source: str, reason: str) -> ItemList:
    """Item ids as an ItemList (codes unknown: -1), for tools that do not come from the pipeline."""
    count = len(ids)
    return ItemList(np.asarray(list(ids), dtype=object), np.full(count, -1, dtype=np.int32),
                    np.linspace(1.0, 1.0 / max(1, count), count, dtype=np.float32), (source,) * count, (reason,) * count)
