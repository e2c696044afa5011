"""The FastAPI application: ``create_app(settings)``; ``tastemaker serve`` runs it on uvicorn.

The lifespan opens the store and loads the active model once. Every request passes a size
limit (413 past ``max_request_bytes``) and is counted in Prometheus metrics at ``/metrics``.
Validation errors are 422s whose ``error`` names the field, e.g. ``body.events.0.value``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from tastemaker.errors import MissingExtraError

try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse, Response
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
except ImportError as exc:  # pragma: no cover - only without the extra
    raise MissingExtraError("fastapi", "serve") from exc

import tastemaker
from tastemaker.serve.routes import admin, events, experiments, items, recommendations, users
from tastemaker.serve.service import Service
from tastemaker.serve.settings import Settings


class Metrics:
    """Prometheus series, in a registry of their own so several apps can live in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("tastemaker_requests", "HTTP requests", ["route", "status"], registry=self.registry)
        self.latency = Histogram(
            "tastemaker_request_seconds", "request latency", ["route"], registry=self.registry,
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.events = Gauge("tastemaker_events_stored", "events in the store", registry=self.registry)
        self.model = Gauge("tastemaker_model_info", "active model version", ["version"], registry=self.registry)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.load()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = Service(settings)
        service.start()
        app.state.service = service
        try:
            yield
        finally:
            service.close()

    app = FastAPI(
        title="Tastemaker",
        version=tastemaker.__version__,
        description="Real-time recommendations with explanations, feedback, experiments and model versions.",
        lifespan=lifespan,
    )
    app.state.metrics = metrics

    @app.middleware("http")
    async def limit_and_measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_request_bytes):
            return JSONResponse({"error": f"request body larger than {settings.max_request_bytes} bytes"}, status_code=413)
        if length is None and request.method in ("POST", "PUT", "PATCH"):
            body = await request.body()  # chunked upload: count what actually arrives
            if len(body) > settings.max_request_bytes:
                return JSONResponse({"error": f"request body larger than {settings.max_request_bytes} bytes"}, status_code=413)
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.latency.labels(path).observe(time.perf_counter() - start)
        metrics.requests.labels(path, str(response.status_code)).inc()
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse(
            {"error": f"{field}: {first.get('msg')}", "field": field,
             "details": [{"field": ".".join(map(str, e.get("loc", ()))), "message": e.get("msg")} for e in errors]},
            status_code=422,
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    @app.get("/healthz", tags=["ops"])
    async def healthz(request: Request) -> dict[str, Any]:
        service: Service = request.app.state.service
        return {"status": "ok", "model_version": service.engine.version}

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def prometheus(request: Request) -> Response:
        service: Service = request.app.state.service
        metrics.model.clear()
        metrics.model.labels(str(service.engine.version)).set(1)
        metrics.events.set(service.store.count_events())
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    for module in (items, users, events, recommendations, admin, experiments):
        app.include_router(module.router)
    return app
