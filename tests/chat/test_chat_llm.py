"""The OpenAI-compatible client against a real HTTP server in the test, strict parsing, and the LLM reranker.

:class:`FakeLLMServer` (imported by the other chat tests) is a real HTTP server on 127.0.0.1
that speaks the chat-completions protocol: it answers each POST with the next scripted reply
(or a reply computed from the request) and records every request body and header.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from tastemaker.chat.linking import CatalogItem, ChatCatalog
from tastemaker.chat.llm import (ChatModelError, ChatOutputError, OpenAIChatModel, complete_parsed, parse_id_list,
                                 parse_title_list)
from tastemaker.chat.rerank import LLMReranker, OfflineReranker
from tastemaker.chat.state import DialogueState
from tastemaker.types import ItemList

Reply = str | tuple[int, str] | Callable[[dict[str, Any]], str]


class FakeLLMServer:
    """A chat-completions server on a free loopback port. ``replies``: what the next POSTs get,
    in order (a text becomes ``choices[0].message.content``; ``(status, body)`` is sent raw; a
    callable gets the request body); when they run out, ``default`` answers."""

    def __init__(self, default: Reply = "[]") -> None:
        self.replies: list[Reply] = []
        self.default = default
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                server.requests.append(body)
                server.headers.append(dict(self.headers))
                server.paths.append(self.path)
                reply = server.replies.pop(0) if server.replies else server.default
                if callable(reply):
                    reply = reply(body)
                if isinstance(reply, tuple):
                    status, raw = reply
                else:
                    status = 200
                    raw = json.dumps({"id": "x", "object": "chat.completion", "model": body.get("model"),
                                      "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                                   "finish_reason": "stop"}]})
                data = raw.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def model(self, **options: Any) -> OpenAIChatModel:
        return OpenAIChatModel(self.base_url, "fake-model", **{"backoff": 0.0, **options})

    def __enter__(self) -> FakeLLMServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


def small_catalog() -> ChatCatalog:
    rows = [("1", "Alien (1979)", ("Horror", "Sci-Fi")), ("2", "Heat (1995)", ("Action", "Crime")),
            ("3", "Toy Story (1995)", ("Animation", "Children")), ("4", "The Shining (1980)", ("Horror",)),
            ("5", "Amelie (2001)", ("Comedy", "Romance"))]
    return ChatCatalog([CatalogItem(i, t, int(t[-5:-1]), g, "", 10.0 - k) for k, (i, t, g) in enumerate(rows)])


def candidates(ids: list[str]) -> ItemList:
    return ItemList(np.asarray(ids, dtype=object), np.arange(len(ids), dtype=np.int32),
                    np.linspace(1.0, 0.5, len(ids), dtype=np.float32), ("src",) * len(ids), ("why",) * len(ids))


class ZeroEncoder:
    """A text encoder with no opinion: every similarity is 0, so the offline order is the pipeline's."""

    encoder_id = "zero"
    dimension = 2

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.zeros((len(texts), 2), dtype=np.float32)


# ---------------------------------------------------------------------- the client
def test_client_speaks_the_chat_completions_protocol(server: FakeLLMServer) -> None:
    server.replies = ["hello there"]
    model = server.model(api_key="sk-test", temperature=0.2)
    assert model.complete([{"role": "user", "content": "hi"}]) == "hello there"
    body = server.requests[0]
    assert server.paths == ["/v1/chat/completions"]
    assert body["model"] == "fake-model" and body["temperature"] == 0.2
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert server.headers[0]["Authorization"] == "Bearer sk-test"
    assert "sk-test" not in repr(model)


def test_base_url_without_a_path_gets_v1() -> None:
    assert OpenAIChatModel("http://host:8000", "m").url == "http://host:8000/v1/chat/completions"
    assert OpenAIChatModel("http://host:8000/v1/", "m").url == "http://host:8000/v1/chat/completions"
    assert OpenAIChatModel("https://x.org/api/openai", "m").url == "https://x.org/api/openai/chat/completions"


