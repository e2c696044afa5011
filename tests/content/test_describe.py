"""Item descriptions: known answers on real catalog rows, missing values, de-duplication, the
describer hook, and OpenAIDescriber against a local fake chat-completions server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from tastemaker.content.describe import (
    Describer,
    DescriberError,
    OpenAIDescriber,
    describe,
    describe_catalog,
    with_descriptions,
)
from tastemaker.data.dataset import Dataset
from tastemaker.data.loaders import load_dataset


@pytest.fixture(scope="module")
def movielens() -> Dataset:
    return load_dataset("movielens-latest-small")


def test_movielens_rows(movielens: Dataset) -> None:
    catalog = movielens.catalog
    rows = catalog.set_index("title", drop=False)
    assert describe(rows.loc["Toy Story (1995)"].to_dict()) == (
        "Toy Story (1995). Categories: Adventure, Animation, Children, Comedy, Fantasy. Tags: pixar, fun."
    )
    # Jumanji's text is its tags joined, and its tag "fantasy" is also a genre: neither repeats.
    assert describe(rows.loc["Jumanji (1995)"].to_dict()) == (
        "Jumanji (1995). Categories: Adventure, Children, Fantasy. Tags: magic board game, Robin Williams, game."
    )
    assert describe(rows.loc["Heat (1995)"].to_dict()) == "Heat (1995). Categories: Action, Crime, Thriller."


@pytest.mark.realdata
def test_amazon_scientific_rows_do_not_repeat_the_title() -> None:
    catalog = load_dataset("amazon-scientific-unisrec").catalog
    first = describe(catalog.iloc[0].to_dict())
    assert first == (
        "PORTER-CABLE 740000801 4 1/2-Inch x 10yd 80 Grit Adhesive-Backed Sanding Roll. Industrial & Scientific "
        "Abrasive & Finishing Products Manual Sanding Products Sanding Rolls. PORTER-CABLE."
    )
    texts = describe_catalog(catalog)
    titles = [" ".join(title.split()) for title in catalog["title"]]  # describe collapses whitespace
    assert not any(text.startswith(f"{title}. {title}") for text, title in zip(texts, titles, strict=True))
    # Once only, except where the loader cut a title at ". " inside it ("Mr" of "Mr. Heater").
    assert sum(text.count(title) != 1 for text, title in zip(texts, titles, strict=True)) <= 10  # measured: 8


def test_missing_values_are_skipped_and_lists_deduplicated() -> None:
    item = {
        "title": "  Widget\n Pro ", "categories": ["Tools", "tools", "", None, "Garden"], "brand": float("nan"),
        "tags": np.array(["shiny", "Tools", "SHINY", "sharp"]), "text": "Widget Pro - a sharp tool.",
        "description": pd.NA, "created_at": 1.0,
    }
    assert describe(item) == "Widget Pro. Categories: Tools, Garden. Tags: shiny, sharp. a sharp tool."
    assert describe({"title": None, "text": np.float32("nan")}) == ""
    assert describe({"title": "Only a title!"}) == "Only a title!"
    assert describe({"title": "T", "brand": "Acme", "text": "Acme"}) == "T. Brand: Acme."
    assert describe({"title": "T", "text": "Tools for T"}) == "T. Tools for T."  # a prefix only at a word end
    long = describe({"title": "T", "text": "word " * 100}, max_chars=40)
    assert len(long) <= 43 and long.endswith("...")


def test_describe_catalog_and_with_descriptions(movielens: Dataset) -> None:
    catalog = movielens.catalog.iloc[:50]
    texts = describe_catalog(catalog)
    assert texts.name == "description" and texts.index.equals(catalog.index) and len(texts) == 50

    shouting: Describer = lambda item: str(item["title"]).upper()  # noqa: E731
    assert isinstance(shouting, Describer)
    assert describe_catalog(catalog, shouting).iloc[0] == "TOY STORY (1995)"
    assert describe_catalog(catalog, shouting, workers=4).tolist() == describe_catalog(catalog, shouting).tolist()

    described = with_descriptions(movielens)
    assert "description" not in movielens.catalog.columns  # the dataset is immutable
    assert described.catalog["description"].iloc[0].startswith("Toy Story (1995). Categories:")
    again = with_descriptions(described)  # the output column is never read as input
    assert again.catalog["description"].equals(described.catalog["description"])
    assert described.n_items == movielens.n_items and described.interactions is movielens.interactions

    with pytest.raises(TypeError, match="returned int"):
        describe_catalog(catalog, lambda item: 3)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- OpenAI-compatible describer
class _FakeChat(BaseHTTPRequestHandler):
    """Speaks just enough of POST /v1/chat/completions; records what it was sent."""

    requests: ClassVar[list[dict[str, Any]]] = []
    failures: ClassVar[list[int]] = []  # status codes to answer before succeeding

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if self.failures:
            self._reply(self.failures.pop(0), {"error": {"message": "try again"}})
            return
        if self.path != "/v1/chat/completions":
            self._reply(404, {"error": {"message": "not found"}})
            return
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        content = f"  A short description of {user.removeprefix('Item: ').split('.')[0]}.\n"
        self._reply(200, {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 8, "total_tokens": 18},
        })

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def chat_server() -> Iterator[str]:
    _FakeChat.requests, _FakeChat.failures = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeChat)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_openai_describer_speaks_chat_completions(chat_server: str, movielens: Dataset) -> None:
    row = movielens.catalog.iloc[0].to_dict()
    with OpenAIDescriber(chat_server, "tiny-llm", api_key="secret-key") as describer:
        assert describer(row) == "A short description of Toy Story (1995)."
    sent = _FakeChat.requests[0]
    assert sent["path"] == "/v1/chat/completions" and sent["auth"] == "Bearer secret-key"
    body = sent["body"]
    assert body["model"] == "tiny-llm" and body["stream"] is False and body["temperature"] == 0.0
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert all(isinstance(m["content"], str) and m["content"] for m in body["messages"])
    assert "factual description" in body["messages"][0]["content"]
    assert body["messages"][1]["content"] == "Item: " + describe(row)


def test_openai_describer_in_a_catalog_with_retries_and_errors(chat_server: str, movielens: Dataset) -> None:
    catalog = movielens.catalog.iloc[:3]
    with OpenAIDescriber(chat_server + "/v1/", "m", retries=1) as describer:  # a /v1 root works too
        _FakeChat.failures = [503]  # the first request fails, its retry succeeds
        texts = describe_catalog(catalog, describer, workers=2)
        assert texts.tolist() == [f"A short description of {t}." for t in catalog["title"]]
        assert len(_FakeChat.requests) == 4 and _FakeChat.requests[0]["auth"] is None

        _FakeChat.failures = [400]
        with pytest.raises(DescriberError, match="answered 400"):
            describer(catalog.iloc[0].to_dict())
    with OpenAIDescriber(chat_server + "/elsewhere", "m", retries=0) as wrong, pytest.raises(DescriberError, match="404"):
        wrong(catalog.iloc[0].to_dict())
