"""/v1/admin: train now, list model versions, activate or roll back a version, status."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException

from tastemaker.errors import ArtifactError
from tastemaker.serve.deps import get_service, require
from tastemaker.serve.schemas import TrainIn
from tastemaker.serve.service import Service, TrainingError

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require("admin"))])


@router.post("/train")
def train(body: TrainIn, service: Service = Depends(get_service)) -> dict[str, Any]:
    if body.model is not None:
        from tastemaker.config import MODELS

        if body.model not in MODELS:
            raise HTTPException(422, f"model: unknown model {body.model!r}; choose from {', '.join(MODELS)}")
    if not body.wait:
        return {"job": service.train_in_background(model=body.model, params=body.params, activate=body.activate), "state": "started"}
    try:
        return service.train(body.model, body.params, body.activate)
    except TrainingError as exc:
        raise HTTPException(409, str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise HTTPException(422, f"params: {exc}") from None


@router.get("/training")
def training_status(service: Service = Depends(get_service)) -> dict[str, Any]:
    return service.training


@router.get("/models")
def versions(service: Service = Depends(get_service)) -> list[dict[str, Any]]:
    return service.registry.versions()


@router.post("/models/{version}/activate")
def activate(version: str, service: Service = Depends(get_service)) -> dict[str, Any]:
    try:
        service.activate(version)
    except ArtifactError as exc:
        raise HTTPException(404, f"version: {exc}") from None
    return {"active": version}


@router.post("/rollback")
def rollback(service: Service = Depends(get_service)) -> dict[str, Any]:
    try:
        return {"active": service.rollback()}
    except ArtifactError as exc:
        raise HTTPException(409, str(exc)) from None


@router.get("/status")
def status(service: Service = Depends(get_service)) -> dict[str, Any]:
    return service.status()
