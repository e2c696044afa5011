"""/v1/users: upsert users with attributes."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from tastemaker.serve.deps import get_service, require
from tastemaker.serve.schemas import Accepted, UsersIn
from tastemaker.serve.service import Service

router = APIRouter(prefix="/v1/users", tags=["users"])


@router.post("", response_model=Accepted, dependencies=[Depends(require("write"))])
def upsert_users(body: UsersIn, service: Service = Depends(get_service)) -> Accepted:
    return Accepted(accepted=service.store.upsert_users([(u.user_id, u.attributes) for u in body.users]))
