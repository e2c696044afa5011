"""Conversational recommendation grounded in the catalog (CARE-style).

An external recommender (a fitted pipeline) proposes candidates from the dialogue's entities;
a reranker selects and orders among them; the answer names only those items, with catalog
facts. Offline by default; any OpenAI-compatible chat-completions endpoint can be plugged in.

* :mod:`~tastemaker.chat.agent`: ``ChatEngine`` (shared), ``ChatSession.turn(message) ->
  ChatReply``, the tools (``ChatTools``) and planners (``RulePlanner``, ``LLMPlanner``);
* :mod:`~tastemaker.chat.state`: ``DialogueState`` (mentions, likes, genres, years, intent),
  the lexicon sentiment, and the per-user ``Memory`` interface (``InMemoryMemory``);
* :mod:`~tastemaker.chat.linking`: ``ChatCatalog`` (facts per item) and ``EntityLinker``;
* :mod:`~tastemaker.chat.rerank`: ``ChatRecommender`` (state -> query -> candidates ->
  strategy), ``OfflineReranker``, ``LLMReranker``, ``STRATEGIES``;
* :mod:`~tastemaker.chat.llm`: ``ChatModel``, ``OpenAIChatModel``, strict JSON parsing;
* :mod:`~tastemaker.chat.answer`: ``template_answer``, ``LLMAnswerer``, ``ground``;
* :mod:`~tastemaker.chat.guard`: sanitising, the STS ``InjectionDetector``, refusals.

Names load lazily: ``import tastemaker.chat`` imports nothing heavy.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ChatEngine": "tastemaker.chat.agent",
    "ChatSession": "tastemaker.chat.agent",
    "ChatReply": "tastemaker.chat.agent",
    "ChatItem": "tastemaker.chat.agent",
    "ChatTools": "tastemaker.chat.agent",
    "ToolCall": "tastemaker.chat.agent",
    "RulePlanner": "tastemaker.chat.agent",
    "LLMPlanner": "tastemaker.chat.agent",
    "DialogueState": "tastemaker.chat.state",
    "Turn": "tastemaker.chat.state",
    "Memory": "tastemaker.chat.state",
    "InMemoryMemory": "tastemaker.chat.state",
    "MemoryHints": "tastemaker.chat.state",
    "memory_chunks": "tastemaker.chat.state",
    "read_memory": "tastemaker.chat.state",
    "sentiment": "tastemaker.chat.state",
    "parse_years": "tastemaker.chat.state",
    "parse_genres": "tastemaker.chat.state",
    "ChatCatalog": "tastemaker.chat.linking",
    "CatalogItem": "tastemaker.chat.linking",
    "EntityLinker": "tastemaker.chat.linking",
    "Mention": "tastemaker.chat.linking",
    "ChatRecommender": "tastemaker.chat.rerank",
    "ChatReranker": "tastemaker.chat.rerank",
    "OfflineReranker": "tastemaker.chat.rerank",
    "LLMReranker": "tastemaker.chat.rerank",
    "STRATEGIES": "tastemaker.chat.rerank",
    "Strategy": "tastemaker.chat.rerank",
    "fit_text_encoder": "tastemaker.chat.rerank",
    "ChatModel": "tastemaker.chat.llm",
    "OpenAIChatModel": "tastemaker.chat.llm",
    "FunctionChatModel": "tastemaker.chat.llm",
    "ChatModelError": "tastemaker.chat.llm",
    "ChatOutputError": "tastemaker.chat.llm",
    "LLMAnswerer": "tastemaker.chat.answer",
    "template_answer": "tastemaker.chat.answer",
    "ground": "tastemaker.chat.answer",
    "InjectionDetector": "tastemaker.chat.guard",
    "classify_request": "tastemaker.chat.guard",
    "refusal": "tastemaker.chat.guard",
    "sanitize": "tastemaker.chat.guard",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tastemaker.chat' has no attribute {name!r}")
