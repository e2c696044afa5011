"""/v1/events: one event or many. The response comes only after the store committed them."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, HTTPException

from tastemaker.protocols import Event
from tastemaker.serve.deps import get_service, require
from tastemaker.serve.schemas import EventIn, EventsAccepted, EventsIn
from tastemaker.serve.service import Service

router = APIRouter(prefix="/v1/events", tags=["events"])


def _event(e: EventIn, now: float) -> Event:
    return Event(e.user_id, e.item_id, e.event_type, e.value, e.timestamp if e.timestamp is not None else now, e.context, e.event_id)


def _accepted(service: Service, events: list[Event]) -> EventsAccepted:
    written = service.ingest(events)
    return EventsAccepted(accepted=len(events), duplicates=len(events) - written)


@router.post("", response_model=EventsAccepted, dependencies=[Depends(require("write"))])
def post_event(body: EventIn, service: Service = Depends(get_service)) -> EventsAccepted:
    return _accepted(service, [_event(body, time.time())])


@router.post("/bulk", response_model=EventsAccepted, dependencies=[Depends(require("write"))])
def post_events(body: EventsIn, service: Service = Depends(get_service)) -> EventsAccepted:
    if len(body.events) > service.settings.max_items_per_request:
        raise HTTPException(413, f"events: at most {service.settings.max_items_per_request} per request")
    now = time.time()
    return _accepted(service, [_event(e, now) for e in body.events])
