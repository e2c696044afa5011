"""/v1/admin: train now, list model versions, activate or roll back a version, status."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException

from tastemaker.errors import ArtifactError
from tastemaker.serve.deps import get_service, require
from tastemaker.serve.schemas import TrainIn, VersionPath, errors
from tastemaker.serve.service import Service, TrainingError

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require("admin"))])


@router.post("/train", responses=errors(409))
def train(body: TrainIn, service: Service = Depends(get_service)) -> dict[str, Any]:
    if body.model is not None:
        from tastemaker.config import MODELS

        if body.model not in MODELS:
            raise HTTPException(422, f"model: unknown model {body.model!r}; choose from {', '.join(MODELS)}")
    if body.pipeline is not None:
        from tastemaker.pipeline.config import example_pipelines

        if body.pipeline not in example_pipelines():  # a name, never a path on the server
            raise HTTPException(422, f"pipeline: unknown pipeline {body.pipeline!r}; choose from {', '.join(example_pipelines())}")
    try:
        service.plan(body.model, body.params, body.pipeline)
    except (TypeError, ValueError) as exc:
        raise HTTPException(422, f"params: {exc}") from None
    try:
        if not body.wait:  # 409 now, not a "started" job that fails at once, when one runs already
            return {"job": service.train_in_background(body.model, body.params, body.activate, body.pipeline), "state": "started"}
        return service.train(body.model, body.params, body.activate, body.pipeline)
    except TrainingError as exc:
        raise HTTPException(409, str(exc)) from None


@router.get("/training")
def training_status(service: Service = Depends(get_service)) -> dict[str, Any]:
    return service.training


@router.get("/models")
def versions(service: Service = Depends(get_service)) -> list[dict[str, Any]]:
    return service.registry.versions()


@router.post("/models/{version}/activate", responses=errors(404))
def activate(version: VersionPath, service: Service = Depends(get_service)) -> dict[str, Any]:
    try:
        reloaded = service.activate(version)  # False: it is served already, nothing to reload
    except ArtifactError as exc:
        raise HTTPException(404, f"version: {exc}") from None
    return {"active": version, "reloaded": reloaded}


@router.post("/rollback", responses=errors(409))
def rollback(service: Service = Depends(get_service)) -> dict[str, Any]:
    try:
        return {"active": service.rollback()}
    except ArtifactError as exc:
        raise HTTPException(409, str(exc)) from None


@router.get("/status")
def status(service: Service = Depends(get_service)) -> dict[str, Any]:
    return service.status()
