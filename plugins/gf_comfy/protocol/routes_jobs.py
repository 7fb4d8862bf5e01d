"""ComfyUI's job routes on graphflow's one queue: ``/prompt``, ``/queue``, ``/history``,
``/interrupt``, ``/free`` (COMFY_COMPAT §2.1-2.4).

A prompt becomes a graphflow job whose id is the ``prompt_id`` (the caller's or a new
uuid4), so graphflow's ``/api/queue`` and ``/api/history`` show it, and ComfyUI's routes
show graphflow's jobs. Order: ComfyUI runs the lowest ``number`` first; graphflow runs the
highest priority first, then first come. A prompt gets priority ``counter − number``
(``0`` for the default number, so both dialects' default jobs run in arrival order;
``front`` and smaller numbers run earlier).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import math
import uuid
from typing import Any

from aiohttp import web

from graphflow.gcpause import gc_paused
from graphflow.jobs import Job, to_json
from graphflow.server.queue_base import JobNotFound
from graphflow.server.routes_common import ApiError, json_response, parse_json, read_body
from graphflow.server.state import STATE, ServerState

from . import prompts, records
from .state import COMFY, comfy_error

routes = web.RouteTableDef()

HISTORY_CAP = 200
"""Entries ``GET /history`` answers without ``max_items`` (ComfyUI answers up to 10,000;
clients poll it as a liveness check, so an unbounded answer must stay cheap)."""
MAX_HISTORY_ITEMS = 10_000
INLINE_BYTES = 64 * 1024
SECRET_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")


async def read_any_json(request: web.Request, limit: int, *, allow_empty: bool = False) -> Any:
    """A JSON body whatever its Content-Type (urllib sends form-urlencoded); ``{}`` when empty
    and allowed. Refusals are ComfyUI-shaped 400s (never a 500)."""
    return parse_any_json(await read_raw(request, limit), allow_empty=allow_empty)


async def read_raw(request: web.Request, limit: int) -> bytes:
    """The body, at most ``limit`` bytes (413 in ComfyUI's shape beyond)."""
    try:
        return await read_body(request, limit)
    except ApiError as error:
        raise comfy_error(error.status, error.code, error.message) from None


def parse_any_json(raw: bytes, *, allow_empty: bool = False) -> Any:
    """Parse a body as JSON, every failure a ComfyUI-shaped 400."""
    if not raw.strip():
        if allow_empty:
            return {}
        raise comfy_error(400, "invalid_json", "this request needs a JSON body")
    try:
        return parse_json(raw)
    except ApiError as error:
        raise comfy_error(400, "invalid_json", f"the body is not JSON: {error.message}") from None


def _priority(number: Any, counter: int) -> int:
    value = counter - number
    return max(-(1 << 62), min(1 << 62, math.ceil(value) if isinstance(value, float) else value))


def _parse(body: Any, comfy: Any) -> tuple[dict, str, Any, int, dict, list | None]:
    if not isinstance(body, dict):
        raise comfy_error(400, "invalid_prompt", "the body must be a JSON object")
    if "prompt" not in body:
        if isinstance(body.get("nodes"), list) and "links" in body:
            prompts.check_shape(body)  # raises the UI-format message
        raise comfy_error(400, "no_prompt", "No prompt provided")
    client_id = body.get("client_id")
    if client_id is not None and not isinstance(client_id, str):
        raise comfy_error(400, "invalid_prompt", "client_id must be a string")
    prompt_id = body.get("prompt_id")
    if prompt_id is None:
        prompt_id = str(uuid.uuid4())
    if not isinstance(prompt_id, str) or not 0 < len(prompt_id) <= 128:
        raise comfy_error(400, "invalid_prompt", "prompt_id must be a string of 1-128 characters")
    counter = comfy.next_number()
    number = body.get("number")
    if (
        isinstance(number, bool)
        or not isinstance(number, (int, float, type(None)))
        or (isinstance(number, float) and not math.isfinite(number))
    ):
        raise comfy_error(400, "invalid_prompt", "number must be a number")
    if number is None:
        number = -counter if body.get("front") else counter
    extra = body.get("extra_data") or {}
    if not isinstance(extra, dict):
        raise comfy_error(400, "invalid_prompt", "extra_data must be an object")
    extra = {k: v for k, v in extra.items() if k not in SECRET_KEYS}
    if client_id is not None:
        extra["client_id"] = client_id
    targets = body.get("partial_execution_targets")
    if targets is not None and not isinstance(targets, list):
        raise comfy_error(400, "invalid_prompt", "partial_execution_targets must be a list")
    return body["prompt"], prompt_id, number, _priority(number, counter), extra, targets


@routes.post("/prompt")
async def post_prompt(request: web.Request) -> web.Response:
    """Queue an API-format prompt: ``{prompt_id, number, node_errors}`` or ComfyUI's 400."""
    state: ServerState = request.app[STATE]
    comfy = request.app[COMFY]
    raw = await read_raw(request, state.config.max_body_bytes)
    key = comfy.conversions.key(raw)
    seen = comfy.conversions.get(key, state.registry)
    body, converted = seen if seen is not None else (parse_any_json(raw), None)
    prompt, prompt_id, number, priority, extra, targets = _parse(body, comfy)
    if isinstance(prompt, dict) and len(prompt) > state.config.max_nodes:
        raise comfy_error(413, "prompt_too_large", f"at most {state.config.max_nodes} nodes")
    if "prompt_id" in body:  # a fresh uuid4 needs no look-up
        try:
            state.queue.get(prompt_id)
        except JobNotFound:
            pass
        else:
            raise comfy_error(400, "invalid_prompt", f"prompt_id {prompt_id!r} is already used")
    client_id = extra.get("client_id")

    def editor(coerced: dict, outputs: list[str]) -> dict:
        return {
            records.COMFY_KEY: {
                "prompt": coerced,
                "extra_data": extra,
                "number": number,
                "outputs": outputs,
                "extra_pnginfo": extra.get("extra_pnginfo") or {},
            }
        }

    if len(raw) > INLINE_BYTES:  # big prompts validate off the event loop (as graphflow's)
        context = contextvars.copy_context()
        accepted = await asyncio.get_running_loop().run_in_executor(
            None, context.run, prompts.accept, state.registry, prompt, targets, editor, converted
        )
    else:
        accepted = prompts.accept(state.registry, prompt, targets, editor, converted)
    comfy.conversions.put(key, len(raw), state.registry, body, accepted.converted)
    document = accepted.document
    job = Job(
        id=prompt_id,
        workflow=document,
        priority=priority,
        client_id=client_id,
        outputs=accepted.outputs if accepted.partial else None,
        node_count=len(document["nodes"]),
    )
    comfy.feed.expect(client_id, prompt_id, accepted.prompt)
    state.queue.put(job)
    state.dispatcher.accepted(job, accepted.validated)
    return json_response(
        {"prompt_id": prompt_id, "number": number, "node_errors": accepted.node_errors}
    )


@routes.get("/prompt")
async def get_prompt(request: web.Request) -> web.Response:
    """``{"exec_info": {"queue_remaining": pending + running}}``."""
    state: ServerState = request.app[STATE]
    return json_response(
        {"exec_info": {"queue_remaining": sum(state.queue.active_counts().values())}}
    )


def _full(state: ServerState, jobs: list[Job]) -> list[Job]:
    out = []
    for job in jobs:
        try:
            out.append(state.queue.get(job.id))
        except JobNotFound:  # finished and pruned between the two reads
            continue
    return out


@routes.get("/queue")
async def get_queue(request: web.Request) -> web.Response:
    """``{"queue_running": [item], "queue_pending": [item]}``, items as ComfyUI's tuples."""
    state: ServerState = request.app[STATE]
    registry = state.registry
    running = [records.queue_item(registry, j) for j in _full(state, state.queue.running())]
    pending = [records.queue_item(registry, j) for j in _full(state, state.queue.pending())]
    return json_response({"queue_running": running, "queue_pending": pending})


@routes.post("/queue")
async def post_queue(request: web.Request) -> web.Response:
    """``{"clear": true}`` and/or ``{"delete": [prompt_id...]}`` (pending jobs only)."""
    state: ServerState = request.app[STATE]
    body = await read_any_json(request, 1 << 20, allow_empty=True)
    if isinstance(body, dict):
        if body.get("clear"):
            state.dispatcher.clear()
        for prompt_id in body.get("delete") or ():
            if isinstance(prompt_id, str):
                # unknown or not pending: ComfyUI ignores it too
                with contextlib.suppress(JobNotFound, ValueError):
                    state.dispatcher.cancel(prompt_id)
    return web.Response(status=200)


@routes.post("/interrupt")
async def interrupt(request: web.Request) -> web.Response:
    """Stop the running prompt (``{"prompt_id"}``: only if that one runs); always 200."""
    state: ServerState = request.app[STATE]
    body = await read_any_json(request, 4096, allow_empty=True)
    prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
    state.dispatcher.interrupt(prompt_id if isinstance(prompt_id, str) else None)
    return web.Response(status=200)


def _history_slice(state: ServerState, max_items: int | None, offset: int | None) -> list[Job]:
    """Finished jobs oldest first: the last ``max_items`` (or those after ``offset``)."""
    _, total = state.queue.history(1, 0)
    count = min(max_items if max_items is not None else HISTORY_CAP, MAX_HISTORY_ITEMS)
    skip_oldest = offset if offset is not None and offset >= 0 else max(0, total - count)
    count = max(0, min(count, total - skip_oldest))
    if count == 0:
        return []
    jobs, _ = state.queue.history(count, max(0, total - skip_oldest - count))
    return list(reversed(jobs))  # summaries: the documents are read only for new entries


def _int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise comfy_error(400, "invalid_parameter", f"{name} must be an integer") from None


@routes.get("/history")
async def get_history(request: web.Request) -> web.Response:
    """``{prompt_id: entry}`` oldest first; ``?max_items=N`` (last N), ``&offset=K``."""
    state: ServerState = request.app[STATE]
    comfy = request.app[COMFY]
    jobs = _history_slice(state, _int_param(request, "max_items"), _int_param(request, "offset"))
    parts = []
    with gc_paused():  # parsing and rendering big prompts: cycle-free allocation bursts
        for job in jobs:
            if records.shown_in_history(job):
                text = comfy.history_text(job, lambda j: _entry_text(state, j))
                if text is not None:
                    parts.append(f"{json.dumps(job.id)}:{text}")
    return web.Response(text="{" + ",".join(parts) + "}", content_type="application/json")


def _entry_text(state: ServerState, summary: Job) -> str | None:
    try:
        job = state.queue.get(summary.id)
    except JobNotFound:  # deleted between the listing and this read
        return None
    return to_json(records.history_entry(state.registry, job))


@routes.get("/history/{prompt_id}")
async def get_history_entry(request: web.Request) -> web.Response:
    """``{prompt_id: entry}``, or ``{}`` while unknown or not finished (as ComfyUI)."""
    state: ServerState = request.app[STATE]
    prompt_id = request.match_info["prompt_id"]
    with gc_paused():  # the record holds the whole prompt: many small objects, no cycles
        try:
            job = state.queue.get(prompt_id)
        except JobNotFound:
            return json_response({})
        if not records.shown_in_history(job):
            return json_response({})
        render = request.app[COMFY].history_text
        text = render(job, lambda j: to_json(records.history_entry(state.registry, j)))
    return web.Response(text=f"{{{json.dumps(job.id)}:{text}}}", content_type="application/json")


@routes.post("/history")
async def post_history(request: web.Request) -> web.Response:
    """``{"clear": true}`` / ``{"delete": [ids]}``: forget finished jobs (graphflow's too)."""
    state: ServerState = request.app[STATE]
    body = await read_any_json(request, 1 << 20, allow_empty=True)
    if not isinstance(body, dict):
        return web.Response(status=200)
    ids = [i for i in body.get("delete") or () if isinstance(i, str)]
    if body.get("clear"):
        while True:
            jobs, _ = state.queue.history(1000, 0)
            if not jobs:
                break
            for job in jobs:
                state.queue.delete(job.id)
    for prompt_id in ids:
        with contextlib.suppress(JobNotFound, ValueError):
            state.queue.delete(prompt_id)
    return web.Response(status=200)


@routes.post("/free")
async def free(request: web.Request) -> web.Response:
    """``{"unload_models": bool, "free_memory": bool}``."""
    state: ServerState = request.app[STATE]
    body = await read_any_json(request, 4096, allow_empty=True)
    body = body if isinstance(body, dict) else {}
    models = bool(body.get("unload_models")) or bool(body.get("free_memory"))
    cache = bool(body.get("free_memory"))
    if models or cache:
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: state.runner.free(cache=cache, models=models)
        )
    return web.Response(status=200)
