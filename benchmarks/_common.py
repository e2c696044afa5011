"""Shared plumbing for benchmark scripts: machine description, RESULTS.md sections, JSON records.

Each script owns one section of benchmarks/RESULTS.md, delimited by HTML comments, and
rewrites only that section, so scripts can be re-run independently.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS_MD = HERE / "RESULTS.md"
RESULTS_DIR = HERE / "results"


def machine() -> str:
    """One line naming the machine: CPU model, cores, memory, Python and date."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1])
        mem = f"{mem_kb / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        mem = "? GiB"
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem} RAM, Python {platform.python_version()}, "
        f"{dt.date.today().isoformat()}"
    )


def data_root() -> Path:
    root = os.environ.get("TASTEMAKER_DATA")
    if not root:
        raise SystemExit("set TASTEMAKER_DATA to the folder of public datasets (e.g. ../shared/datasets)")
    return Path(root)


def write_json(script: str, records: list[dict[str, Any]]) -> Path:
    """benchmarks/results/<script>.json: one record per row (dataset, model, params, metrics)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{script}.json"
    path.write_text(json.dumps({"machine": machine(), "records": records}, indent=2, default=str))
    return path


def update_section(script: str, body: str) -> Path:
    """Replace (or append) this script's section of RESULTS.md."""
    start, end = f"<!-- {script}:start -->", f"<!-- {script}:end -->"
    section = f"{start}\n{body.rstrip()}\n{end}"
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n\nEach section is written by the script it names; re-run a script to refresh its section.\n"
    if start in text and end in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    RESULTS_MD.write_text(text)
    return RESULTS_MD


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table; floats get 4 significant decimals."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
