"""POST /tasks/purge: delete finished tasks of one status, oldest first (the dashboard's Maintenance)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.params import Depends
from pydantic import BaseModel

from yadtq.client.client import YADTQ


class Purged(BaseModel):
    status: str
    purged: int


def purge_routes(q: YADTQ, auth: list[Depends]) -> APIRouter:
    router = APIRouter(tags=["tasks"], dependencies=list(auth))

    @router.post("/tasks/purge", response_model=Purged,
                 summary="Delete up to 1,000 finished tasks of one status, oldest first, with their history")
    def purge(status: Annotated[Literal["success", "failed", "cancelled", "expired"], Query()]) -> Purged:
        return Purged(status=status, purged=q.backend.purge(status))

    return router
