"""Chat models: the :class:`ChatModel` contract, an OpenAI-compatible client, and strict output parsing.

``ChatModel.complete(messages) -> str``: ``messages`` are OpenAI-style ``{"role", "content"}``
dicts; the answer is the assistant's text. :class:`OpenAIChatModel` speaks the
chat-completions protocol over HTTP (vLLM, llama.cpp server, Ollama, a hosted API):
``POST {base_url}/chat/completions`` with a JSON body ``{"model", "messages", "temperature",
"max_tokens"}``, and reads ``choices[0].message.content``. A ``base_url`` with no path
(``http://host:port``) gets ``/v1``. It needs ``httpx`` (the ``llm`` extra).

An LLM's output is never trusted: :func:`parse_id_list` accepts only a JSON list of ids that
are all among the allowed ones, without repeats, and raises :class:`ChatOutputError`
otherwise; callers retry once and then fall back to an offline answer.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, Self, runtime_checkable
from urllib.parse import urlsplit

from tastemaker.errors import MissingExtraError, TastemakerError

Message = Mapping[str, str]


class ChatModelError(TastemakerError, RuntimeError):
    """The chat model could not be reached or answered outside the protocol."""


class ChatOutputError(TastemakerError, ValueError):
    """A chat model's answer does not have the shape that was asked for."""


@runtime_checkable
class ChatModel(Protocol):
    """Completes a conversation: ``complete(messages) -> str`` (see the module doc)."""

    def complete(self, messages: Sequence[Message]) -> str: ...


class OpenAIChatModel:
    """A client of an OpenAI-compatible chat-completions endpoint (see the module doc).

    ``timeout`` is per request (seconds); ``retries`` more tries on connection errors, 429 and
    5xx, with exponential backoff from ``backoff`` seconds. Use it as a context manager, or call
    :meth:`close`, to release the connection pool.
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, temperature: float = 0.0,
                 max_tokens: int = 512, timeout: float = 30.0, retries: int = 1, backoff: float = 0.25) -> None:
        root = base_url.rstrip("/")
        self.url = f"{root}/v1/chat/completions" if urlsplit(root).path in ("", "/") else f"{root}/chat/completions"
        self.model = model
        self.api_key = api_key
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._client: Any = None

    def __repr__(self) -> str:  # never the key
        return f"OpenAIChatModel({self.url!r}, model={self.model!r})"

    def _http(self) -> Any:
        if self._client is None:
            try:
                import httpx
            except ImportError as exc:
                raise MissingExtraError("httpx", "llm") from exc
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = httpx.Client(timeout=self.timeout, headers=headers)
        return self._client

    def request_body(self, messages: Sequence[Message]) -> dict[str, Any]:
        """The JSON body sent for ``messages``."""
        return {"model": self.model, "messages": [dict(m) for m in messages], "temperature": self.temperature,
                "max_tokens": self.max_tokens, "stream": False}

    def complete(self, messages: Sequence[Message]) -> str:
        import httpx

        client = self._http()
        body = self.request_body(messages)
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = client.post(self.url, json=body)
            except httpx.HTTPError as exc:
                if last:
                    raise ChatModelError(f"POST {self.url} failed: {exc}") from exc
            else:
                if response.status_code == 200:
                    return _content(self.url, response)
                if last or not (response.status_code == 429 or response.status_code >= 500):
                    raise ChatModelError(f"POST {self.url} answered {response.status_code}: {response.text[:300]}")
            time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _content(url: str, response: Any) -> str:
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ChatModelError(f"{url} answered outside the chat-completions protocol: {response.text[:300]}") from exc
    if not isinstance(content, str):
        raise ChatModelError(f"{url} returned no text content")
    return content


class FunctionChatModel:
    """A :class:`ChatModel` from a function of the messages (for tests and local models
    called in-process, e.g. a transformers pipeline)."""

    def __init__(self, fn: Callable[[Sequence[Message]], str]) -> None:
        self.fn = fn

    def complete(self, messages: Sequence[Message]) -> str:
        return self.fn(messages)


# ---------------------------------------------------------------------- strict parsing
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def _json_value(text: str) -> Any:
    """The JSON value ``text`` holds: the whole text, or one fenced ```json block."""
    fenced = _FENCE.match(text)
    body = fenced.group(1) if fenced else text.strip()
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise ChatOutputError(f"not JSON: {exc.msg} at {exc.pos}") from None


def parse_id_list(text: str, allowed: Sequence[str], *, max_items: int | None = None) -> list[str]:
    """The ids of a JSON list (``["12", "7"]``, or ``{"ids": [...]}``), every one among
    ``allowed``, none repeated; numbers are read as their decimal string. Anything else is a
    :class:`ChatOutputError`. An empty list is valid (the model selected nothing)."""
    value = _json_value(text)
    if isinstance(value, dict) and set(value) <= {"ids", "items", "selected", "ranking"} and len(value) == 1:
        value = next(iter(value.values()))
    if not isinstance(value, list):
        raise ChatOutputError(f"expected a JSON list of ids, got {type(value).__name__}")
    pool = set(allowed)
    out: list[str] = []
    for entry in value:
        if isinstance(entry, bool) or not isinstance(entry, str | int):
            raise ChatOutputError(f"an id must be a string, got {entry!r:.40}")
        item_id = str(entry).strip()
        if item_id not in pool:
            raise ChatOutputError(f"{item_id!r:.40} is not one of the candidates")
        if item_id in out:
            raise ChatOutputError(f"{item_id!r:.40} is repeated")
        out.append(item_id)
    if max_items is not None and len(out) > max_items:
        raise ChatOutputError(f"{len(out)} ids, at most {max_items} were asked for")
    return out


def parse_title_list(text: str, *, max_items: int = 50) -> list[str]:
    """The titles of a JSON list of strings (``["Heat (1995)", ...]`` or ``{"titles": [...]}``),
    each at most 200 characters; anything else is a :class:`ChatOutputError`."""
    value = _json_value(text)
    if isinstance(value, dict) and len(value) == 1:
        value = next(iter(value.values()))
    if not isinstance(value, list) or not all(isinstance(t, str) and 0 < len(t.strip()) <= 200 for t in value):
        raise ChatOutputError("expected a JSON list of title strings")
    return [t.strip() for t in value][:max_items]


def parse_object(text: str, required: Sequence[str] = ()) -> dict[str, Any]:
    """A JSON object with at least the ``required`` keys, or a :class:`ChatOutputError`."""
    value = _json_value(text)
    if not isinstance(value, dict) or any(k not in value for k in required):
        raise ChatOutputError(f"expected a JSON object with {list(required)}")
    return value


def complete_parsed(model: ChatModel, messages: Sequence[Message], parse: Callable[[str], Any],
                    *, retries: int = 1) -> Any:
    """``parse(model.complete(messages))``; on a :class:`ChatOutputError` the model is told
    what was wrong and asked again, ``retries`` times; then the error propagates (callers
    fall back). A :class:`ChatModelError` (transport) propagates at once."""
    convo = list(messages)
    for attempt in range(retries + 1):
        answer = model.complete(convo)
        try:
            return parse(answer)
        except ChatOutputError as exc:
            if attempt == retries:
                raise
            convo = [*convo, {"role": "assistant", "content": answer[:2000]},
                     {"role": "user", "content": f"That answer was invalid ({exc}). Reply with the JSON only."}]
    raise AssertionError("unreachable")  # pragma: no cover
