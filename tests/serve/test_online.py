"""A bandit explorer in the service: impressions and clicks flow in over HTTP, the policy
learns at once, its state survives a restart, and the service's own log can be evaluated."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tastemaker.serve.service import Service
from tastemaker.serve.settings import Settings, TrainingSettings
from tastemaker.testing.http import live_server

from test_api import seed  # tests/serve is on the path (pytest's rootdir-relative import)

BANDIT_PIPELINE = """
candidates = 30
[[sources]]
kind = "model"
name = "als"
model = "als"
params = { embedding_size = 8, epochs = 10, reg = 0.1 }
[[sources]]
kind = "popularity"
[explorer]
kind = "bandit"
policy = "diag-linucb"
vectors = "als"
slots = 2
pool = 8
params = { alpha = 1.0 }
"""


def bandit_settings(settings: Settings, tmp_path: Path) -> Settings:
    path = tmp_path / "bandit.toml"
    path.write_text(BANDIT_PIPELINE)
    return settings.model_copy(update={"training": TrainingSettings(pipeline=str(path), beat_popularity=False)})


def test_impressions_and_clicks_teach_the_policy_and_survive_a_restart(settings: Settings, tmp_path: Path) -> None:
    settings = bandit_settings(settings, tmp_path)
    with live_server(settings) as client:
        seed(client)
        body = client.get("/v1/users/action-fan-1/recommendations", params={"n": 5}).json()
        assert body["policy"] == "bandit:diag-linucb"
        items = body["items"]
        assert [it["propensity"] for it in items[:3]] == [1.0, 1.0, 1.0]  # the ranked head
        assert [it["source"] for it in items[3:]] == ["bandit", "bandit"]  # the exploration slots
        clicked = items[3]["item_id"]
        r = client.post("/v1/events", json={"user_id": "action-fan-1", "item_id": clicked, "event_type": "click",
                                            "context": {"request_id": body["request_id"]}})
        assert r.status_code in (200, 201, 202), r.text
        second = client.get("/v1/users/action-fan-1/recommendations", params={"n": 5}).json()
        assert int(second["policy_version"]) > int(body["policy_version"])  # it learned before the next response
    # the store holds the impressions with their propensities, and the policy's state
    service = Service(settings, warn_if_open=False)
    try:
        shown = [e for _, e in service.store.events_since(0) if e.event_type == "impression"]
        assert len(shown) == 10
        assert {e.context["policy"] for e in shown} == {"bandit:diag-linucb"}
        assert sorted(e.context["position"] for e in shown[:5]) == [0, 1, 2, 3, 4]
        policy = service.engine.pipeline.explorer.policy_  # restored: snapshot + replay of the log
        d = policy.dim
        for item in {e.item_id for e in shown}:  # every logged impression counted once
            assert policy.stats[item][0] == sum(e.item_id == item for e in shown)
        rewarded = {item for item, s in policy.stats.items() if np.abs(s[1 + d :]).sum() > 0}
        assert rewarded == {clicked}  # the click, matched to its request's impression
        # off-policy evaluation over the service's own log: the logging policy's value (its own
        # propensities as the target) is the observed click rate, and a uniform policy's IPS
        # estimate is finite and in [0, 1]
        from tastemaker.eval import ope

        read = ope.log_from_store(service.store)
        log = read.log
        assert log.n_rounds == 10 and log.reward.sum() == 1 and set(read.policies) == {"bandit:diag-linucb"}
        own = np.zeros((log.n_rounds, log.n_actions, log.len_list))
        own[np.arange(log.n_rounds), log.action, log.position] = log.pscore
        assert ope.ips(log, own) == pytest.approx(log.reward.mean())
        uniform = np.full((log.n_rounds, log.n_actions, log.len_list), 1.0 / log.n_actions)
        value = ope.estimate(log, uniform, "snips")
        assert np.isfinite(value.value) and 0.0 <= value.value <= 1.0 and np.isfinite(value.se)
    finally:
        service.close()


def test_a_restart_replays_what_the_snapshot_missed(settings: Settings, tmp_path: Path) -> None:
    from tastemaker.protocols import Event

    settings = bandit_settings(settings, tmp_path)
    with live_server(settings) as client:
        seed(client)
        body = client.get("/v1/users/drama-fan-3/recommendations", params={"n": 4}).json()
    explored = body["items"][-1]["item_id"]
    first = Service(settings, warn_if_open=False)
    try:
        before = first.engine.pipeline.explorer.policy_.stats[explored].copy()
        # written by another process after this one's snapshot (or while it was down)
        first.store.append_events([Event("drama-fan-3", explored, "click", 1.0, 2e9, {"request_id": body["request_id"]})])
    finally:
        first.store.close()  # no snapshot: as if the process died
    again = Service(settings, warn_if_open=False)
    try:
        after = again.engine.pipeline.explorer.policy_.stats[explored]
        assert after[0] == before[0]  # the impression is not counted again
        assert np.abs(after - before).sum() > 0  # the click, replayed from the log
        assert again.online.applied == {"impressions": 0, "rewards": 1}
    finally:
        again.close()


GRAPH_PIPELINE = """
[[sources]]
kind = "graph"
walks = 300
walk_length = 20
meritrank = false
[[sources]]
kind = "popularity"
"""


def test_an_event_posted_to_the_service_changes_the_graph_sources_next_answer(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "graph.toml"
    path.write_text(GRAPH_PIPELINE)
    settings = settings.model_copy(update={"training": TrainingSettings(pipeline=str(path), beat_popularity=False)})
    with live_server(settings) as client:
        seed(client)
        # a drama fan starts watching action films: the walk from them now reaches action fans' items
        before = client.get("/v1/users/drama-fan-1/recommendations", params={"n": 5}).json()["items"]
        assert all(it["item_id"].startswith("d") for it in before if it["source"] == "graph")
        events = [{"user_id": "drama-fan-1", "item_id": f"a{k}", "event_type": "watch"} for k in range(6)]
        assert client.post("/v1/events/bulk", json={"events": events}).status_code == 200
        after = client.get("/v1/users/drama-fan-1/recommendations", params={"n": 5}).json()["items"]
        graph = [it for it in after if it["source"] == "graph"]
        assert any(it["item_id"].startswith("a") for it in graph), after  # the new edges were walked at once
