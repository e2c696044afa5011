"""Serving hardening: a long schemathesis run, and the memory a huge upload costs the server.

    .venv/bin/python benchmarks/hardening.py [--examples 100] [--gigabytes 2] [--baseline-src DIR --baseline-label TEXT]

(a) schemathesis (tastemaker/testing/fuzz.py: the CI test's checks, derandomized) over the
    live OpenAPI schema of a real ``tastemaker serve`` process with a catalog, events, a
    model and API keys, ``--examples`` test cases per operation and phase: requests sent and
    failures by kind (5xx, undocumented status, wrong content type, body against schema).
(b) a ``--gigabytes`` chunked body (no Content-Length) streamed from a generator to POST
    /v1/events of a real ``tastemaker serve`` with keys configured: once without a key (401
    expected before the body is read), once with a valid key (413 expected at
    max_request_bytes). The client sends every byte whatever the server answered; the
    server's resident memory is sampled from /proc/<pid>/status during the upload (and its
    peak, VmHWM, reset before it through /proc/<pid>/clear_refs). Target: < 50 MB growth.

``--baseline-src DIR`` also runs (b) against the server of another checkout (e.g. the
commit before the fix, from ``git archive <commit> | tar -x -C DIR``), for the before figure.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, table, update_section, write_json  # noqa: E402

from tastemaker.serve.settings import hash_secret  # noqa: E402
from tastemaker.testing.fuzz import run_schemathesis, seed_service  # noqa: E402
from tastemaker.testing.http import chunked_upload, free_port  # noqa: E402

KEY = "bench-secret"
CHUNK = 1 << 20  # 1 MiB per chunk, the same bytes object every time: the client stays small


def write_config(path: Path, *, fuzzing: bool) -> Path:
    """Settings TOML: one full-scope key; for fuzzing, no rate limit and no failure throttle
    (schemathesis sends keyless requests too, which would soon throttle 127.0.0.1)."""
    lines = []
    if fuzzing:
        lines.append("auth_failure_burst = 1000000")
    lines += ["[[api_keys]]", 'name = "bench"', f'sha256 = "{hash_secret(KEY)}"', 'scopes = ["read", "write", "admin"]']
    if fuzzing:
        lines += ["rate_per_second = 1000000.0", "burst = 1000000"]
    path.write_text("\n".join(lines) + "\n")
    return path


def start_server(workdir: Path, config: Path, src: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """``tastemaker serve`` as a subprocess (from ``src`` when given); returns it and its URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "tastemaker.cli", "serve", "--store", f"sqlite:///{workdir / 'store.db'}",
           "--models-dir", str(workdir / "models"), "--port", str(port), "--host", "127.0.0.1"]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    if src is not None:
        env["PYTHONPATH"] = str(src)
        config_text = config.read_text()  # an older checkout may not know the new settings
        config = config.with_name("baseline.toml")
        config.write_text("\n".join(line for line in config_text.splitlines() if not line.startswith("auth_failure")))
    cmd += ["--config", str(config)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=workdir)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before it was up")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not come up in 60 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for {pid}")


# ---------------------------------------------------------------------- (a) schemathesis
def fuzz(workdir: Path, examples: int) -> dict[str, Any]:
    proc, url = start_server(workdir, write_config(workdir / "fuzz.toml", fuzzing=True))
    try:
        with httpx.Client(base_url=url, timeout=120) as client:
            seed_service(client, {"X-API-Key": KEY})
        result = run_schemathesis(url, workdir / "schemathesis", api_key=KEY, max_examples=examples,
                                  continue_on_failure=True, timeout=3600)
    finally:
        stop(proc)
    by_code = {f["code"]: int(f.get("count", 0)) for f in result.failures}
    record = {
        "check": "schemathesis", "examples_per_operation": examples, "operations": result.operations_tested,
        "test_cases": result.test_cases, "seconds": round(result.seconds, 1),
        "server_errors": by_code.get("ST101", 0), "undocumented_status": by_code.get("ST103", 0),
        "content_type": by_code.get("ST104", 0) + by_code.get("ST105", 0), "schema_violations": by_code.get("ST108", 0),
        "failures": result.failures, "errors": len(result.errors),
    }
    print(f"schemathesis: {result.test_cases} test cases over {result.operations_tested} operations in "
          f"{result.seconds:.0f} s; failures: {result.failures or 'none'}", flush=True)
    return record


