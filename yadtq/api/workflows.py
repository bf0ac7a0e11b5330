"""The HTTP API's workflow routes: POST /workflows (a JSON description), GET /workflows/{id}.

The description is the canvas's JSON (yadtq.task.canvas): nodes of type task, chain, group, chord.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path
from fastapi.params import Depends
from pydantic import BaseModel, Field

from yadtq.client.client import YADTQ

EXAMPLE = {"workflow": {"type": "chord",
                        "header": {"type": "group", "members": [{"task": "add", "args": [1, 1]},
                                                                {"task": "add", "args": [2, 2]}]},
                        "body": {"task": "total"}}}


class WorkflowRequest(BaseModel):
    workflow: dict[str, Any] = Field(description="task | chain (steps) | group (members) | chord (header, body)")
    workflow_id: str | None = Field(default=None, min_length=4, max_length=200, pattern="^wf-",
                                    description="an id of your own (starting wf-): submitting it again is a no-op")
    unchecked: bool = Field(default=False, description="skip the check of task names against live workers")


class WorkflowSubmitted(BaseModel):
    workflow_id: str
    status: str


class WorkflowNode(BaseModel):
    index: int
    kind: str
    parent: int = Field(description="-1: the root; -2: an error callback of node `position`")
    position: int
    state: str
    children: list[int]
    task: str | None
    task_id: str | None
    result: Any = None
    error: str | None


class WorkflowOut(BaseModel):
    workflow_id: str
    status: str = Field(description="running | success | failed")
    result: Any = None
    error: str | None
    created: float | None
    finished: float | None
    nodes: list[WorkflowNode]


WorkflowId = Annotated[str, Path(max_length=200, description="the id POST /workflows returned")]


def workflow_routes(q: YADTQ, auth: Sequence[Depends]) -> APIRouter:
    router = APIRouter(tags=["workflows"], dependencies=list(auth))

    @router.post("/workflows", status_code=201, response_model=WorkflowSubmitted,
                 summary="Submit a workflow (chain, group, chord, nested); follow it with GET /workflows/{id}")
    def submit_workflow(body: Annotated[WorkflowRequest, Body(examples=[EXAMPLE])]) -> WorkflowSubmitted:
        wid = q.submit_workflow(body.workflow, workflow_id=body.workflow_id, unchecked=body.unchecked)
        return WorkflowSubmitted(workflow_id=wid, status="running")

    @router.get("/workflows/{workflow_id}", response_model=WorkflowOut,
                summary="A workflow's status, final result and every node's state")
    def workflow(workflow_id: WorkflowId) -> WorkflowOut:
        wf = q.workflow(workflow_id)
        return WorkflowOut(workflow_id=wf.workflow_id, status=wf.status, result=wf.result, error=wf.error,
                           created=wf.created, finished=wf.finished,
                           nodes=[WorkflowNode(**n.as_dict()) for n in wf.nodes])

    return router
