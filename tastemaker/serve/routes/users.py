"""/v1/users: upsert users with attributes; read a user's events; forget a user (privacy)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query

from tastemaker.serve.deps import get_service, require
from tastemaker.serve.schemas import Accepted, UserDeleted, UserEventOut, UserEventsOut, UserIdPath, UsersIn
from tastemaker.serve.service import Service

router = APIRouter(prefix="/v1/users", tags=["users"])


@router.post("", response_model=Accepted, dependencies=[Depends(require("write"))])
def upsert_users(body: UsersIn, service: Service = Depends(get_service)) -> Accepted:
    if len(body.users) > service.settings.max_items_per_request:
        raise HTTPException(413, f"users: at most {service.settings.max_items_per_request} per request")
    return Accepted(accepted=service.store.upsert_users([(u.user_id, u.attributes) for u in body.users]))


@router.get("/{user_id}/events", response_model=UserEventsOut, dependencies=[Depends(require("read"))])
def user_events(
    user_id: UserIdPath,
    limit: int = Query(100, ge=1, le=1000, description="how many events, the most recent first in the window"),
    before: int | None = Query(None, ge=1, le=2**63 - 1, description="only events older than this id (next_before of a page)"),
    service: Service = Depends(get_service),
) -> UserEventsOut:
    """What the store holds of a user, oldest first within the page (exposure events included:
    they are data about the user too)."""
    rows = service.store.history_with_ids(user_id, limit, before)  # type: ignore[attr-defined]
    events = [
        UserEventOut(id=i, item_id=e.item_id, event_type=e.event_type, value=e.value, timestamp=e.timestamp,
                     context=e.context, event_id=e.event_id)
        for i, e in rows
    ]
    return UserEventsOut(user_id=user_id, events=events, next_before=rows[0][0] if len(rows) == limit else None)


@router.delete("/{user_id}", response_model=UserDeleted, dependencies=[Depends(require("write"))])
def delete_user(user_id: UserIdPath, service: Service = Depends(get_service)) -> UserDeleted:
    """Forget the user: their events, attributes and experiment assignments leave the store
    now, so the next model trained knows nothing of them. The model being served keeps what
    it learned until that next training."""
    counts = service.delete_user(user_id)
    return UserDeleted(user_id=user_id, **counts)