def test_client_retries_server_errors_and_reports_client_errors(server: FakeLLMServer) -> None:
    server.replies = [(503, "busy"), "ok now"]
    assert server.model(retries=1).complete([{"role": "user", "content": "x"}]) == "ok now"
    server.replies = [(400, "bad request")]
    with pytest.raises(ChatModelError, match="400"):
        server.model(retries=3).complete([{"role": "user", "content": "x"}])
    assert len(server.requests) == 3  # 400 is not retried
    server.replies = [(200, "{not json")]
    with pytest.raises(ChatModelError, match="outside the chat-completions protocol"):
        server.model(retries=0).complete([{"role": "user", "content": "x"}])


def test_unreachable_server_is_a_chat_model_error() -> None:
    with FakeLLMServer() as fake:
        url = fake.base_url
    with pytest.raises(ChatModelError, match="failed"):
        OpenAIChatModel(url, "m", retries=0, timeout=2).complete([{"role": "user", "content": "x"}])


# ---------------------------------------------------------------------- strict parsing
@pytest.mark.parametrize("text, expected", [
    ('["2", "1"]', ["2", "1"]), ("[2, 1]", ["2", "1"]), ('{"ids": ["3"]}', ["3"]), ("[]", []),
    ('```json\n["1"]\n```', ["1"]),
])
def test_parse_id_list_accepts_only_candidate_ids(text: str, expected: list[str]) -> None:
    assert parse_id_list(text, ["1", "2", "3"]) == expected


@pytest.mark.parametrize("text", [
    '["1", "1"]', '["9"]', '"1"', "1, 2", '{"ids": "1"}', '[true]', '[["1"]]', "Sure! Here: [\"1\"]",
    '{"ids": ["1"], "note": "x"}',
])
def test_parse_id_list_rejects_anything_else(text: str) -> None:
    with pytest.raises(ChatOutputError):
        parse_id_list(text, ["1", "2", "3"])


def test_parse_title_list() -> None:
    assert parse_title_list('["Heat (1995)", " Alien "]') == ["Heat (1995)", "Alien"]
    with pytest.raises(ChatOutputError):
        parse_title_list('["ok", 3]')


def test_complete_parsed_retries_once_with_the_error(server: FakeLLMServer) -> None:
    server.replies = ["nonsense", '["2"]']
    assert complete_parsed(server.model(), [{"role": "user", "content": "x"}], lambda t: parse_id_list(t, ["2"])) == ["2"]
    assert "invalid" in server.requests[1]["messages"][-1]["content"]
    server.replies = ["nonsense", "still nonsense"]
    with pytest.raises(ChatOutputError):
        complete_parsed(server.model(), [{"role": "user", "content": "x"}], lambda t: parse_id_list(t, ["2"]))


# ---------------------------------------------------------------------- the LLM reranker
def test_llm_reranker_uses_a_valid_answer_and_appends_the_rest(server: FakeLLMServer) -> None:
    catalog = small_catalog()
    reranker = LLMReranker(server.model(), catalog, OfflineReranker(catalog, ZeroEncoder()))
    server.replies = ['["4", "1"]']
    out = reranker.rerank(DialogueState(intent="scary"), candidates(["1", "2", "3", "4"]), 4, select=True)
    assert list(out.item_ids) == ["4", "1", "2", "3"] and reranker.last_fallback is None
    prompt = server.requests[0]["messages"][1]["content"]
    assert '<item id="4">The Shining (1980) | Horror</item>' in prompt and "Leave out" in prompt


@pytest.mark.parametrize("bad", ['["1", "9"]', "I think Alien!", '["2", "2"]', (500, "down")])
def test_llm_reranker_falls_back_to_the_offline_order_after_one_retry(server: FakeLLMServer, bad: Reply) -> None:
    catalog = small_catalog()
    reranker = LLMReranker(server.model(retries=0), catalog, OfflineReranker(catalog, ZeroEncoder()))
    server.replies = [bad, bad]
    out = reranker.rerank(DialogueState(), candidates(["1", "2", "3"]), 3)
    assert list(out.item_ids) == ["1", "2", "3"] and reranker.last_fallback
    assert len(server.requests) == (1 if isinstance(bad, tuple) else 2)  # transport errors are not re-asked


def test_llm_reranker_retry_can_recover(server: FakeLLMServer) -> None:
    catalog = small_catalog()
    reranker = LLMReranker(server.model(), catalog, OfflineReranker(catalog, ZeroEncoder()))
    server.replies = ['["7"]', '["3"]']
    assert list(reranker.rerank(DialogueState(), candidates(["1", "2", "3"]), 2).item_ids) == ["3", "1"]
