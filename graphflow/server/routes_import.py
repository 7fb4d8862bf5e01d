"""Workflow import for the editor: any format the registry reads → a graphflow/1 document.

``POST /api/workflow/import`` takes a JSON document (graphflow's own, or one a plugin's
importer reads, e.g. ComfyUI's API or UI format) or the bytes of a PNG that carries one, and
answers the graphflow/1 document, what it was read as, and the problems validation finds in
it (the editor loads work in progress, so those do not refuse the import). A document that
cannot be read is a 400; one that was recognised but cannot be mapped (unknown class types,
unmappable values) is a 422 listing every problem.
"""

from __future__ import annotations

import asyncio
import contextvars
from pathlib import Path
from typing import Any

from aiohttp import web

from ..errors import ErrorCode, GraphError, ValidationFailed, WorkflowFormatError
from ..formats import detect_importer, read_workflow
from ..graph import validate
from ..pngmeta import is_png
from ..registry import Registry
from ..workflow import CURRENT_FORMAT
from .routes_common import JSON_TYPE, ApiError, json_response, parse_json, read_body
from .routes_prompt import INLINE_PARSE_BYTES, node_count
from .state import STATE, ServerState

routes = web.RouteTableDef()

PNG_TYPES = ("image/png", "application/octet-stream")
IMPORT_FAILED = "import_failed"
"""``error.code`` of a document that was recognised but cannot be mapped onto graphflow."""


def format_name(label: str, registry: Registry) -> str:
    """The importer name behind a "read as" label (its label starts with the importer's
    label), or graphflow's own format for documents graphflow reads itself."""
    matches = [i for i in getattr(registry, "importers", ()) or () if label.startswith(i.label)]
    if not matches:
        return CURRENT_FORMAT
    return max(matches, key=lambda importer: len(importer.label)).name


def _refused(error: Exception, doc: Any, registry: Registry) -> ApiError:
    """The 400/422 for a document :func:`read_workflow` refused."""
    importer = detect_importer(doc, registry) if isinstance(doc, dict) else None
    extra = {"format": importer.name} if importer is not None else {}
    if isinstance(error, ValidationFailed):
        count = len(error.errors)
        what = importer.label if importer is not None else "the workflow"
        return ApiError(
            422,
            IMPORT_FAILED,
            f"{what} cannot be imported: {count} problem{'s' if count != 1 else ''}",
            errors=[problem.to_dict() for problem in error.errors],
            **extra,
        )
    message = str(error) if isinstance(error, WorkflowFormatError) else "nested too deeply"
    return ApiError(
        400,
        ErrorCode.INVALID_DOCUMENT.value,
        message,
        errors=[GraphError(ErrorCode.INVALID_DOCUMENT, message).to_dict()],
        **extra,
    )


def import_workflow(
    registry: Registry, source: Any, max_nodes: int, workflows: Path | None = None
) -> dict[str, Any]:
    """Read ``source`` (a parsed JSON document or PNG bytes) into the import answer:
    ``{"workflow", "format", "label", "problems"}`` (ApiError when it cannot be read).
    Subgraph ``file`` references resolve inside ``workflows`` only."""
    if isinstance(source, dict) and node_count(source) > max_nodes:
        raise ApiError(413, "workflow_too_large", f"at most {max_nodes} nodes")
    try:
        workflow, label = read_workflow(source, registry)
    except (ValidationFailed, WorkflowFormatError, RecursionError) as error:
        raise _refused(error, source, registry) from None
    if len(workflow.nodes) > max_nodes:
        raise ApiError(413, "workflow_too_large", f"at most {max_nodes} nodes")
    if workflows is not None:
        workflow.confine_files(workflows)
    try:
        _, problems = validate(workflow, registry)
    except RecursionError:
        problems = [GraphError(ErrorCode.INVALID_DOCUMENT, "an input value is nested too deeply")]
    return {
        "workflow": workflow.to_dict(),
        "format": format_name(label, registry),
        "label": label,
        "problems": [problem.to_dict() for problem in problems],
    }


@routes.post("/api/workflow/import")
async def post_workflow_import(request: web.Request) -> web.Response:
    """Read a workflow of any known format (JSON, or a PNG carrying one) as graphflow/1."""
    state: ServerState = request.app[STATE]
    config = state.config
    if not request.body_exists:
        raise ApiError(400, "empty_body", "send a workflow JSON document or a PNG")
    if request.content_type == JSON_TYPE:
        raw = await read_body(request, config.max_body_bytes)
        if not raw.strip():
            raise ApiError(400, "empty_body", "send a workflow JSON document or a PNG")
        source: Any = parse_json(raw)
        if not isinstance(source, dict):
            raise ApiError(400, "invalid_document", "a workflow must be a JSON object")
    elif request.content_type in PNG_TYPES:
        raw = source = await read_body(request, config.max_upload_bytes)
        if not is_png(source):
            raise ApiError(400, "invalid_document", "the body is not a PNG file")
    else:
        raise ApiError(
            400,
            "wrong_content_type",
            f"expected Content-Type {JSON_TYPE} or image/png, got {request.content_type or 'none'}",
        )
    workflows = state.folders["workflows"]
    if len(raw) <= INLINE_PARSE_BYTES:
        return json_response(import_workflow(state.registry, source, config.max_nodes, workflows))
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()  # the request's settings go along
    answer = await loop.run_in_executor(
        None, context.run, import_workflow, state.registry, source, config.max_nodes, workflows
    )
    return json_response(answer)