# ---------------------------------------------------------------------- (b) a huge upload
def upload(workdir: Path, gigabytes: float, with_key: bool, src: Path | None, label: str) -> dict[str, Any]:
    proc, url = start_server(workdir, write_config(workdir / "upload.toml", fuzzing=False), src)
    try:
        headers = {"X-API-Key": KEY}
        with httpx.Client(base_url=url, timeout=30) as client:  # warm up: imports, first body, first 401
            client.post("/v1/events", json={"user_id": "u", "item_id": "i"}, headers=headers)
            client.post("/v1/events", json={"user_id": "u", "item_id": "i"})
        time.sleep(0.5)
        before = rss_mb(proc.pid)
        try:
            Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        except OSError:
            pass
        peak = [before]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.05):
                try:
                    peak[0] = max(peak[0], rss_mb(proc.pid))
                except (OSError, RuntimeError):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        chunks = itertools.repeat(b"0" * CHUNK, int(gigabytes * 1024))
        result = chunked_upload(url, "/v1/events", chunks, headers if with_key else None, finish=True, wait=600)
        done.set()
        sampler.join()
        after = rss_mb(proc.pid)
        peak_mb = max(peak[0], rss_mb(proc.pid, "VmHWM"))
    finally:
        stop(proc)
    record = {
        "check": f"{gigabytes:g} GB chunked POST /v1/events, {'valid key' if with_key else 'no key'}", "server": label,
        "status": result.status, "answered_after_bytes": result.sent_before_response, "sent_bytes": result.sent,
        "seconds": round(result.seconds, 1), "rss_before_mb": round(before, 1), "rss_peak_mb": round(peak_mb, 1),
        "rss_after_mb": round(after, 1), "growth_mb": round(peak_mb - before, 1),
        "client_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(record), flush=True)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100, help="schemathesis test cases per operation and phase")
    parser.add_argument("--gigabytes", type=float, default=2.0, help="size of the chunked uploads")
    parser.add_argument("--baseline-src", type=Path, default=None, help="another checkout's source, for the before figure")
    parser.add_argument("--baseline-label", default=None, help="how the table names the baseline (default: its folder)")
    parser.add_argument("--skip-fuzz", action="store_true")
    args = parser.parse_args()

    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hardening-") as tmp:
        root = Path(tmp)
        if not args.skip_fuzz:
            (root / "fuzz").mkdir()
            records.append(fuzz(root / "fuzz", args.examples))
        servers: list[tuple[str, Path | None]] = [("this checkout", None)]
        if args.baseline_src is not None:
            servers.append((args.baseline_label or f"baseline ({args.baseline_src.name})", args.baseline_src.resolve()))
        for label, src in servers:
            for with_key in (False, True):
                workdir = root / f"upload-{len(records)}"
                workdir.mkdir()
                records.append(upload(workdir, args.gigabytes, with_key, src, label))

    fuzz_rows = [[r["operations"], r["examples_per_operation"], f"{r['test_cases']:,}", f"{r['seconds']:.0f}",
                  r["server_errors"], r["undocumented_status"], r["content_type"], r["schema_violations"]]
                 for r in records if r["check"] == "schemathesis"]
    upload_rows = [[r["check"], r["server"], r["status"], f"{r['answered_after_bytes'] / 2**20:.0f} MiB",
                    f"{r['sent_bytes'] / 2**20:,.0f} MiB", f"{r['seconds']:.1f}", f"{r['rss_before_mb']:.0f}",
                    f"{r['rss_peak_mb']:.0f}", f"**{r['growth_mb']:.1f}**", f"{r['client_max_rss_mb']:.0f}"]
                   for r in records if r["check"] != "schemathesis"]
    text = [
        "## Hardening (`benchmarks/hardening.py`)",
        "",
        f"Machine: {machine()}. Server: `tastemaker serve` (uvicorn, 1 process, SQLite store) as a subprocess, "
        "with an API key configured; client on the same machine.",
    ]
    if fuzz_rows:
        text += [
            "",
            "Schemathesis 4 (`tastemaker/testing/fuzz.py`: derandomized, one worker, phases examples, coverage and "
            "fuzzing, positive and negative data, the fuzzer holding a full-scope key) over the live OpenAPI schema, "
            "the server seeded with 24 items, 180 events and a trained EASE model; POST /v1/admin/train left out "
            "(a made-up model config can train for any length of time). Counts are distinct failures by kind.",
            "",
            table(["operations", "examples/op", "test cases sent", "seconds", "5xx", "undocumented status",
                   "wrong content type", "body against schema"], fuzz_rows),
        ]
    text += [
        "",
        f"A {args.gigabytes:g} GB chunked body (no Content-Length, 1 MiB chunks from a generator) to POST /v1/events; "
        "the client sends every byte whatever the server says. RSS of the server from /proc/<pid>/status "
        "(sampled every 50 ms, and VmHWM); growth = peak - before. Target: < 50 MB. \"Answered after\" is what the "
        "client had sent when the answer became readable (the loopback socket buffers hold a few MiB).",
        "",
        table(["upload", "server", "status", "answered after (bytes sent)", "bytes sent", "seconds", "RSS before MB",
               "RSS peak MB", "growth MB", "client max RSS MB"], upload_rows),
    ]
    body = "\n".join(text)
    print("\n" + body)
    update_section("hardening", body)
    write_json("hardening", records)


if __name__ == "__main__":
    main()
