"""The HTTP API through a real uvicorn server: feedback, swaps, auth, experiments, bad input."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter

import pytest

from tastemaker.serve.settings import ApiKey, Experiment, Settings, TrainingSettings, Variant, hash_secret

from tastemaker.testing.http import live_server

GENRES = {"action": 12, "drama": 12}


def catalog() -> list[dict]:
    items = []
    for genre, count in GENRES.items():
        for k in range(count):
            items.append({"item_id": f"{genre[0]}{k}", "title": f"{genre.title()} film {k}", "categories": [genre]})
    return items


def taste_events(users_per_genre: int = 15) -> list[dict]:
    """Users like one genre: each watched most of its films (a known answer for any CF model)."""
    events = []
    for genre, count in GENRES.items():
        for u in range(users_per_genre):
            for k in range(count):
                if (k + u) % 4 != 0:  # each user misses a quarter of their genre
                    events.append({"user_id": f"{genre}-fan-{u}", "item_id": f"{genre[0]}{k}",
                                   "event_type": "watch", "timestamp": 1000 + len(events)})
    return events


def seed(client, train: bool = True) -> None:
    assert client.post("/v1/items", json={"items": catalog()}).status_code == 200
    assert client.post("/v1/events/bulk", json={"events": taste_events()}).status_code == 200
    if train:
        r = client.post("/v1/admin/train", json={"wait": True})
        assert r.status_code == 200, r.text


def genre_of(item_id: str) -> str:
    return "action" if item_id.startswith("a") else "drama"


# ---------------------------------------------------------------------- basics
def test_health_docs_and_metrics(settings: Settings) -> None:
    with live_server(settings) as client:
        assert client.get("/healthz").json() == {"status": "ok", "model_version": None}
        assert "/v1/users/{user_id}/recommendations" in client.get("/openapi.json").json()["paths"]
        assert client.get("/docs").status_code == 200
        client.get("/healthz")
        text = client.get("/metrics").text
        assert "tastemaker_requests_total" in text and 'route="/healthz"' in text


def test_metrics_have_a_latency_histogram_per_pipeline_stage(settings: Settings) -> None:
    with live_server(settings) as client:
        seed(client)
        client.get("/v1/users/drama-fan-1/recommendations", params={"n": 3})
        client.get("/v1/users/nobody-yet/recommendations", params={"n": 3})  # the fallback answers
        text = client.get("/metrics").text
        for stage in ("ease", "ranker", "explorer", "explain", "popular-fallback"):
            assert f'tastemaker_stage_seconds_count{{stage="{stage}"}}' in text, stage
        count = re.search(r'tastemaker_stage_seconds_count\{stage="ease"\} (\S+)', text)
        assert count is not None and float(count.group(1)) == 2.0


def test_items_crud_and_availability(settings: Settings) -> None:
    with live_server(settings) as client:
        seed(client, train=False)
        item = client.get("/v1/items/a1").json()
        assert item["title"] == "Action film 1" and item["categories"] == ["action"]
        assert client.put("/v1/items/a1/availability", json={"available": False}).status_code == 200
        assert client.get("/v1/items/a1").json()["available"] is False
        assert client.delete("/v1/items/a2").status_code == 200
        assert client.get("/v1/items/a2").status_code == 404
        assert client.post("/v1/users", json={"users": [{"user_id": "x", "attributes": {"age": 30}}]}).json() == {"accepted": 1}


# ---------------------------------------------------------------------- real time
def test_feedback_changes_the_next_response(settings: Settings) -> None:
    with live_server(settings) as client:
        seed(client)
        first = client.get("/v1/users/action-fan-1/recommendations", params={"n": 3}).json()
        assert first["model_version"] == "v0001"
        top = first["items"][0]["item_id"]
        assert genre_of(top) == "action" and first["items"][0]["reason"].startswith("because you watched Action film")
        # the user watches the top item: the next response no longer shows it, without retraining
        assert client.post("/v1/events", json={"user_id": "action-fan-1", "item_id": top, "event_type": "watch"}).status_code == 200
        second = client.get("/v1/users/action-fan-1/recommendations", params={"n": 3}).json()
        assert top not in [i["item_id"] for i in second["items"]]
        assert second["model_version"] == "v0001"

        # a brand-new user: popular items, saying so; after one event, that event drives the list
        cold = client.get("/v1/users/newcomer/recommendations", params={"n": 4}).json()
        assert all(i["source"] == "popular-fallback" and i["reason"].startswith("popular") and "(no history yet)" in i["reason"] for i in cold["items"])
        client.post("/v1/events", json={"user_id": "newcomer", "item_id": "d3", "event_type": "watch"})
        warm = client.get("/v1/users/newcomer/recommendations", params={"n": 4}).json()
        assert [genre_of(i["item_id"]) for i in warm["items"]] == ["drama"] * 4
        assert all(i["reason"] == "because you watched Drama film 3" for i in warm["items"])
        assert "d3" not in [i["item_id"] for i in warm["items"]]


def test_anonymous_session_similar_items_and_filters(settings: Settings) -> None:
    with live_server(settings) as client:
        seed(client)
        session = client.post("/v1/recommendations", json={"items": ["a1", "a2"], "n": 5}).json()
        assert [genre_of(i["item_id"]) for i in session["items"]] == ["action"] * 5
        assert not {"a1", "a2"} & {i["item_id"] for i in session["items"]}
        similar = client.get("/v1/items/d4/similar", params={"n": 3}).json()
        assert all(genre_of(i["item_id"]) == "drama" and i["reason"] == "similar to Drama film 4" for i in similar["items"])
        only_drama = client.get("/v1/users/action-fan-2/recommendations", params={"n": 3, "categories": "drama"}).json()
        assert [genre_of(i["item_id"]) for i in only_drama["items"]] == ["drama"] * 3
        client.put("/v1/items/a0/availability", json={"available": False})
        excluded = client.get("/v1/users/action-fan-0/recommendations", params={"n": 20, "exclude": "a4"}).json()
        shown = {i["item_id"] for i in excluded["items"]}
        assert "a0" not in shown and "a4" not in shown


def test_no_model_falls_back_to_popular_and_fresh_items(settings: Settings) -> None:
    with live_server(settings) as client:
        client.post("/v1/items", json={"items": catalog()})
        client.post("/v1/events/bulk", json={"events": [{"user_id": "u", "item_id": "d5"}, {"user_id": "v", "item_id": "d5"}]})
        r = client.get("/v1/users/someone/recommendations", params={"n": 3}).json()
        assert r["model_version"] is None
        assert r["items"][0]["item_id"] == "d5" and r["items"][0]["source"] == "popular"
        assert "no trained model yet" in r["items"][0]["reason"]
        assert r["items"][1]["source"] == "fresh" and r["items"][1]["reason"].startswith("new in the catalog")


# ---------------------------------------------------------------------- versions
def test_training_versions_activate_and_rollback(settings: Settings) -> None:
    with live_server(settings) as client:
        seed(client)
        second = client.post("/v1/admin/train", json={"wait": True, "model": "itemknn", "params": {"k": 5}}).json()
        assert second["version"] == "v0002" and client.get("/healthz").json()["model_version"] == "v0002"
        versions = client.get("/v1/admin/models").json()
        assert [v["version"] for v in versions] == ["v0001", "v0002"]
        assert [v["active"] for v in versions] == [False, True]
        assert versions[0]["metrics"]["ndcg@10"] > 0.2  # two clean taste groups (random would be ~0.06)
        assert client.post("/v1/admin/rollback").json() == {"active": "v0001"}
        assert client.get("/healthz").json()["model_version"] == "v0001"
        assert client.post("/v1/admin/models/v0002/activate").json() == {"active": "v0002", "reloaded": True}
        assert client.post("/v1/admin/models/v0002/activate").json() == {"active": "v0002", "reloaded": False}
        assert client.post("/v1/admin/models/v0099/activate").status_code == 404
        bad = client.post("/v1/admin/train", json={"wait": True, "model": "ease", "params": {"reg": -1}})
        assert bad.status_code == 422 and "reg" in bad.text


def test_quality_floor_refuses_a_bad_model(tmp_path) -> None:
    settings = Settings(store_url=f"sqlite:///{tmp_path / 's.db'}", models_dir=tmp_path / "m",
                        training=TrainingSettings(model="most-popular", min_ndcg10=0.9))
    with live_server(settings) as client:
        seed(client, train=False)
        r = client.post("/v1/admin/train", json={"wait": True})
        assert r.status_code == 409 and "floor" in r.json()["error"]
        assert client.get("/healthz").json()["model_version"] is None


def test_atomic_swap_under_concurrent_requests(settings: Settings) -> None:
    with live_server(settings) as client:
        seed(client)
        client.post("/v1/admin/train", json={"wait": True, "model": "itemknn", "params": {"k": 11}, "activate": False})
        failures: list[str] = []
        seen_versions: Counter[str] = Counter()
        stop = threading.Event()

        def hammer(user: str) -> None:
            import httpx

            with httpx.Client(base_url=str(client.base_url), timeout=30) as c:
                while not stop.is_set():
                    r = c.get(f"/v1/users/{user}/recommendations", params={"n": 3})
                    if r.status_code != 200:
                        failures.append(r.text)
                        continue
                    body = r.json()
                    seen_versions[body["model_version"]] += 1
                    # each response comes whole from one version: its items, scores and sources
                    expected_source = {"v0001": "ease", "v0002": "itemknn"}[body["model_version"]]
                    if len(body["items"]) != 3 or any(
                        genre_of(i["item_id"]) != "drama" or i["source"] != expected_source for i in body["items"]
                    ):
                        failures.append(str(body))

        threads = [threading.Thread(target=hammer, args=(f"drama-fan-{k}",)) for k in range(4)]
        for t in threads:
            t.start()

        def served() -> int:
            return sum(seen_versions.values())

        for version in ["v0002", "v0001", "v0002", "v0001", "v0002"]:
            # let requests land between swaps, however slow the machine is
            before, deadline = served(), time.monotonic() + 30
            while served() < before + 4 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert client.post(f"/v1/admin/models/{version}/activate").status_code == 200
        stop.set()
        for t in threads:
            t.join()
        assert not failures, failures[:3]
        assert set(seen_versions) == {"v0001", "v0002"} and sum(seen_versions.values()) >= 20


# ---------------------------------------------------------------------- security
def test_auth_scopes_and_rate_limits(tmp_path) -> None:
    keys = [
        ApiKey(name="reader", sha256=hash_secret("r-secret"), scopes=["read"], rate_per_second=0.001, burst=5),
        ApiKey(name="writer", sha256=hash_secret("w-secret"), scopes=["read", "write"]),
        ApiKey(name="boss", sha256=hash_secret("a-secret"), scopes=["read", "write", "admin"]),
    ]
    settings = Settings(store_url=f"sqlite:///{tmp_path / 's.db'}", models_dir=tmp_path / "m", api_keys=keys)
    with live_server(settings) as client:
        event = {"user_id": "u", "item_id": "i"}
        assert client.post("/v1/events", json=event).status_code == 401
        assert client.post("/v1/events", json=event, headers={"Authorization": "Bearer nope"}).status_code == 401
        r = client.post("/v1/events", json=event, headers={"Authorization": "Bearer r-secret"})
        assert r.status_code == 403 and "write" in r.json()["error"]
        assert client.post("/v1/events", json=event, headers={"X-API-Key": "w-secret"}).status_code == 200
        assert client.get("/v1/admin/models", headers={"X-API-Key": "w-secret"}).status_code == 403
        assert client.get("/v1/admin/models", headers={"X-API-Key": "a-secret"}).status_code == 200
        codes = [client.get("/v1/items/i", headers={"X-API-Key": "r-secret"}).status_code for _ in range(8)]
        assert codes.count(429) >= 2 and 404 in codes  # 4 left in the burst after the 403, then limited
        assert client.get("/healthz").status_code == 200  # health needs no key


def test_request_size_limit(tmp_path) -> None:
    settings = Settings(store_url=f"sqlite:///{tmp_path / 's.db'}", models_dir=tmp_path / "m", max_request_bytes=2048)
    with live_server(settings) as client:
        big = {"events": [{"user_id": f"user-{k}", "item_id": "x"} for k in range(200)]}
        r = client.post("/v1/events/bulk", json=big)
        assert r.status_code == 413 and "2048" in r.json()["error"]


# ---------------------------------------------------------------------- experiments
def test_ab_assignment_is_stable_and_the_split_close_to_configured(tmp_path) -> None:
    exp = Experiment(name="home", variants=[Variant(name="control", weight=0.3), Variant(name="treatment", weight=0.7)])
    settings = Settings(store_url=f"sqlite:///{tmp_path / 's.db'}", models_dir=tmp_path / "m", experiments=[exp])
    with live_server(settings) as client:
        seed(client)
        variants = {}
        for k in range(400):
            variants[k] = client.get(f"/v1/users/visitor-{k}/recommendations", params={"n": 2}).json()["variant"]
        share = sum(v == "treatment" for v in variants.values()) / len(variants)
        assert abs(share - 0.7) < 0.07, share  # 400 users: sd of the share is 0.023
        for k in range(0, 400, 37):  # stable on repeat
            assert client.get(f"/v1/users/visitor-{k}/recommendations", params={"n": 2}).json()["variant"] == variants[k]
        # click-through per variant from the logged impressions and the clicks
        for k in range(40):
            body = client.get(f"/v1/users/visitor-{k}/recommendations", params={"n": 2}).json()
            if variants[k] == "treatment":
                client.post("/v1/events", json={"user_id": f"visitor-{k}", "item_id": body["items"][0]["item_id"],
                                                "event_type": "click", "context": {"request_id": body["request_id"]}})
        stats = client.get("/v1/experiments/home").json()["variants"]
        assert stats["control"]["clicks"] == 0 and stats["treatment"]["clicks"] > 0
        assert 0 < stats["treatment"]["ctr"] <= 1


def test_interleaving_finds_the_ranker_users_prefer(tmp_path) -> None:
    exp = Experiment(name="interleave-knn-vs-pop", variants=[Variant(name="itemknn", weight=1, model_version="v0001"),
                                                             Variant(name="popular", weight=1, model_version="v0002")])
    settings = Settings(store_url=f"sqlite:///{tmp_path / 's.db'}", models_dir=tmp_path / "m", experiments=[exp])
    with live_server(settings) as client:
        seed(client, train=False)
        client.post("/v1/admin/train", json={"wait": True, "model": "itemknn", "params": {"k": 10}})
        client.post("/v1/admin/train", json={"wait": True, "model": "most-popular", "activate": False})
        # synthetic preference: each user clicks the shown items of their own genre only
        for genre in GENRES:
            for u in range(15):
                user = f"{genre}-fan-{u}"
                body = client.get(f"/v1/users/{user}/recommendations",
                                  params={"n": 6, "experiment": exp.name}).json()
                assert {i["team"] for i in body["items"]} <= {"a", "b"}
                for item in body["items"]:
                    if genre_of(item["item_id"]) == genre:
                        client.post("/v1/events", json={"user_id": user, "item_id": item["item_id"], "event_type": "click",
                                                        "context": {"request_id": body["request_id"]}})
        result = client.get(f"/v1/experiments/{exp.name}").json()
        assert result["winner"] == "itemknn", result
        assert result["wins_a"] > result["wins_b"]


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("method", "path", "payload", "field"),
    [
        ("post", "/v1/items", {"items": [{"title": "no id"}]}, "body.items.0.item_id"),
        ("post", "/v1/items", {"items": []}, "body.items"),
        ("post", "/v1/items", {"items": [{"item_id": "x", "categories": "drama"}]}, "body.items.0.categories"),
        ("put", "/v1/items/a1/availability", {"available": "maybe"}, "body.available"),
        ("post", "/v1/users", {"users": [{"user_id": ""}]}, "body.users.0.user_id"),
        ("post", "/v1/events", {"user_id": "u"}, "body.item_id"),
        ("post", "/v1/events", {"user_id": "u", "item_id": "i", "value": "high"}, "body.value"),
        ("post", "/v1/events", {"user_id": "u", "item_id": "i", "colour": "red"}, "body.colour"),
        ("post", "/v1/events/bulk", {"events": [{"user_id": "u", "item_id": "i"}, {"item_id": "j"}]}, "body.events.1.user_id"),
        ("get", "/v1/users/u/recommendations?n=0", None, "query.n"),
        ("get", "/v1/users/u/recommendations?n=ten", None, "query.n"),
        ("post", "/v1/recommendations", {"items": "a1"}, "body.items"),
        ("post", "/v1/recommendations", {"items": [], "n": -1}, "body.n"),
        ("get", "/v1/items/a1/similar?n=0", None, "query.n"),
        ("post", "/v1/admin/train", {"wait": "yes please"}, "body.wait"),
        ("post", "/v1/admin/train", {"model": "gpt"}, "model"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(settings: Settings, method, path, payload, field) -> None:
    with live_server(settings) as client:
        r = client.request(method.upper(), path, json=payload)
        assert 400 <= r.status_code < 500, r.text
        body = r.json()
        assert field in body["error"], body  # one error shape: schemas.ErrorOut


def test_missing_things_are_404(settings: Settings) -> None:
    with live_server(settings) as client:
        assert client.get("/v1/items/nope").status_code == 404
        assert client.delete("/v1/items/nope").status_code == 404
        assert client.put("/v1/items/nope/availability", json={"available": True}).status_code == 404
        assert client.get("/v1/experiments/nope").status_code == 404
        assert client.post("/v1/admin/rollback").status_code == 409
        r = client.post("/v1/events", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422


@pytest.mark.parametrize("exact_below", [0, 20_000], ids=["hnsw", "exact"])
def test_vector_models_are_served_through_the_index(tmp_path, exact_below) -> None:
    settings = Settings(store_url=f"sqlite:///{tmp_path / 's.db'}", models_dir=tmp_path / "m", ann_exact_below=exact_below,
                        training=TrainingSettings(model="als", params={"embedding_size": 8, "reg": 1.0, "alpha": 10.0, "epochs": 30}))
    with live_server(settings) as client:
        seed(client)
        body = client.get("/v1/users/drama-fan-3/recommendations", params={"n": 3}).json()
        assert [genre_of(i["item_id"]) for i in body["items"]] == ["drama"] * 3
        assert all(i["source"] == "als" and i["reason"].startswith("because you watched Drama") for i in body["items"])
        top = body["items"][0]["item_id"]
        client.post("/v1/events", json={"user_id": "drama-fan-3", "item_id": top, "event_type": "watch"})
        after = client.get("/v1/users/drama-fan-3/recommendations", params={"n": 3}).json()
        assert top not in {i["item_id"] for i in after["items"]}  # excluded at once, through the index


def test_the_vector_index_is_stored_with_the_version_and_reused(tmp_path) -> None:
    """The HNSW index is written into the version's pipeline artifact once; a restart (a new
    service on the same models dir) loads it instead of rebuilding, and answers the same; a
    damaged index fails the artifact's checksums, so that version is refused, never served."""
    from tastemaker.errors import ArtifactError
    from tastemaker.serve.engine import ModelRegistry
    from tastemaker.serve.service import Service

    settings = Settings(store_url=f"sqlite:///{tmp_path / 's.db'}", models_dir=tmp_path / "m", ann_exact_below=0,
                        training=TrainingSettings(model="als", params={"embedding_size": 8, "reg": 1.0, "alpha": 10.0, "epochs": 30}))
    with live_server(settings) as client:
        seed(client)
        first = client.get("/v1/users/drama-fan-3/recommendations", params={"n": 5}).json()["items"]
        version = client.get("/v1/admin/status").json()["model_version"]
    (index_dir,) = (tmp_path / "m" / version / "stages").glob("*-source-als/index")
    assert (index_dir / "index.json").is_file() and (index_dir / "index.faiss").is_file()
    stamp = (index_dir / "index.faiss").stat().st_mtime_ns

    service = Service(settings)  # a restart: loads the stored index
    try:
        assert type(service.engine.pipeline.sources[0].index).__name__ == "FaissHNSWIndex"
        assert (index_dir / "index.faiss").stat().st_mtime_ns == stamp
    finally:
        service.close()
    with live_server(settings) as client:
        again = client.get("/v1/users/drama-fan-3/recommendations", params={"n": 5}).json()["items"]
    assert [i["item_id"] for i in again] == [i["item_id"] for i in first]

    (index_dir / "index.faiss").write_bytes(b"not a faiss index")
    with pytest.raises(ArtifactError, match="index.faiss is corrupted"):
        ModelRegistry(tmp_path / "m").load(version)


