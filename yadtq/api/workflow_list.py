"""GET /workflows: the newest workflows with their status (GET /workflows/{id} draws one)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.params import Depends
from pydantic import BaseModel

from yadtq.client.client import YADTQ


class WorkflowSummary(BaseModel):
    workflow_id: str
    status: str
    result: Any = None
    error: str | None = None


def workflow_list_routes(q: YADTQ, auth: list[Depends]) -> APIRouter:
    router = APIRouter(tags=["workflows"], dependencies=list(auth))

    @router.get("/workflows", response_model=list[WorkflowSummary], summary="The newest workflows, newest first")
    def recent_workflows(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[WorkflowSummary]:
        return [WorkflowSummary(workflow_id=wid, status=got[0], result=got[1], error=got[2])
                for wid, got in q.workflows.store.recent_statuses(limit)]

    return router
