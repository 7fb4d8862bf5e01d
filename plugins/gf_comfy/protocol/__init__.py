"""ComfyUI's HTTP and websocket protocol on ``graphflow serve`` (docs/comfyui.md).

:func:`install` is the pack's ``graphflow_server_routes`` installer: it adds ComfyUI's routes
at the unprefixed paths (``/prompt``, ``/queue``, ``/history``, ``/view``, ``/object_info``
...) and under ``/api/`` where graphflow's own API has no route of that path
(``/api/object_info``, ``/api/system_stats``...; ``/api/prompt`` stays graphflow's), and
ComfyUI's feed as ``/ws?clientId=`` beside graphflow's ``/ws?client_id=``. Both dialects
share the one SQLite queue, history and worker; graphflow's middlewares (origin and host
checks, token, size limits) cover every route added here.

- :mod:`.prompts` — API prompt → graphflow/1 document, partial validity, cycles;
- :mod:`.errors` — graphflow's findings in ComfyUI's error shapes;
- :mod:`.records` — queue items and history entries from graphflow's job records;
- :mod:`.feed` — the websocket dialect (a tap on graphflow's event hub);
- ``routes_*`` — the routes (jobs, files, catalogue and system).
"""

from __future__ import annotations

import itertools
import re

from aiohttp import web

from graphflow.server.queue_base import JobQueue
from graphflow.server.state import STATE

from . import routes_files, routes_info, routes_jobs
from .feed import ComfyFeed
from .state import COMFY, ComfyState, comfy_replies


def install(app: web.Application) -> None:
    """Add ComfyUI's routes and websocket dialect to a graphflow server application."""
    state = app[STATE]
    feed = ComfyFeed(state, previews=state.settings.comfy_previews)
    app[COMFY] = ComfyState(feed, itertools.count(_first_number(state.queue)))
    state.hub.add_tap(feed, "clientId", feed.handle)
    taken = _graphflow_routes(app)
    for table in (routes_jobs.routes, routes_files.routes, routes_info.routes):
        for route in table:
            handler = comfy_replies(route.handler)
            app.router.add_route(route.method, route.path, handler)
            alias = "/api" + route.path  # ComfyUI serves each route under /api/ as well
            if (route.method, _shape(alias)) not in taken:
                app.router.add_route(route.method, alias, handler)
    if ("GET", "/api/ws") not in taken:  # the feed: ComfyUI's with ?clientId=, else graphflow's
        app.router.add_get("/api/ws", state.hub.handle)

    async def close_sockets(app: web.Application) -> None:
        await feed.close_all()

    app.on_shutdown.append(close_sockets)


def _shape(path: str) -> str:
    """A route path with its variables' names dropped (``/api/history/{}``)."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def _graphflow_routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, path shape) of graphflow's own routes, those added after the plugins' too:
    a ComfyUI route's ``/api/`` alias is added only where graphflow has no route."""
    from graphflow.server import routes_system

    taken = {
        (route.method, _shape(route.resource.canonical))
        for route in app.router.routes()
        if route.resource is not None
    }
    taken.update(
        (route.method, _shape(route.path))
        for route in routes_system.routes
        if isinstance(route, web.RouteDef)
    )
    return taken


def _first_number(queue: JobQueue) -> int:
    """Where default prompt numbers start: past every job the queue holds, so numbers keep
    growing across restarts (the queue outlives the process; ComfyUI's starts at 0)."""
    jobs = queue.pending() + queue.running() + queue.history(1, 0)[0]
    return max((job.seq for job in jobs), default=0) + 1


__all__ = ["COMFY", "install"]
