"""Nodes, system information, freeing memory, and the editor's static files."""

from __future__ import annotations

import asyncio
import mimetypes
import os
import platform
import resource
import sys
import time
from importlib import metadata
from typing import Any

from aiohttp import web

from .. import __version__
from .files import UnsafePath, check_relative, contained
from .routes_common import ApiError, json_response, read_json, require_object
from .state import STATE, ServerState

routes = web.RouteTableDef()

NOT_BUILT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>graphflow</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 4em auto">
<h1>graphflow</h1>
<p>The server is running, but the editor is not built, so there is nothing to show here.</p>
<p>Build it with <code>npm --prefix web ci &amp;&amp; npm --prefix web run build</code> (it goes to
<code>graphflow/web_dist</code>), or use the API: <a href="/api/nodes">/api/nodes</a>,
<a href="/api/queue">/api/queue</a>, <a href="/api/system">/api/system</a>.</p>
</body></html>
"""


@routes.get("/api/nodes")
async def list_nodes(request: web.Request) -> web.Response:
    """Every node spec and port type (``Registry.to_dict()``)."""
    state: ServerState = request.app[STATE]
    return json_response(state.registry.to_dict())


@routes.get("/api/nodes/{node_id}")
async def get_node(request: web.Request) -> web.Response:
    """One node spec, with the plugin that registered it."""
    state: ServerState = request.app[STATE]
    node_id = request.match_info["node_id"]
    spec = state.registry.get(node_id)
    if spec is None:
        raise ApiError(404, "node_not_found", f"no node type {node_id!r}")
    data = spec.to_dict()
    data["plugin"] = state.registry.owner(node_id)
    return json_response(data)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _memory() -> dict[str, Any]:
    info: dict[str, Any] = {}
    try:
        with open("/proc/self/statm") as handle:
            info["process_rss_bytes"] = int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    info["process_peak_rss_bytes"] = peak if sys.platform == "darwin" else peak * 1024
    try:
        with open("/proc/meminfo") as handle:
            fields = dict(line.split(":", 1) for line in handle)
        info["system_total_bytes"] = int(fields["MemTotal"].split()[0]) * 1024
        info["system_available_bytes"] = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        pass
    return info


def _devices(load_torch: bool) -> dict[str, Any]:
    """Accelerators as torch sees them; torch is imported only when asked (it is slow)."""
    torch = sys.modules.get("torch")
    if torch is None and load_torch:
        try:
            import torch
        except ImportError:
            torch = None
    if torch is None:
        return {"torch_loaded": False, "note": "torch not loaded yet; ask with ?devices=1"}
    devices: list[dict[str, Any]] = [{"name": "cpu", "type": "cpu"}]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            item = {
                "name": props.name,
                "type": "cuda",
                "index": index,
                "total_memory_bytes": props.total_memory,
            }
            if torch.cuda.is_initialized():
                item["allocated_bytes"] = torch.cuda.memory_allocated(index)
                item["reserved_bytes"] = torch.cuda.memory_reserved(index)
            devices.append(item)
    from ..runtime.devices import default_device

    return {"torch_loaded": True, "default": default_device(), "devices": devices}


@routes.get("/api/system")
async def system(request: web.Request) -> web.Response:
    """Versions, devices, memory, cache usage, queue counts and plugin problems."""
    state: ServerState = request.app[STATE]
    load_torch = request.query.get("devices") in ("1", "true")
    # to_thread carries the request's context, so the server's device setting is in force.
    devices = await asyncio.to_thread(_devices, load_torch)
    return json_response(
        {
            "versions": {
                "graphflow": __version__,
                "python": platform.python_version(),
                "aiohttp": _version("aiohttp"),
                "torch": _version("torch"),
                "pillow": _version("pillow"),
            },
            "platform": platform.platform(),
            "device": devices,
            "memory": _memory(),
            "runner": state.runner.info(),
            "queue": state.queue.counts(),
            "websocket_clients": state.hub.connection_count,
            "uptime_seconds": time.time() - state.started_at,
            "nodes": len(state.registry),
            "plugin_problems": [str(p) for p in state.plugin_problems],
        }
    )


@routes.post("/api/free")
async def free(request: web.Request) -> web.Response:
    """Drop the output cache and unload models (``{"cache": bool, "models": bool}``)."""
    state: ServerState = request.app[STATE]
    body = require_object(await read_json(request, 1024, allow_empty=True), "the request body")
    options = {}
    for key in ("cache", "models"):
        value = body.get(key, True)
        if not isinstance(value, bool):
            raise ApiError(400, "invalid_request", f"{key} must be true or false")
        options[key] = value
    loop = asyncio.get_running_loop()
    done = await loop.run_in_executor(None, lambda: state.runner.free(**options))
    return json_response({"freed": done, "runner": state.runner.info()})


def _static_response(state: ServerState, relative: str) -> web.StreamResponse:
    root = state.web_root
    if root is None:
        if relative in ("", "index.html"):
            return web.Response(text=NOT_BUILT_PAGE, content_type="text/html")
        raise ApiError(404, "not_found", "the editor is not built")
    try:
        parts = check_relative(relative, "path") if relative else []
        target = root.joinpath(*parts)
        if target.is_dir():
            target = target / "index.html"
        path = contained(root, target)
    except UnsafePath as error:
        raise ApiError(error.status, error.code, str(error)) from None
    except FileNotFoundError:
        raise ApiError(404, "not_found", f"no file /{relative}") from None
    if not path.is_file():
        raise ApiError(404, "not_found", f"no file /{relative}")
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return web.FileResponse(path, headers={"Content-Type": content_type})


@routes.get("/")
async def index(request: web.Request) -> web.StreamResponse:
    """The editor, or a page saying it is not built."""
    return _static_response(request.app[STATE], "")


# The pattern leaves /api/... alone, so an unknown API path is a 404, not a 405 from here.
@routes.get(r"/{path:(?!api/|api$).+}")
async def static_file(request: web.Request) -> web.StreamResponse:
    """The editor's files (never anything outside its folder)."""
    return _static_response(request.app[STATE], request.match_info["path"])
