"""/v1/items: upsert in bulk, get, delete, mark (un)available, similar items."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, HTTPException, Query

from tastemaker.protocols import Item
from tastemaker.serve.deps import get_service, require
from tastemaker.serve.schemas import (
    Accepted, AvailabilityIn, ItemIdPath, ItemOut, ItemsIn, RecommendationOut, RecommendationsOut, errors,
)
from tastemaker.serve.service import Service

router = APIRouter(prefix="/v1/items", tags=["items"])


@router.post("", response_model=Accepted, dependencies=[Depends(require("write"))])
def upsert_items(body: ItemsIn, service: Service = Depends(get_service)) -> Accepted:
    if len(body.items) > service.settings.max_items_per_request:
        raise HTTPException(413, f"items: at most {service.settings.max_items_per_request} per request")
    now = time.time()
    items = [
        Item(i.item_id, i.title, i.text, tuple(i.categories), i.attributes, i.available, now if i.created_at is None else i.created_at)
        for i in body.items
    ]
    return Accepted(accepted=service.upsert_items(items))


@router.get("/{item_id}", response_model=ItemOut, dependencies=[Depends(require("read"))], responses=errors(404))
def get_item(item_id: ItemIdPath, service: Service = Depends(get_service)) -> ItemOut:
    item = service.store.get_item(item_id)
    if item is None:
        raise HTTPException(404, f"item_id: no item {item_id!r}")
    return ItemOut(
        item_id=item.item_id, title=item.title, text=item.text, categories=list(item.categories),
        attributes=item.attributes, available=item.available, created_at=item.created_at,
    )


@router.delete("/{item_id}", response_model=Accepted, dependencies=[Depends(require("write"))], responses=errors(404))
def delete_item(item_id: ItemIdPath, service: Service = Depends(get_service)) -> Accepted:
    if not service.delete_item(item_id):
        raise HTTPException(404, f"item_id: no item {item_id!r}")
    return Accepted(accepted=1)


@router.put("/{item_id}/availability", response_model=Accepted, dependencies=[Depends(require("write"))],
            responses=errors(404))
def set_availability(item_id: ItemIdPath, body: AvailabilityIn, service: Service = Depends(get_service)) -> Accepted:
    if not service.set_available(item_id, body.available):
        raise HTTPException(404, f"item_id: no item {item_id!r}")
    return Accepted(accepted=1)


@router.get("/{item_id}/similar", response_model=RecommendationsOut, dependencies=[Depends(require("read"))],
            responses=errors(404))
def similar(item_id: ItemIdPath, n: int = Query(10, ge=1), service: Service = Depends(get_service)) -> RecommendationsOut:
    # a plain def: it runs in the thread pool, so the model never blocks the event loop
    if n > service.settings.max_n:
        raise HTTPException(422, f"query.n: at most {service.settings.max_n}")
    engine = service.engine
    try:
        items = engine.similar(item_id, n, service.catalog)
    except KeyError:
        raise HTTPException(404, f"item_id: no item {item_id!r}") from None
    return RecommendationsOut(
        user_id=None, model_version=engine.version, request_id=f"similar-{item_id}",
        items=[RecommendationOut(item_id=r.item_id, title=r.title, score=r.score, source=r.source, reason=r.reason) for r in items],
    )
