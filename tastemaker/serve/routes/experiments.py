"""/v1/experiments: per-variant click-through and conversion; interleaving outcomes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException

from tastemaker.serve.deps import get_service, require
from tastemaker.serve.experiments import interleaving_outcome
from tastemaker.serve.schemas import NamePath, errors
from tastemaker.serve.service import Service

router = APIRouter(prefix="/v1/experiments", tags=["experiments"], dependencies=[Depends(require("read"))])


@router.get("/{name}", responses=errors(404))
def results(name: NamePath, service: Service = Depends(get_service)) -> dict[str, Any]:
    experiment = next((e for e in service.settings.experiments if e.name == name), None)
    if experiment is None:
        raise HTTPException(404, f"name: no experiment {name!r}")
    if name.startswith("interleave"):
        sessions = service.store.interleaving_sessions(name)  # type: ignore[attr-defined]
        outcome = interleaving_outcome(sessions)
        a, b = (v.name for v in experiment.variants[:2])
        winner = {"a": a, "b": b}.get(outcome.winner, "tie")
        return {"experiment": name, "a": a, "b": b, "wins_a": outcome.wins_a, "wins_b": outcome.wins_b,
                "ties": outcome.ties, "winner": winner, "preference": outcome.preference}
    return {"experiment": name, "variants": service.store.variant_stats(name)}  # type: ignore[attr-defined]
