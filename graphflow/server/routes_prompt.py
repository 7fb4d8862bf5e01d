"""Jobs: queue a workflow, see and edit the queue, interrupt, read and prune the history."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from ..errors import ErrorCode, GraphError, JobErrorCode, ValidationFailed, WorkflowFormatError
from ..formats import import_document
from ..gcpause import gc_paused
from ..graph import ValidatedGraph, validate
from ..registry import Registry
from ..subgraphs import reads_files
from ..workflow import Workflow
from .events_ws import CLIENT_ID
from .json_member import parse_keeping_member
from .queue_base import Job, JobNotFound, JobStatus, to_json
from .routes_common import (
    JSON_TYPE,
    ApiError,
    int_query,
    json_response,
    parse_json,
    read_json,
    read_json_bytes,
    require_object,
)
from .state import STATE, ServerState

log = logging.getLogger("graphflow.server")
routes = web.RouteTableDef()

PROMPT_KEYS = {"workflow", "client_id", "priority", "outputs"}
MAX_PRIORITY = 1_000_000
INLINE_PARSE_BYTES = 64 * 1024
"""Bodies up to this size are parsed and validated on the event loop; bigger ones in a
thread, so a 10,000-node workflow does not stall other requests (for small bodies the
thread hop costs more than the work)."""


def _validation_error(errors: list[GraphError]) -> ApiError:
    count = len(errors)
    return ApiError(
        400,
        JobErrorCode.VALIDATION_FAILED,
        f"workflow has {count} problem{'s' if count != 1 else ''}",
        errors=[e.to_dict() for e in errors],
    )


def read_document(
    registry: Registry, document: Any, workflows: Path | None = None
) -> tuple[Workflow, str]:
    """A workflow document of any format the registry reads → (Workflow, "read as" label).

    graphflow documents are read as they always were; one without a ``"format"`` field goes
    to the registry's importers (e.g. ComfyUI's API and UI formats). Subgraph ``file``
    references resolve in ``workflows`` (the server's workflows folder) and may not leave
    it. Raises ApiError 400 listing every problem.
    """
    try:
        workflow, label = import_document(document, registry)
        if workflows is not None:
            workflow.confine_files(workflows)
        return workflow, label
    except ValidationFailed as failed:
        raise _validation_error(failed.errors) from None
    except WorkflowFormatError as error:
        raise _validation_error([GraphError(ErrorCode.INVALID_DOCUMENT, str(error))]) from None
    except RecursionError:
        raise _validation_error(
            [GraphError(ErrorCode.INVALID_DOCUMENT, "the document is nested too deeply")]
        ) from None


def prepare_workflow(
    registry: Registry,
    document: Any,
    outputs: list[str] | None,
    workflows: Path | None = None,
) -> tuple[ValidatedGraph, str]:
    """Read and validate a workflow document: (validated graph, "read as" label); raises
    ApiError 400 listing every problem."""
    workflow, label = read_document(registry, document, workflows)
    try:
        validated, errors = validate(workflow, registry)
    except RecursionError:
        raise _validation_error(
            [GraphError(ErrorCode.INVALID_DOCUMENT, "an input value is nested too deeply")]
        ) from None
    for target in outputs or ():
        if target not in workflow.nodes:
            errors.append(
                GraphError(ErrorCode.UNKNOWN_OUTPUT, f"no node {target!r} in this workflow", target)
            )
    if errors or validated is None:
        raise _validation_error(errors)
    return validated, label


def node_count(document: dict) -> int:
    """How many nodes a document of any known format holds, before it is read (for the
    server's node limit): graphflow's and ComfyUI UI's ``nodes``, else an API prompt's
    entries (or those of a saved ComfyUI ``{"prompt": ...}`` body)."""
    nodes = document.get("nodes")
    if isinstance(nodes, (dict, list)):
        return len(nodes)
    if "format" in document:
        return 0
    prompt = document.get("prompt")
    return len(prompt) if isinstance(prompt, dict) else len(document)


def _parse_prompt(body: Any, max_nodes: int) -> tuple[dict, str | None, int, list[str] | None]:
    body = require_object(body, "the request body")
    unknown = sorted(set(body) - PROMPT_KEYS)
    if unknown:
        raise ApiError(
            400,
            "invalid_request",
            f"unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(PROMPT_KEYS))}",
        )
    if "workflow" not in body:
        raise ApiError(400, "invalid_request", "the body needs a 'workflow' object")
    workflow = require_object(body["workflow"], "'workflow'")
    count = node_count(workflow)
    if count > max_nodes:
        raise ApiError(
            413,
            "workflow_too_large",
            f"workflow has {count} nodes; this server accepts at most {max_nodes}",
        )
    client_id = body.get("client_id")
    if client_id is not None and (not isinstance(client_id, str) or not CLIENT_ID.match(client_id)):
        raise ApiError(400, "invalid_request", "client_id must be 1-128 letters, digits or _.:-")
    priority = body.get("priority", 0)
    if priority is None:
        priority = 0
    if type(priority) is not int or abs(priority) > MAX_PRIORITY:
        raise ApiError(
            400, "invalid_request", f"priority must be an integer within ±{MAX_PRIORITY}"
        )
    outputs = body.get("outputs")
    if outputs is not None and (
        not isinstance(outputs, list) or not outputs or not all(isinstance(o, str) for o in outputs)
    ):
        raise ApiError(400, "invalid_request", "outputs must be a non-empty list of node ids")
    return workflow, client_id, priority, outputs


@dataclass(frozen=True)
class AcceptedPrompt:
    """A ``POST /api/prompt`` body that passed: the graphflow/1 document to store (an
    imported document is stored converted), its fields, the validated graph and what the
    document was read as."""

    document: dict
    document_text: str | None
    """``document``'s JSON text as it was posted (None when it was converted or flattened,
    or the body was not the simple case: the queue then encodes ``document``)."""
    client_id: str | None
    priority: int
    outputs: list[str] | None
    validated: ValidatedGraph
    read_as: str


def accept_prompt(
    registry: Registry, raw: bytes, max_nodes: int, workflows: Path | None = None
) -> AcceptedPrompt:
    """Parse, check and validate a ``POST /api/prompt`` body (ApiError when refused).

    What is stored is what runs: an imported document as graphflow/1, and one whose
    subgraphs come from files flattened, so a restart or a later edit of those files in
    the workflows folder cannot change a queued job.
    """
    if not raw.strip():
        raise ApiError(400, "empty_body", "this request needs a JSON body")
    body, text = parse_keeping_member(raw, "workflow", parse_json)
    document, client_id, priority, outputs = _parse_prompt(body, max_nodes)
    validated, read_as = prepare_workflow(registry, document, outputs, workflows)
    source = validated.document
    if "format" not in document or (source is not None and reads_files(source)):
        document, text = validated.workflow.to_dict(), None
    return AcceptedPrompt(document, text, client_id, priority, outputs, validated, read_as)


@routes.post("/api/prompt")
async def post_prompt(request: web.Request) -> web.Response:
    """Validate a workflow (graphflow/1, or any format an importer reads) and queue it:
    200 {job_id, position, read_as}, or 400 with every error."""
    state: ServerState = request.app[STATE]
    config = state.config
    raw = await read_json_bytes(request, config.max_body_bytes)
    workflows = state.folders["workflows"]
    if len(raw) > INLINE_PARSE_BYTES:
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()  # the request's settings go along
        accepted = await loop.run_in_executor(
            None, context.run, accept_prompt, state.registry, raw, config.max_nodes, workflows
        )
    else:
        accepted = accept_prompt(state.registry, raw, config.max_nodes, workflows)
    job = Job(
        id=uuid.uuid4().hex,
        workflow=accepted.document,
        priority=accepted.priority,
        client_id=accepted.client_id,
        outputs=accepted.outputs,
        node_count=len(accepted.validated.workflow.nodes),
    )
    position = state.queue.put(job, accepted.document_text)
    state.dispatcher.accepted(job, accepted.validated)
    return json_response({"job_id": job.id, "position": position, "read_as": accepted.read_as})


@routes.get("/api/queue")
async def get_queue(request: web.Request) -> web.Response:
    """Running and pending jobs (pending in the order they will run)."""
    state: ServerState = request.app[STATE]
    pending = []
    for position, job in enumerate(state.queue.pending()):
        item = job.summary()
        item["position"] = position
        pending.append(item)
    return json_response(
        {"running": [job.summary() for job in state.queue.running()], "pending": pending}
    )


def _job_or_404(state: ServerState, job_id: str, *, workflow: bool = True) -> Job:
    try:
        if not workflow:
            return state.queue.summary(job_id)
        return state.queue.get(job_id)
    except JobNotFound:
        raise ApiError(404, "job_not_found", f"no job {job_id!r}") from None


@routes.delete("/api/queue/{job_id}")
async def cancel_job(request: web.Request) -> web.Response:
    """Cancel a pending job (a running one is stopped with /api/interrupt)."""
    state: ServerState = request.app[STATE]
    job_id = request.match_info["job_id"]
    job = _job_or_404(state, job_id)
    if job.status is not JobStatus.PENDING:
        hint = " (use POST /api/interrupt)" if job.status is JobStatus.RUNNING else ""
        raise ApiError(409, "job_not_pending", f"job {job_id} is {job.status.value}{hint}")
    try:
        job = state.dispatcher.cancel(job_id)
    except ValueError as error:  # it started between the check and the cancel
        raise ApiError(409, "job_not_pending", str(error)) from None
    return json_response({"job_id": job.id, "status": job.status.value})


@routes.post("/api/queue/clear")
async def clear_queue(request: web.Request) -> web.Response:
    """Cancel every pending job (the running one goes on)."""
    state: ServerState = request.app[STATE]
    await read_json(request, 1024, allow_empty=True)
    return json_response({"cancelled": state.dispatcher.clear()})


@routes.post("/api/interrupt")
async def interrupt(request: web.Request) -> web.Response:
    """Stop the running job (``{"job_id": ...}`` to name it; no body: whatever runs)."""
    state: ServerState = request.app[STATE]
    body = require_object(await read_json(request, 4096, allow_empty=True), "the request body")
    job_id = body.get("job_id")
    if job_id is not None:
        if not isinstance(job_id, str):
            raise ApiError(400, "invalid_request", "job_id must be a string")
        job = _job_or_404(state, job_id)
        if job.status is not JobStatus.RUNNING:
            raise ApiError(409, "job_not_running", f"job {job_id} is {job.status.value}")
    return json_response({"interrupted": state.dispatcher.interrupt(job_id)})


@routes.get("/api/history")
async def get_history(request: web.Request) -> web.Response:
    """Finished jobs, newest first: ``?limit=`` (≤ 1000, default 50) and ``?offset=``."""
    state: ServerState = request.app[STATE]
    limit = int_query(request, "limit", 50, minimum=1, maximum=1000)
    offset = int_query(request, "offset", 0, minimum=0)
    jobs, total = state.queue.history(limit, offset)
    return json_response(
        {
            "jobs": [job.to_dict(workflow=False) for job in jobs],
            "total": total,
            "limit": limit,
            "offset": offset,
        }
    )


@routes.get("/api/history/{job_id}")
async def get_job(request: web.Request) -> web.Response:
    """One job: status, timings, outputs (ui data), error and its workflow."""
    state: ServerState = request.app[STATE]
    job = _job_or_404(state, request.match_info["job_id"], workflow=False)
    data = job.to_dict(workflow=False)
    data["position"] = state.queue.position(job.id)
    try:
        workflow = state.queue.workflow_text(job.id)
    except JobNotFound:  # deleted between the two reads
        raise ApiError(404, "job_not_found", f"no job {job.id!r}") from None
    # The stored text goes out as it is, once a parse says it is JSON (re-encoding a
    # 10,000-node document too took ~80 ms of the event loop per request).
    if not _is_json(workflow):
        log.warning("unreadable workflow of job %s in the job database", job.id)
        data["workflow"] = {"unreadable": workflow[:1000]}
        return json_response(data)
    body = to_json(data)
    return web.Response(text=f'{body[:-1]},"workflow":{workflow}}}', content_type=JSON_TYPE)


def _is_json(text: str) -> bool:
    try:
        with gc_paused():  # what the parse builds is dropped at once
            json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


@routes.delete("/api/history/{job_id}")
async def delete_job(request: web.Request) -> web.Response:
    """Forget a finished job."""
    state: ServerState = request.app[STATE]
    job_id = request.match_info["job_id"]
    job = _job_or_404(state, job_id)
    try:
        state.queue.delete(job_id)
    except ValueError:
        raise ApiError(
            409, "job_not_finished", f"job {job_id} is {job.status.value}; cancel it first"
        ) from None
    return json_response({"deleted": job_id})
