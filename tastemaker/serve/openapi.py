"""The OpenAPI schema, told true: every status each route can return, one error shape, the limits.

FastAPI documents a 200 and (for routes with inputs) a 422 in its own validation shape. What
the service really answers also depends on the guard middleware and the settings, so
:func:`install` replaces ``app.openapi`` with a function that adds, per operation:

* ``ErrorOut`` as the body of every error status;
* 400, 413 and 500 on every route (a 400 for malformed HTTP comes from the HTTP server
  itself, in plain text, before the app sees the request; the app's own 400, a body that
  is not UTF-8 JSON, is an ``ErrorOut``);
* 401, 403 and 429 (with ``Retry-After``) on routes that need a scope, and the API-key
  security schemes (``Authorization: Bearer`` or ``X-API-Key``);
* 422 on routes with parameters or a body;
* the limits that are settings: ``n <= max_n`` and ``maxItems = max_items_per_request``.

Route-specific statuses (404, 409) are declared on the routes with ``schemas.errors()``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic.json_schema import models_json_schema
from starlette.routing import BaseRoute

from tastemaker.serve.guard import required_scopes
from tastemaker.serve.schemas import ERROR_DESCRIPTIONS, ErrorOut
from tastemaker.serve.settings import Settings

ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <API key>"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}
RETRY_AFTER = {"Retry-After": {"description": "seconds until the limit lets a request through again",
                               "schema": {"type": "integer", "minimum": 1}}}


def route_statuses(route: APIRoute) -> list[int]:
    """The error statuses ``route`` can answer besides its own declared ones."""
    codes = {400, 413, 500}
    if required_scopes(route):
        codes |= {401, 403, 429}
    kinds = _param_kinds(route.dependant)
    if kinds & {"path", "query", "body"}:
        codes.add(422)
    return sorted(codes)


def _param_kinds(dependant: Any) -> set[str]:
    """Which kinds of parameters a route reads, its dependencies' included."""
    kinds = {kind for kind in ("path", "query", "body") if getattr(dependant, f"{kind}_params", None)}
    for sub in getattr(dependant, "dependencies", ()):
        kinds |= _param_kinds(sub)
    return kinds


def install(app: FastAPI, settings: Settings, routes: Sequence[BaseRoute]) -> None:
    """Make ``app.openapi()`` (and so ``/openapi.json`` and ``/docs``) the schema above;
    ``routes`` are the app's routes with their full paths (see ``app.create_app``)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {})
        _, defs = models_json_schema([(ErrorOut, "serialization")], ref_template="#/components/schemas/{model}")
        components.setdefault("schemas", {}).update(defs.get("$defs", {}))
        components["securitySchemes"] = SECURITY_SCHEMES
        for route in routes:
            if not isinstance(route, APIRoute) or not route.include_in_schema:
                continue
            secured = bool(required_scopes(route))
            for method in route.methods:
                operation = schema["paths"][route.path_format][method.lower()]
                responses = operation.setdefault("responses", {})
                # FastAPI's own 422 (in its shape) included: every error is an ErrorOut
                declared = {int(c) for c in responses if str(c).isdigit() and int(c) >= 400}
                for code in sorted({*route_statuses(route), *declared}):
                    entry = responses.setdefault(str(code), {})
                    entry["description"] = ERROR_DESCRIPTIONS.get(code, entry.get("description", "error"))
                    entry["content"] = {"application/json": {"schema": ERROR_REF}}
                    if code == 400:
                        entry["content"]["text/plain"] = {"schema": {"type": "string"}}
                    if code == 429:
                        entry["headers"] = RETRY_AFTER
                if secured:
                    operation["security"] = [{"bearer": []}, {"apiKey": []}]
                for param in operation.get("parameters", ()):
                    if param.get("in") == "query" and param.get("name") == "n":
                        param["schema"]["maximum"] = settings.max_n
        _declare_limits(components.get("schemas", {}), settings)
        _drop_unused(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _declare_limits(schemas: dict[str, Any], settings: Settings) -> None:
    """The limits that come from settings, on the request bodies that carry them."""
    session = schemas.get("SessionIn", {}).get("properties", {})
    if "n" in session:
        session["n"]["maximum"] = settings.max_n
    for model, prop in (("ItemsIn", "items"), ("EventsIn", "events"), ("UsersIn", "users")):
        field = schemas.get(model, {}).get("properties", {}).get(prop)
        if field is not None:
            field["maxItems"] = settings.max_items_per_request


def _drop_unused(schema: dict[str, Any]) -> None:
    """FastAPI's own validation-error models, once nothing refers to them."""
    schemas = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):  # the first refers to the second
        others = {k: v for k, v in schemas.items() if k != name}
        if f'"#/components/schemas/{name}"' not in json.dumps([schema["paths"], others]):
            schemas.pop(name, None)
