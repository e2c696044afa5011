"""Fuzz the live OpenAPI schema (schemathesis): no 5xx, no undocumented status, no response
that breaks its documented content type or schema. A real server with a catalog, events, a
model and API keys; derandomized, so a failure reproduces."""

from __future__ import annotations

import pytest

pytest.importorskip("schemathesis")

from tastemaker.serve.settings import ApiKey, Settings, hash_secret  # noqa: E402
from tastemaker.testing.fuzz import run_schemathesis, seed_service  # noqa: E402
from tastemaker.testing.http import live_server  # noqa: E402


def test_the_live_schema_holds_under_fuzzing(tmp_path) -> None:
    keys = [
        ApiKey(name="fuzzer", sha256=hash_secret("fuzz-secret"), scopes=["read", "write", "admin"],
               rate_per_second=1e6, burst=1_000_000),
        ApiKey(name="reader", sha256=hash_secret("read-secret"), scopes=["read"], rate_per_second=1e6, burst=1_000_000),
    ]
    # schemathesis also sends requests without the key (and with broken ones): the failure
    # throttle would soon answer 429 to everything from 127.0.0.1, leaving the routes untested
    settings = Settings(store_url=f"sqlite:///{tmp_path / 's.db'}", models_dir=tmp_path / "m", api_keys=keys,
                        auth_failure_burst=1_000_000)
    with live_server(settings) as client:
        seed_service(client, {"X-API-Key": "fuzz-secret"})
        full = run_schemathesis(client.base_url, tmp_path / "admin", api_key="fuzz-secret", max_examples=12)
        # a read-only key: the write and admin routes answer 403, which must be documented too
        reader = run_schemathesis(client.base_url, tmp_path / "reader", api_key="read-secret", max_examples=2,
                                  phases="fuzzing")
    for result in (full, reader):
        assert result.clean, f"{result.failures}\n{result.errors}\n{result.output[-6000:]}"
    assert full.operations_tested >= 19 and full.test_cases >= 500, (full.operations_tested, full.test_cases)
