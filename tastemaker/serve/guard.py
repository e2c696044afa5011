"""The ASGI middleware every HTTP request passes first: :class:`Guard`.

In order, for each request:

1. gives it an id (``X-Request-ID`` on every response, ``request_id`` in every error body);
2. for a route that needs a scope, when API keys are configured, authenticates the caller
   from its headers alone, so an unauthenticated request is refused (401/403/429) before a
   byte of its body is read;
3. refuses a declared ``Content-Length`` over ``max_request_bytes`` (413), and counts the
   body as it streams in, answering 413 as soon as the count passes the limit: a chunked
   upload without a length is never held whole in memory;
4. turns any exception into a 500 whose body holds only the request id, after logging the
   traceback under that id (exception text can leak paths, SQL or data);
5. counts every response, whatever produced it (a route, a handler, this guard, a 500), in
   the Prometheus series, by route template and status.

It is a pure ASGI middleware (not ``@app.middleware("http")``, whose ``BaseHTTPMiddleware``
cannot see a body without reading all of it).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tastemaker.serve.auth import AuthError, secret_from_headers
from tastemaker.serve.deps import PRINCIPAL_KEY

log = logging.getLogger("tastemaker.serve")

#: Where a request's id is kept in its ASGI scope (the exception handlers read it there).
REQUEST_ID_KEY = "tastemaker.request_id"


class Metrics:
    """Prometheus series, in a registry of their own so several apps can live in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("tastemaker_requests", "HTTP requests", ["route", "status"], registry=self.registry)
        self.latency = Histogram(
            "tastemaker_request_seconds", "request latency", ["route"], registry=self.registry,
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.stages = Histogram(
            "tastemaker_stage_seconds", "time in each pipeline stage of a recommendation request", ["stage"],
            registry=self.registry, buckets=(0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
        )
        self.events = Gauge("tastemaker_events_stored", "events in the store", registry=self.registry)
        self.model = Gauge("tastemaker_model_info", "active model version", ["version"], registry=self.registry)


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once the body passes the limit. An ``HTTPException``, so that
    FastAPI lets it through its body parsing (it turns other exceptions into a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body: larger than {limit} bytes (max_request_bytes)")


def error_body(status: int, message: str, *, field: str | None = None, request_id: str | None = None,
               details: Sequence[dict[str, str]] | None = None) -> dict[str, Any]:
    """The one error shape (``schemas.ErrorOut``), without its empty fields."""
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    if request_id is not None:
        body["request_id"] = request_id
    if details is not None:
        body["details"] = list(details)
    return body


def required_scopes(route: BaseRoute) -> tuple[str, ...]:
    """The scopes a route's ``deps.require`` dependencies ask for (none: open to all)."""
    return tuple(
        scope for dep in getattr(route, "dependencies", ())
        if (scope := getattr(dep.dependency, "required_scope", None)) is not None
    )


class Guard:
    """See the module docstring.

    ``routes``: every route of the app, each with its full path (the routers' own routes,
    not FastAPI's view of them after ``include_router``, which differs between versions);
    ``max_body`` is ``Settings.max_request_bytes``."""

    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute], max_body: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body = max_body
        self.metrics = metrics
        #: (route, its path template, the scopes it needs)
        self._routes = [(route, str(getattr(route, "path", "")), required_scopes(route)) for route in routes]

    # ------------------------------------------------------------------ routing
    def _match(self, scope: Scope) -> tuple[str, tuple[str, ...]]:
        """The route template the request goes to and the scopes that route needs; a path
        that exists only for other methods (a 405 to be) needs none."""
        partial = None
        for route, path, scopes in self._routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return path, scopes
            if match is Match.PARTIAL and partial is None:
                partial = path
        return partial or "unmatched", ()

    # ------------------------------------------------------------------ the request
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope[REQUEST_ID_KEY] = request_id
        started_at = time.perf_counter()
        route, scopes = self._match(scope)
        status: int | None = None  # of the response sent
        too_large = False  # the body passed the limit: the answer is a 413, whatever the app made of it
        replaced = False  # the app's response was swapped for that 413: drop the rest of it
        received = 0

        async def start(message: Message) -> None:
            nonlocal status
            status = int(message["status"])
            headers = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
            await send({**message, "headers": headers})

        async def respond(code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            payload = json.dumps(body, ensure_ascii=False).encode()
            raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
            raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
            await start({"type": "http.response.start", "status": code, "headers": raw})
            await send({"type": "http.response.body", "body": payload})

        async def too_large_response() -> None:
            await respond(413, error_body(413, BodyTooLarge(self.max_body).detail, field="body", request_id=request_id))

        async def guarded_send(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return
            if message["type"] == "http.response.start":
                if too_large and message["status"] != 413:
                    replaced = True
                    await too_large_response()
                    return
                await start(message)
                return
            await send(message)

        async def counted_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    too_large = True
                    raise BodyTooLarge(self.max_body)
            return message

        try:
            refusal = self._refuse(scope, scopes, request_id)
            if refusal is not None:
                await respond(*refusal)
                return
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if status is not None:  # the response is under way: nothing left to say but the log
                log.exception("request %s (%s %r) failed after its response started", request_id, scope["method"], scope["path"])
                raise
            if too_large:
                await too_large_response()
            else:
                log.exception("request %s (%s %r) failed", request_id, scope["method"], scope["path"])
                await respond(500, error_body(500, "internal error; it is logged under this request id",
                                              request_id=request_id))
        finally:
            if status is not None:
                self.metrics.requests.labels(route, str(status)).inc()
                self.metrics.latency.labels(route).observe(time.perf_counter() - started_at)

    def _refuse(self, scope: Scope, scopes: tuple[str, ...], request_id: str) -> tuple[int, dict[str, Any], dict[str, str] | None] | None:
        """A refusal decided from the headers alone, or None to go on."""
        headers = Headers(scope=scope)
        if scopes:
            service = scope["app"].state.service
            if not service.auth.open:
                client = scope.get("client")
                secret = secret_from_headers(headers.get("authorization"), headers.get("x-api-key"))
                try:
                    principal = service.auth.authenticate(secret, scopes[0], client[0] if client else None)
                    missing = [s for s in scopes[1:] if s not in principal.scopes]
                    if missing:
                        raise AuthError(403, f"API key '{principal.name}' lacks the '{missing[0]}' scope")
                except AuthError as exc:
                    extra = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
                    return exc.status, error_body(exc.status, exc.message, request_id=request_id), extra
                scope[PRINCIPAL_KEY] = principal
        length = headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                return 400, error_body(400, "content-length: not a number", field="header.content-length",
                                       request_id=request_id), None
            if int(length) > self.max_body:
                return 413, error_body(413, BodyTooLarge(self.max_body).detail, field="body", request_id=request_id), None
        return None
