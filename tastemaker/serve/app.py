"""The FastAPI application: ``create_app(settings)``; ``tastemaker serve`` runs it on uvicorn.

The lifespan opens the store and loads the active model once. Every request passes the guard
(serve/guard.py): a request id, authentication from the headers before the body is read, a
size limit enforced while the body streams in (413 past ``max_request_bytes``), 500s that
show only the request id, and Prometheus metrics at ``/metrics`` counting every response.

Every error has one shape, ``schemas.ErrorOut``: ``{"error", "field"?, "request_id",
"details"?}``. Validation errors are 422s whose ``field`` names the input, e.g.
``body.events.0.value``. The OpenAPI schema (serve/openapi.py) documents each status each
route returns; ``/docs`` (Swagger UI) and ``/redoc`` load their assets from this server.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tastemaker.errors import MissingExtraError

try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse, Response
    from fastapi_offline import FastAPIOffline
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from starlette.exceptions import HTTPException
except ImportError as exc:  # pragma: no cover - only without the extra
    raise MissingExtraError(getattr(exc, "name", None) or "fastapi", "serve") from exc

import tastemaker
from tastemaker.serve import openapi
from tastemaker.serve.guard import REQUEST_ID_KEY, Guard, Metrics, error_body
from tastemaker.serve.routes import admin, chat, events, experiments, items, recommendations, users
from tastemaker.serve.schemas import ID_PATTERN, TEXT_PATTERN
from tastemaker.serve.service import Service
from tastemaker.serve.settings import Settings

__all__ = ["Metrics", "create_app"]

#: ``HTTPException`` details are written "field: message" (``"item_id: no item 'x'"``).
_FIELD_PREFIX = re.compile(r"^([A-Za-z_][\w.\[\]-]*): ")
#: Friendlier words than pydantic's "String should match pattern ..." for our two patterns.
_PATTERN_WORDS = {ID_PATTERN: "must not contain '/' or the NUL character", TEXT_PATTERN: "must not contain the NUL character"}


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for ``settings`` (default: ``Settings.load()``, from the environment)."""
    settings = settings or Settings.load()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = Service(settings)
        service.stage_histogram = metrics.stages
        service.start()
        app.state.service = service
        try:
            yield
        finally:
            service.close()

    # FastAPIOffline: /docs and /redoc with their JS and CSS served from the installed
    # package (under /static-offline-docs), so the docs work with no internet access.
    app = FastAPIOffline(
        title="Tastemaker",
        version=tastemaker.__version__,
        description="Real-time recommendations with explanations, feedback, experiments and model versions.",
        lifespan=lifespan,
    )
    app.state.metrics = metrics

    def request_id(request: Request) -> str | None:
        value: str | None = request.scope.get(REQUEST_ID_KEY)
        return value

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = []
        for error in exc.errors():
            loc = tuple(error.get("loc", ()))
            if error.get("type") == "json_invalid":
                loc = ("body",)  # the position is in the message
            message = str(error.get("msg", "invalid"))
            pattern = (error.get("ctx") or {}).get("pattern")
            if pattern in _PATTERN_WORDS:
                message = _PATTERN_WORDS[pattern]
            elif error.get("type") == "json_invalid":
                message = f"not valid JSON ({(error.get('ctx') or {}).get('error', 'decode error')})"
            details.append({"field": ".".join(map(str, loc)) or "body", "message": message})
        first = details[0] if details else {"field": "body", "message": "invalid request"}
        body = error_body(422, f"{first['field']}: {first['message']}", field=first["field"],
                          request_id=request_id(request), details=details)
        return JSONResponse(body, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        message = str(exc.detail)
        if exc.status_code == 400 and message == "There was an error parsing the body":
            message = "body: not valid UTF-8 JSON"  # FastAPI's words for a body json cannot decode
        match = _FIELD_PREFIX.match(message)
        body = error_body(exc.status_code, message, field=match.group(1) if match else None, request_id=request_id(request))
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Only what escapes the guard itself ends here (the guard answers every other 500);
        # ServerErrorMiddleware logs the traceback.
        return JSONResponse(error_body(500, "internal error", request_id=request_id(request)), status_code=500)

    @app.get("/healthz", tags=["ops"])
    async def healthz(request: Request) -> dict[str, Any]:
        service: Service = request.app.state.service
        return {"status": "ok", "model_version": service.engine.version}

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def prometheus(request: Request) -> Response:  # a plain def: count_events() reads the store
        service: Service = request.app.state.service
        metrics.model.clear()
        metrics.model.labels(str(service.engine.version)).set(1)
        metrics.events.set(service.store.count_events())
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    modules = (items, users, events, recommendations, chat, admin, experiments)
    for module in modules:
        app.include_router(module.router)
    # The routes with their full paths: the app's own, then each router's (whose paths carry
    # the router's prefix and whose dependencies its scope).
    routes = [r for r in app.router.routes if getattr(r, "path", None)] + [r for m in modules for r in m.router.routes]
    app.add_middleware(Guard, routes=routes, max_body=settings.max_request_bytes, metrics=metrics)
    openapi.install(app, settings, routes)
    return app
