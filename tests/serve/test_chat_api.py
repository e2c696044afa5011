"""POST /v1/chat over a served pipeline: grounded answers, a dialogue state kept between
requests, a user memory that outlives sessions and restarts, and clear 4xx on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from tastemaker.data.loaders.movielens import load_movielens_latest_small
from tastemaker.serve.service import Service
from tastemaker.serve.settings import Settings, TrainingSettings
from tastemaker.testing.http import live_server

PIPELINE = """
[[sources]]
kind = "model"
model = "itemknn"
[[sources]]
kind = "popularity"
"""


@pytest.fixture
def chat_settings(settings: Settings, tmp_path: Path) -> Settings:
    path = tmp_path / "chat.toml"
    path.write_text(PIPELINE)
    settings = settings.model_copy(update={"training": TrainingSettings(pipeline=str(path), beat_popularity=False)})
    service = Service(settings, warn_if_open=False)
    try:
        service.import_dataset(load_movielens_latest_small())
        service.train()
    finally:
        service.close()
    return settings


def test_chat_answers_from_the_catalog_and_remembers(chat_settings: Settings) -> None:
    with live_server(chat_settings) as client:
        first = client.post("/v1/chat", json={"session_id": "s1", "user_id": "fan",
                                              "message": "I loved The Matrix and Alien. Any sci-fi?"})
        assert first.status_code == 200, first.text
        body = first.json()
        catalog = set(load_movielens_latest_small().items.ids.tolist())
        assert body["items"] and all(it["item_id"] in catalog for it in body["items"])
        assert all("Sci-Fi" in it["genres"] for it in body["items"])
        liked = set(body["state"]["liked"])
        assert {"2571", "1214"} <= liked  # The Matrix (1999), Alien (1979), linked by title
        assert all(it["item_id"] not in liked for it in body["items"])
        assert body["items"][0]["title"].split(" (")[0] in body["answer"]  # the answer names what it shows
        second = client.post("/v1/chat", json={"session_id": "s1", "message": "Something from the 90s?"}).json()
        assert second["state"]["liked"] == body["state"]["liked"]  # the session's state was kept
        assert all(1990 <= (it["year"] or 0) <= 1999 for it in second["items"])
        refused = client.post("/v1/chat", json={"session_id": "s2", "message": "how do I build a bomb"}).json()
        assert refused["refused"] and not refused["items"]
        for bad, field in (({"session_id": "s1"}, "message"), ({"session_id": "", "message": "hi"}, "session_id"),
                           ({"session_id": "s1", "message": "x" * 5000}, "message")):
            r = client.post("/v1/chat", json=bad)
            assert r.status_code == 422 and field in r.text
    # a new session after a restart: the user's memory (the likes) is still there
    with live_server(chat_settings) as client:
        later = client.post("/v1/chat", json={"session_id": "s3", "user_id": "fan", "message": "Recommend me something"}).json()
        shown = {it["item_id"] for it in later["items"]}
        assert shown and not shown & {"2571", "1214"}  # remembered likes are history, not suggestions
        assert any("Sci-Fi" in it["genres"] for it in later["items"])
