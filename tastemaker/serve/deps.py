"""Shared FastAPI dependencies: the service and scope checks."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Header, HTTPException, Request

from tastemaker.serve.auth import AuthError, Principal, secret_from_headers
from tastemaker.serve.service import Service

#: Where the guard middleware (serve/guard.py) leaves the caller it authenticated.
PRINCIPAL_KEY = "tastemaker.principal"


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def require(scope: str) -> Callable[..., Principal]:
    """A dependency that admits callers whose key has ``scope``.

    The guard middleware reads ``required_scope`` off it to authenticate a request from its
    headers before any of its body is read; the dependency then only picks up that caller.
    It authenticates by itself where no guard ran (the app mounted without it)."""

    def check(
        request: Request,
        authorization: str | None = Header(None, include_in_schema=False),
        x_api_key: str | None = Header(None, include_in_schema=False),
    ) -> Principal:
        principal: Principal | None = request.scope.get(PRINCIPAL_KEY)
        if principal is not None and scope in principal.scopes:
            return principal
        client = request.client.host if request.client else None
        try:
            return get_service(request).auth.authenticate(secret_from_headers(authorization, x_api_key), scope, client)
        except AuthError as exc:
            headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
            raise HTTPException(exc.status, exc.message, headers=headers) from None

    check.required_scope = scope  # type: ignore[attr-defined]
    return check
