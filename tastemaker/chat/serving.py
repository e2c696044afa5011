"""Chat over a served pipeline: the catalog from the pipeline's context, a store-backed
per-user memory, and dialogue states kept in the store between requests (the HTTP endpoint
``POST /v1/chat`` and ``tastemaker chat`` both use this)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from tastemaker.chat.agent import ChatEngine, ChatReply
from tastemaker.chat.linking import ChatCatalog
from tastemaker.chat.rerank import fit_text_encoder
from tastemaker.chat.state import DialogueState, InMemoryMemory


def catalog_from_pipeline(pipeline: Any) -> ChatCatalog:
    """The chat catalog of everything ``pipeline`` can recommend: ids, titles, categories
    (its context's, plus any a source reports through ``item_categories()``), popularity
    (training users per item)."""
    ctx = pipeline.context_
    cats = ctx.categories
    names = ctx.category_names
    categories = [[str(names[c]) for c in cats.indices[cats.indptr[k] : cats.indptr[k + 1]]] for k in range(len(ctx.items))]
    for source in getattr(pipeline, "sources", ()):  # a source that knows more genres (the dialogue source's links)
        if hasattr(source, "item_categories"):
            categories = [list(dict.fromkeys([*a, *b])) for a, b in zip(categories, source.item_categories(), strict=True)]
    frame = pd.DataFrame({"item_id": ctx.items.ids.astype(str), "title": [str(t) for t in ctx.titles], "categories": categories})
    popularity = np.zeros(len(frame))
    popularity[: len(ctx.popularity)] = ctx.popularity[: len(frame)]
    return ChatCatalog.from_frame(frame, popularity)


class StoreMemory(InMemoryMemory):
    """:class:`~tastemaker.chat.state.Memory` kept in a store (``put_state`` under
    ``chat-memory:<user>``), so it outlives sessions and restarts; recalled like the in-memory
    one (encoder cosine and shared words with the turn, then recency)."""

    def __init__(self, store: Any, catalog: ChatCatalog, **params: Any) -> None:
        super().__init__(catalog, **params)
        self.store = store

    def _load(self, user_id: str) -> None:
        raw = self.store.get_state(f"chat-memory:{user_id}")
        self.chunks[user_id] = json.loads(raw) if raw else []

    def remember(self, user_id: str, state: DialogueState) -> None:
        self._load(user_id)
        super().remember(user_id, state)
        self.store.put_state(f"chat-memory:{user_id}", json.dumps(self.chunks.pop(user_id)))

    def recall(self, user_id: str, query: str) -> list[str]:
        self._load(user_id)
        try:
            return super().recall(user_id, query)
        finally:
            self.chunks.pop(user_id, None)


class ChatService:
    """Chat sessions over one pipeline: ``turn(session_id, message, user_id)``; a session's
    dialogue state is saved in the store (``chat-session:<id>``) after every turn."""

    def __init__(self, pipeline: Any, store: Any | None = None, **engine: Any) -> None:
        self.store = store
        catalog = catalog_from_pipeline(pipeline)
        # one text encoder for linking, reranking and memory recall
        encoder = engine.pop("encoder", None) or fit_text_encoder(catalog)
        memory = StoreMemory(store, catalog, encoder=encoder) if store is not None else InMemoryMemory(catalog, encoder=encoder)
        self.engine = ChatEngine.build(catalog, pipeline, memory=memory, encoder=encoder, **engine)
        self._states: dict[str, dict[str, Any]] = {}  # without a store: this process only

    def turn(self, session_id: str, message: str, user_id: str | None = None) -> ChatReply:
        key = f"chat-session:{session_id}"
        saved: dict[str, Any] | None
        if self.store is not None:
            raw = self.store.get_state(key)
            saved = json.loads(raw) if raw else None
        else:
            saved = self._states.get(key)
        state = DialogueState.from_dict(saved) if saved else None
        session = self.engine.session(user_id, state)
        reply = session.turn(message, user_id)
        data = session.state.to_dict()
        if self.store is not None:
            self.store.put_state(key, json.dumps(data))
        else:
            self._states[key] = data
        return reply
