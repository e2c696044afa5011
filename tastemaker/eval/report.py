"""Write a protocol result as JSON (for machines) and Markdown (for people)."""

from __future__ import annotations

import json
import platform
from pathlib import Path

from tastemaker.eval.protocols import ProtocolResult

TABLE_METRICS = ("hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr@10", "coverage@10", "novelty@10", "diversity@10", "gini@10")


def markdown_table(result: ProtocolResult, metrics: tuple[str, ...] = TABLE_METRICS) -> str:
    """The test-set table: one row per model, NDCG@10 with its 95% bootstrap interval."""
    present = [m for m in metrics if any(m in r.test for r in result.results)]
    head = ["model", *present, "NDCG@10 95% CI", "fit s", "params"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result.results:
        cells = [r.model, *(f"{r.test[m]:.4f}" if m in r.test else "" for m in present)]
        cells += [f"[{r.ndcg10_ci[0]:.4f}, {r.ndcg10_ci[1]:.4f}]", f"{r.fit_seconds:.2f}"]
        cells.append(", ".join(f"{k}={v}" for k, v in r.params.items()) or "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(result: ProtocolResult, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``out_dir``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "report.json"
    md_path = out / "report.md"
    payload = result.to_dict() | {"machine": f"{platform.node()} ({platform.machine()}, {platform.python_version()})"}
    json_path.write_text(json.dumps(payload, indent=2))
    md = [
        f"# Evaluation: {result.dataset}",
        "",
        f"Protocol: {result.split}, full ranking over {result.n_items} items, seen items excluded; "
        f"tuned on validation NDCG@10, refit on train+validation, scored on the test item of "
        f"{result.n_test_users} users ({result.n_users} users, {result.n_interactions} interactions).",
        "",
        markdown_table(result),
        "",
    ]
    md_path.write_text("\n".join(md))
    return json_path, md_path
