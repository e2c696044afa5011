"""Fuzz the live OpenAPI schema of a running service with schemathesis (4.x, its CLI).

Used by ``tests/serve/test_schemathesis.py`` (a short, derandomized run in CI) and by
``benchmarks/hardening.py`` (a longer one). The checks are the ones that say whether the
schema tells the truth: no 5xx, no undocumented status, the documented content type, and a
body that matches the documented schema.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance")
#: Training fits whatever model and hyperparameters the fuzzer makes up (a sasrec with a
#: million epochs is valid input): its time has no bound, so fuzzing leaves it out;
#: tests/serve/test_hardening.py and test_api.py cover its bad input.
EXCLUDED_PATHS = ("/v1/admin/train",)


@dataclass
class FuzzResult:
    """What a schemathesis run found (from its JSON report)."""

    exit_code: int
    test_cases: int  # generated requests
    failures: list[dict[str, Any]]  # one entry per kind of failure: code, title, count, operations
    errors: list[Any]
    operations_tested: int
    seconds: float
    output: str  # the CLI's report, for a failing test's message

    @property
    def clean(self) -> bool:
        return self.exit_code == 0 and not self.failures and not self.errors


def seed_service(client: httpx.Client, headers: dict[str, str] | None = None, *, train: bool = True) -> None:
    """A small catalog (two genres), events of users who each like one genre, and a model."""
    items = [{"item_id": f"{g[0]}{k}", "title": f"{g.title()} film {k}", "categories": [g], "attributes": {"year": 1990 + k}}
             for g in ("action", "drama") for k in range(12)]
    events = [{"user_id": f"{g}-fan-{u}", "item_id": f"{g[0]}{k}", "event_type": "watch", "timestamp": 1000 + 50 * u + k}
              for g in ("action", "drama") for u in range(10) for k in range(12) if (k + u) % 4]
    for path, body in (("/v1/items", {"items": items}), ("/v1/events/bulk", {"events": events}),
                       ("/v1/users", {"users": [{"user_id": "action-fan-0", "attributes": {"age": 30}}]})):
        response = client.post(path, json=body, headers=headers)
        response.raise_for_status()
    if train:
        client.post("/v1/admin/train", json={"wait": True}, headers=headers).raise_for_status()


def run_schemathesis(
    base_url: str | httpx.URL,
    workdir: Path,
    *,
    api_key: str | None,
    max_examples: int,
    seed: int = 1,
    phases: str = "examples,coverage,fuzzing",
    continue_on_failure: bool = False,
    timeout: float = 600,
) -> FuzzResult:
    """Run ``schemathesis run`` against ``base_url``'s ``/openapi.json`` in ``workdir``.

    Derandomized (``--generation-deterministic``: the same schema gives the same requests;
    ``seed`` is recorded but deterministic mode does not draw on it), one worker (the
    machine is shared), ``max_examples`` per operation and phase."""
    workdir.mkdir(parents=True, exist_ok=True)
    report = workdir / "schemathesis.json"
    base = str(base_url).rstrip("/")
    cmd = [sys.executable, "-m", "schemathesis.cli", "run", f"{base}/openapi.json",
           "--checks", ",".join(CHECKS), "--phases", phases, "--max-examples", str(max_examples),
           "--seed", str(seed), "--generation-deterministic", "--workers", "1", "--request-timeout", "30",
           "--report", "json", "--report-json-path", str(report), "--no-color"]
    for path in EXCLUDED_PATHS:
        cmd += ["--exclude-path", path]
    if api_key is not None:
        cmd += ["--header", f"X-API-Key: {api_key}"]
    if continue_on_failure:
        cmd += ["--continue-on-failure"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=timeout)
    if not report.is_file():
        raise RuntimeError(f"schemathesis wrote no report (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    data = json.loads(report.read_text())
    return FuzzResult(
        exit_code=proc.returncode,
        test_cases=int(data["test_cases"]["generated"]),
        failures=list(data.get("failures", [])),
        errors=list(data.get("errors", [])),
        operations_tested=int(data["operations"]["tested"]),
        seconds=float(data.get("running_time", 0.0)),
        output=proc.stdout,
    )
