"""Shared FastAPI dependencies: the service and scope checks."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Header, HTTPException, Request

from tastemaker.serve.auth import AuthError, Principal
from tastemaker.serve.service import Service


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def require(scope: str) -> Callable[..., Principal]:
    """A dependency that admits callers whose key has ``scope``."""

    def check(
        request: Request,
        authorization: str | None = Header(None, include_in_schema=False),
        x_api_key: str | None = Header(None, include_in_schema=False),
    ) -> Principal:
        secret = x_api_key
        if authorization and authorization.lower().startswith("bearer "):
            secret = authorization[7:].strip()
        try:
            return get_service(request).auth.authenticate(secret, scope)
        except AuthError as exc:
            raise HTTPException(exc.status, exc.message) from None

    return check
