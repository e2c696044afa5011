"""Serving hardening (issue 9), through a real uvicorn server: each test here failed on the
code before the fix (the issue's item number is in the section title)."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import pytest

from tastemaker.serve.app import create_app
from tastemaker.serve.settings import ApiKey, Settings, hash_secret
from tastemaker.testing.http import chunked_upload, live_server

WRITER = {"X-API-Key": "w-secret"}


def keyed(tmp_path: Path, **overrides: object) -> Settings:
    keys = [ApiKey(name="writer", sha256=hash_secret("w-secret"), scopes=["read", "write", "admin"])]
    return Settings(store_url=f"sqlite:///{tmp_path / 's.db'}", models_dir=tmp_path / "m", api_keys=keys, **overrides)


def zeros(size: int, total: int):
    """``total`` bytes of zeros in ``size``-byte chunks, made as they are sent."""
    chunk = b"0" * size
    return itertools.repeat(chunk, total // size)


# ---------------------------------------------------------------------- 7: memory before auth
def test_an_unauthenticated_upload_is_refused_before_its_body_is_read(tmp_path) -> None:
    """No key: 401 after the headers alone. The old middleware read the whole chunked body
    first, so an upload that never ends never got an answer (and filled memory)."""
    with live_server(keyed(tmp_path)) as client:
        upload = chunked_upload(client.base_url, "/v1/events", [], wait=10)
        assert upload.status == 401, upload
        body = json.loads(upload.body)
        assert body["error"].startswith("missing API key") and body["request_id"] == upload.headers["x-request-id"]


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(tmp_path) -> None:
    """With a valid key, a chunked body one KiB past max_request_bytes and never finished
    gets its 413 at once: the limit is counted while the body streams in."""
    with live_server(keyed(tmp_path, max_request_bytes=64 * 1024)) as client:
        upload = chunked_upload(client.base_url, "/v1/events", zeros(1024, 65 * 1024), WRITER, wait=10)
        assert upload.status == 413, upload
        body = json.loads(upload.body)
        assert body["field"] == "body" and "65536" in body["error"]
        # a declared Content-Length over the limit is refused from the header, as before
        r = client.post("/v1/events", content=b"x" * (70 * 1024), headers=WRITER)
        assert r.status_code == 413 and r.json()["field"] == "body"
        # and a body under the limit is served as usual
        assert client.post("/v1/events", json={"user_id": "u", "item_id": "i"}, headers=WRITER).status_code == 200


# ---------------------------------------------------------------------- 8: 4xx naming the field
BAD_BODIES = [
    # (path, raw JSON body, the field the error must name)
    ("/v1/events", '{"user_id": "u", "item_id": "i", "timestamp": -1}', "body.timestamp"),
    ("/v1/events", '{"user_id": "u", "item_id": "i", "timestamp": NaN}', "body.timestamp"),
    ("/v1/events", '{"user_id": "u", "item_id": "i", "timestamp": Infinity}', "body.timestamp"),
    ("/v1/events", '{"user_id": "u", "item_id": "i", "timestamp": 1e400}', "body.timestamp"),
    ("/v1/events", '{"user_id": "u", "item_id": "i", "context": {"k": NaN}}', "body.context"),
    ("/v1/events", '{"user_id": "u", "item_id": "i", "context": {"k": "a\\u0000b"}}', "body.context"),
    ("/v1/events", '{"user_id": "u", "item_id": "i", "context": {"a\\u0000": 1}}', "body.context"),
    ("/v1/events", '{"user_id": "a\\u0000b", "item_id": "i"}', "body.user_id"),
    ("/v1/events", '{"user_id": "u", "item_id": "i", "event_type": "a\\u0000"}', "body.event_type"),
    ("/v1/events", '{"user_id": "\\ud800", "item_id": "i"}', "body.user_id"),
    ("/v1/events/bulk", '{"events": [{"user_id": "u", "item_id": "i"}, {"user_id": "u", "item_id": "i", "timestamp": -5e97}]}',
     "body.events.1.timestamp"),
    ("/v1/items", '{"items": [{"item_id": "x", "created_at": NaN}]}', "body.items.0.created_at"),
    ("/v1/items", '{"items": [{"item_id": "x", "created_at": -Infinity}]}', "body.items.0.created_at"),
    ("/v1/items", '{"items": [{"item_id": "x", "attributes": {"price": NaN}}]}', "body.items.0.attributes"),
    ("/v1/items", '{"items": [{"item_id": "x", "attributes": {"tags": ["ok", "a\\u0000"]}}]}', "body.items.0.attributes"),
    ("/v1/items", '{"items": [{"item_id": "x\\u0000"}]}', "body.items.0.item_id"),
    ("/v1/items", '{"items": [{"item_id": "x", "text": "a\\u0000b"}]}', "body.items.0.text"),
    ("/v1/items", '{"items": [{"item_id": "x", "categories": ["a\\u0000"]}]}', "body.items.0.categories.0"),
    ("/v1/users", '{"users": [{"user_id": "u", "attributes": {"age": NaN}}]}', "body.users.0.attributes"),
    ("/v1/users", '{"users": [{"user_id": "u", "attributes": {"n\\u0000": 1}}]}', "body.users.0.attributes"),
    ("/v1/recommendations", '{"items": ["a\\u0000"]}', "body.items.0"),
    ("/v1/recommendations", '{"items": [], "context": {"x": Infinity}}', "body.context"),
]


@pytest.mark.parametrize(("path", "raw", "field"), BAD_BODIES)
def test_bad_values_are_a_422_naming_the_field(settings: Settings, path: str, raw: str, field: str) -> None:
    with live_server(settings) as client:
        r = client.post(path, content=raw.encode(), headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        body = r.json()
        assert body["field"] == field and body["error"].startswith(field), body
        assert body["request_id"] == r.headers["x-request-id"]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/items/a%00b", "path.item_id"),
        ("/v1/items/a%00b/similar", "path.item_id"),
        ("/v1/users/a%00b/recommendations", "path.user_id"),
        ("/v1/experiments/a%00b", "path.name"),
    ],
)
def test_a_nul_in_a_path_is_a_422_naming_it(settings: Settings, path: str, field: str) -> None:
    with live_server(settings) as client:
        r = client.get(path)
        assert r.status_code == 422 and r.json()["field"] == field, r.text


def test_a_500_shows_only_the_request_id_and_logs_the_traceback(tmp_path, caplog) -> None:
    """A real internal failure (the store closed under the service): the client gets the
    request id and nothing of the exception (which names the database file); the log has the
    traceback under that id, and the metrics count the 500."""
    settings = Settings(store_url=f"sqlite:///{tmp_path / 'secret-store.db'}", models_dir=tmp_path / "m")
    app = create_app(settings)
    with live_server(settings, app=app) as client:
        app.state.service.store.close()
        with caplog.at_level(logging.ERROR, logger="tastemaker.serve"):
            r = client.get("/v1/items/x")
    assert r.status_code == 500
    body = r.json()
    assert set(body) == {"error", "request_id"} and body["request_id"] == r.headers["x-request-id"]
    assert "secret-store" not in r.text and "closed" not in r.text and "Error" not in r.text
    logged = [rec for rec in caplog.records if body["request_id"] in rec.getMessage()]
    assert logged and logged[0].exc_info is not None and "is closed" in str(logged[0].exc_info[1])
    sample = app.state.metrics.registry.get_sample_value(
        "tastemaker_requests_total", {"route": "/v1/items/{item_id}", "status": "500"})
    assert sample == 1.0


# ---------------------------------------------------------------------- 9: no coerced types
@pytest.mark.parametrize(
    ("method", "path", "payload", "field"),
    [
        ("post", "/v1/events", {"user_id": "u", "item_id": "i", "timestamp": False}, "body.timestamp"),
        ("post", "/v1/events", {"user_id": "u", "item_id": "i", "value": True}, "body.value"),
        ("post", "/v1/events", {"user_id": "u", "item_id": "i", "value": "5"}, "body.value"),
        ("post", "/v1/events", {"user_id": "u", "item_id": "i", "value": 1e308}, "body.value"),
        ("post", "/v1/events", {"user_id": "u", "item_id": "i", "value": -2e9}, "body.value"),
        ("post", "/v1/events", {"user_id": 7, "item_id": "i"}, "body.user_id"),
        ("put", "/v1/items/a1/availability", {"available": 0}, "body.available"),
        ("post", "/v1/items", {"items": [{"item_id": "x", "available": 1}]}, "body.items.0.available"),
        ("post", "/v1/admin/train", {"wait": 0}, "body.wait"),
        ("post", "/v1/recommendations", {"items": [], "n": True}, "body.n"),
        ("post", "/v1/recommendations", {"items": [], "n": 2.0}, "body.n"),
    ],
)
def test_types_are_not_coerced(settings: Settings, method: str, path: str, payload: dict, field: str) -> None:
    with live_server(settings) as client:
        r = client.request(method.upper(), path, json=payload)
        assert r.status_code == 422 and r.json()["field"] == field, r.text


def test_an_int_is_a_fine_float(settings: Settings) -> None:
    with live_server(settings) as client:
        r = client.post("/v1/events", json={"user_id": "u", "item_id": "i", "value": 5, "timestamp": 1000})
        assert r.status_code == 200, r.text
        assert client.post("/v1/items", json={"items": [{"item_id": "x", "created_at": 0}]}).status_code == 200
        assert client.get("/v1/items/x").json()["created_at"] == 0.0  # 0 is a time, not "now"


# ---------------------------------------------------------------------- 10: the schema tells the truth
def test_the_schema_documents_every_status_with_one_error_shape(settings: Settings) -> None:
    with live_server(settings.model_copy(update={"max_n": 50, "max_items_per_request": 500})) as client:
        schema = client.get("/openapi.json").json()
        components = schema["components"]["schemas"]
        assert "HTTPValidationError" not in components and {"ErrorOut", "FieldError"} <= set(components)
        get_item = schema["paths"]["/v1/items/{item_id}"]["get"]["responses"]
        assert set(get_item) == {"200", "400", "401", "403", "404", "413", "422", "429", "500"}
        for code, response in get_item.items():
            if code != "200":
                assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorOut"}
        assert "text/plain" in get_item["400"]["content"]  # uvicorn's own answer to malformed HTTP
        assert "Retry-After" in get_item["429"]["headers"]
        assert "409" in schema["paths"]["/v1/admin/train"]["post"]["responses"]
        assert set(schema["paths"]["/healthz"]["get"]["responses"]) == {"200", "400", "413", "500"}
        # the limits, from the settings
        params = {p["name"]: p["schema"] for p in schema["paths"]["/v1/users/{user_id}/recommendations"]["get"]["parameters"]}
        assert params["n"]["maximum"] == 50 and params["exclude"]["maxItems"] == 1000
        assert components["SessionIn"]["properties"]["n"]["maximum"] == 50
        assert components["EventsIn"]["properties"]["events"]["maxItems"] == 500
        assert components["EventIn"]["properties"]["value"]["maximum"] == 1e9
        assert components["ItemIn"]["properties"]["title"]["maxLength"] == 2000


def test_every_error_has_the_one_shape(tmp_path) -> None:
    with live_server(keyed(tmp_path)) as client:
        answers = [
            client.get("/v1/items/nope", headers=WRITER),  # 404 from a route (HTTPException)
            client.get("/v1/items/nope"),  # 401 from the guard
            client.post("/v1/events", json={"user_id": "u"}, headers=WRITER),  # 422 validation
            client.post("/v1/events", content=b"{\"a\": \"\xc3\x28\"}", headers={**WRITER, "content-type": "application/json"}),  # 400
            client.patch("/v1/items/nope", headers=WRITER),  # 405 from the router
            client.get("/no/such/route"),  # 404 from the router
            client.post("/v1/admin/rollback", headers=WRITER),  # 409
        ]
        assert [r.status_code for r in answers] == [404, 401, 422, 400, 405, 404, 409]
        for r in answers:
            body = r.json()
            assert isinstance(body["error"], str) and body["request_id"] == r.headers["x-request-id"], body
            assert "detail" not in body
        assert answers[0].json()["field"] == "item_id" and answers[2].json()["field"] == "body.item_id"
        assert answers[3].json()["field"] == "body"
        assert "GET" in answers[4].headers["allow"]


def test_the_docs_load_from_our_server(settings: Settings) -> None:
    with live_server(settings) as client:
        page = client.get("/docs")
        assert page.status_code == 200 and "cdn." not in page.text
        for asset, kind in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "css")):
            assert f"/static-offline-docs/{asset}" in page.text
            r = client.get(f"/static-offline-docs/{asset}")
            assert r.status_code == 200 and kind in r.headers["content-type"] and len(r.content) > 100_000
        redoc = client.get("/redoc")
        assert redoc.status_code == 200 and "cdn." not in redoc.text
        assert client.get("/static-offline-docs/redoc.standalone.js").status_code == 200


# ---------------------------------------------------------------------- 11: failed auth is throttled
def test_failed_authentication_is_throttled_per_address(tmp_path) -> None:
    with live_server(keyed(tmp_path, auth_failure_burst=5, auth_failures_per_second=0.01)) as client:
        codes = [client.get("/v1/items/x", headers={"X-API-Key": f"guess-{k}"}).status_code for k in range(8)]
        assert codes == [401] * 5 + [429] * 3
        r = client.get("/v1/items/x", headers=WRITER)  # even the right key, from a throttled address
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 100, r.headers
        assert r.json()["error"].startswith("too many failed authentication attempts")
        assert client.get("/healthz").status_code == 200  # open routes stay open


def test_every_429_carries_retry_after(tmp_path) -> None:
    keys = [ApiKey(name="slow", sha256=hash_secret("s"), scopes=["read"], rate_per_second=0.5, burst=2)]
    settings = Settings(store_url=f"sqlite:///{tmp_path / 's.db'}", models_dir=tmp_path / "m", api_keys=keys)
    with live_server(settings) as client:
        answers = [client.get("/v1/items/x", headers={"X-API-Key": "s"}) for _ in range(3)]
        assert [r.status_code for r in answers] == [404, 404, 429]
        assert answers[2].headers["retry-after"] in ("1", "2")  # 0.5 tokens/s: at most 2 s to the next


# ---------------------------------------------------------------------- 12: ids with "/"
@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/v1/items", {"items": [{"item_id": "a/b"}]}, "body.items.0.item_id"),
        ("/v1/events", {"user_id": "u", "item_id": "a/b"}, "body.item_id"),
        ("/v1/events", {"user_id": "u/v", "item_id": "i"}, "body.user_id"),
        ("/v1/users", {"users": [{"user_id": "u/v"}]}, "body.users.0.user_id"),
    ],
)
def test_ids_with_a_slash_are_refused(settings: Settings, path: str, payload: dict, field: str) -> None:
    """An id with '/' could be stored but never fetched or deleted (it ends a path segment)."""
    with live_server(settings) as client:
        r = client.post(path, json=payload)
        assert r.status_code == 422 and r.json()["field"] == field, r.text
        assert "'/'" in r.json()["error"]


# ---------------------------------------------------------------------- 13: metrics count everything
def test_metrics_count_every_response(tmp_path) -> None:
    with live_server(keyed(tmp_path, max_request_bytes=2048)) as client:
        assert client.post("/v1/events", content=b"x" * 4096, headers=WRITER).status_code == 413
        assert chunked_upload(client.base_url, "/v1/events", zeros(512, 8192), WRITER).status == 413
        assert client.get("/v1/items/x").status_code == 401
        text = client.get("/metrics").text
    assert 'tastemaker_requests_total{route="/v1/events",status="413"} 2.0' in text
    assert 'tastemaker_requests_total{route="/v1/items/{item_id}",status="401"} 1.0' in text