def test_a_new_item_is_recommended_from_its_content_before_any_retraining(tmp_path) -> None:
    """Two-tower encodes an item it has never seen from its categories: posted to the catalog,
    it joins the served model and its index at once and is explained as a new item."""
    settings = Settings(
        store_url=f"sqlite:///{tmp_path / 's.db'}", models_dir=tmp_path / "m", ann_exact_below=0,
        training=TrainingSettings(model="two-tower", params={
            "embedding_size": 16, "epochs": 40, "learning_rate": 1e-2, "id_dropout": 0.5, "validation_users": 0,
        }),
    )
    with live_server(settings) as client:
        seed(client)
        version = client.get("/v1/admin/status").json()["model_version"]
        new = {"item_id": "d-new", "title": "Drama film, new", "categories": ["drama"]}
        assert client.post("/v1/items", json={"items": [new]}).status_code == 200
        body = client.get("/v1/users/drama-fan-3/recommendations", params={"n": 4}).json()
        assert client.get("/v1/admin/status").json()["model_version"] == version  # no retraining
    ranked = [i["item_id"] for i in body["items"]]
    assert "d-new" in ranked and all(genre_of(i) == "drama" for i in ranked)
    reason = next(i["reason"] for i in body["items"] if i["item_id"] == "d-new")
    assert reason.startswith("new item like Drama film"), reason
    with live_server(settings) as client:  # a restart: the stored version lacks it, the store has it
        again = client.get("/v1/users/drama-fan-3/recommendations", params={"n": 4}).json()
    assert "d-new" in [i["item_id"] for i in again["items"]]
