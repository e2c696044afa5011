"""Conversational recommendation over the served pipeline (``tastemaker.chat``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException

from tastemaker.serve.deps import get_service, require
from tastemaker.serve.schemas import ChatIn, ChatOut
from tastemaker.serve.service import Service

router = APIRouter(prefix="/v1", tags=["chat"])


@router.post("/chat", response_model=ChatOut, dependencies=[Depends(require("read"))])
def chat(body: ChatIn, service: Service = Depends(get_service)) -> ChatOut:
    try:
        reply, version = service.chat(body.session_id, body.message, body.user_id)
    except LookupError as exc:  # no trained pipeline yet
        raise HTTPException(409, str(exc)) from None
    data = reply.to_dict()
    return ChatOut(session_id=body.session_id, answer=data["answer"], items=data["items"], state=data["state"],
                   refused=data["refused"], category=data["category"], model_version=version)
