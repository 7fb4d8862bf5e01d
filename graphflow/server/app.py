"""The aiohttp application factory and ``graphflow serve``.

Everything the server holds lives in one :class:`~.state.ServerState` stored on the
application (``app[STATE]``); there are no module globals, so tests and benchmarks can run
several servers in one process. What it can be told is :class:`~.config.ServerConfig`
(``config.py``, with the data folder's layout).

Imports go one way: this module imports the routes, the routes import ``state.py``, never
this module.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from ..errors import GraphflowError
from ..executor import Executor
from ..gcpause import SERVER_THRESHOLDS, tune_for_server
from ..jobs import JobRunner
from ..plugins import PluginProblem, load_plugins
from ..registry import Registry
from ..settings import Settings, current_settings, use_settings
from . import add_serve_arguments, routes_files, routes_import, routes_prompt, routes_system
from .config import ConfigError, ServerConfig, default_data_dir, input_folder
from .dispatcher import Dispatcher
from .events_ws import EventHub
from .queue_sqlite import SQLiteJobQueue
from .routes_common import error_middleware, settings_middleware
from .runner_local import LocalRunner
from .security import OriginPolicy, auth_middleware, origin_middleware, security_headers
from .state import STATE, ServerState

PLUGIN_ROUTES = web.AppKey("graphflow_plugin_routes", dict)
"""``(method, path) → plugin`` of the routes plugins added (documented by their plugin, not
in docs/openapi.json)."""

__all__ = [
    "PLUGIN_ROUTES",
    "STATE",
    "ConfigError",
    "ServerConfig",
    "ServerState",
    "cmd_serve",
    "config_from_args",
    "create_app",
    "default_data_dir",
    "find_web_root",
    "input_folder",
    "main",
    "ray_runner",
    "serve",
]

log = logging.getLogger("graphflow.server")


def find_web_root() -> Path | None:
    """The built editor: ``graphflow/web_dist`` (package data; ``npm --prefix web run build``
    writes it, in a checkout and for a wheel alike)."""
    candidate = Path(__file__).resolve().parent.parent / "web_dist"
    return candidate if (candidate / "index.html").is_file() else None


def create_app(
    config: ServerConfig | None = None,
    *,
    registry: Registry | None = None,
    runner: JobRunner | None = None,
    executor: Executor | None = None,
) -> web.Application:
    """Build the application; jobs start running when it starts (``on_startup``).

    ``registry`` defaults to every discovered plugin (plus ``config.plugin_dirs``);
    ``runner`` defaults to a :class:`LocalRunner` over ``executor`` (or a new Executor whose
    outputs go to the data folder).
    """
    config = config or ServerConfig()
    config.check()
    base_settings = config.settings or current_settings()
    problems: list[PluginProblem] = []
    if registry is None:
        with use_settings(base_settings):  # the plugin_path setting
            loaded = load_plugins(config.plugin_dirs)
        registry, problems = loaded.registry, loaded.problems
        for problem in problems:
            log.warning("%s", problem)
    data = config.folder
    folders = {name: data / name for name in ("input", "output", "temp", "workflows")}
    folders["input"] = input_folder(config)
    for path in folders.values():
        path.mkdir(parents=True, exist_ok=True)
    # Image nodes read the folder uploads go to, so an uploaded name works in a workflow;
    # the disk cache tier lives in this data folder (DATA/cache) unless disk_cache_dir says.
    settings = base_settings.with_values(input_dir=folders["input"], data_dir=data)
    if runner is None and config.backend == "ray":
        runner = ray_runner(config, registry, folders, settings)
    if runner is None:
        if executor is None:
            executor = Executor(
                registry,
                output_dir=folders["output"],
                temp_dir=folders["temp"],
                settings=settings,
            )
        runner = LocalRunner(executor)
    queue = SQLiteJobQueue(
        data / "graphflow.db", max_history=config.max_history, durable=config.durable
    )
    hub = EventHub()
    dispatcher = Dispatcher(queue, runner, hub, preview_size=config.preview_size)
    state = ServerState(
        config=config,
        settings=settings,
        registry=registry,
        executor=executor,
        queue=queue,
        runner=runner,
        dispatcher=dispatcher,
        hub=hub,
        folders=folders,
        web_root=config.web_root if config.web_root is not None else find_web_root(),
        plugin_problems=problems,
    )
    hub.status = state.queue_status
    return _application(state)


def _application(state: ServerState) -> web.Application:
    """The aiohttp application over ``state``: middlewares, routes, start and stop hooks."""
    config = state.config
    policy = OriginPolicy(config.host, config.allow_origins)
    middlewares = [error_middleware, settings_middleware(state.settings), origin_middleware(policy)]
    if config.auth_token:
        middlewares.append(auth_middleware(config.auth_token))
    app = web.Application(
        middlewares=middlewares,
        client_max_size=max(config.max_body_bytes, config.max_upload_bytes) + (1 << 16),
    )
    app[STATE] = state
    app.on_response_prepare.append(security_headers(cross_origin_reads=bool(config.allow_origins)))
    app.router.add_routes(routes_prompt.routes)
    app.router.add_routes(routes_files.routes)
    app.router.add_routes(routes_import.routes)
    app.router.add_get("/ws", state.hub.handle)
    app[PLUGIN_ROUTES] = _install_plugin_routes(app, state)
    app.router.add_routes(routes_system.routes)  # last: it holds the static catch-all

    async def start_jobs(app: web.Application) -> None:
        state.dispatcher.start()

    async def close_sockets(app: web.Application) -> None:
        await state.hub.close_all()

    async def stop_jobs(app: web.Application) -> None:
        try:
            await state.dispatcher.stop()
        finally:
            state.queue.close()

    app.on_startup.append(start_jobs)
    app.on_shutdown.append(close_sockets)
    app.on_cleanup.append(stop_jobs)
    return app


def _install_plugin_routes(app: web.Application, state: ServerState) -> dict[tuple[str, str], str]:
    """Call each plugin's route installer (``graphflow_server_routes``); returns the routes
    they added, ``(method, path) → plugin``. An installer that fails is reported as a plugin
    problem and the server starts without it."""
    added: dict[tuple[str, str], str] = {}
    for plugin, install in state.registry.route_installers:
        before = set(app.router.routes())
        try:
            install(app)
        except Exception as error:
            problem = PluginProblem(
                plugin, "server routes", "install routes", f"{type(error).__name__}: {error}"
            )
            log.warning("%s", problem)
            state.plugin_problems.append(problem)
            continue
        for route in app.router.routes():
            if route not in before and route.resource is not None:
                added[(route.method, route.resource.canonical)] = plugin
    return added


def ray_runner(
    config: ServerConfig, registry: Registry, folders: dict[str, Path], settings: Settings
) -> JobRunner:
    """A :class:`~graphflow.distributed.RayRunner` for ``--backend ray``; its actors write to
    this server's output folder (the same path on every machine: see docs/distributed.md)."""
    from ..distributed.cluster import RayUnavailable
    from ..distributed.runner import RayBackendConfig, RayRunner

    try:
        return RayRunner(
            registry,
            RayBackendConfig(
                address=config.ray_address,
                workers=config.workers,
                gpus_per_worker=config.gpus_per_worker,
                plugin_dirs=list(config.plugin_dirs),
                output_dir=folders["output"],
                temp_dir=folders["temp"],
                settings=settings,
            ),
        )
    except RayUnavailable as error:
        raise ConfigError(str(error)) from None


# -- graphflow serve ----------------------------------------------------------------------


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """A :class:`ServerConfig` from parsed ``serve`` arguments."""
    return ServerConfig(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        allow_origins=list(args.allow_origin or []),
        auth_token=args.auth_token or current_settings().auth_token,
        insecure_no_auth=args.insecure_no_auth,
        plugin_dirs=list(getattr(args, "plugin_dir", None) or []),
        backend=getattr(args, "backend", "local"),
        ray_address=getattr(args, "ray_address", None),
        workers=getattr(args, "workers", 1),
        gpus_per_worker=getattr(args, "gpus_per_worker", None),
    )


def serve(config: ServerConfig) -> None:
    """Run the server until Ctrl+C (raises :class:`ConfigError` for bad settings)."""
    thresholds = _gc_thresholds()
    app = create_app(config)
    tune_for_server(thresholds)
    shown = f"[{config.host}]" if ":" in config.host else config.host
    print(f"graphflow serving on http://{shown}:{config.port} (data: {config.folder})", flush=True)
    try:
        web.run_app(app, host=config.host, port=config.port, print=None, access_log=None)
    except OSError as error:
        raise ConfigError(
            f"cannot listen on {config.host}:{config.port}: {error.strerror or error}"
        ) from None


def _gc_thresholds() -> tuple[int, int, int]:
    """``$GRAPHFLOW_GC_THRESHOLDS`` (e.g. ``700,10,10``, CPython's own) or the server's."""
    text = os.environ.get("GRAPHFLOW_GC_THRESHOLDS", "").strip()
    if not text:
        return SERVER_THRESHOLDS
    try:
        first, second, third = (int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(
            f"GRAPHFLOW_GC_THRESHOLDS must be three integers such as 700,10,10, got {text!r}"
        ) from None
    if min(first, second, third) < 0:
        raise ConfigError(f"GRAPHFLOW_GC_THRESHOLDS must not be negative, got {text!r}")
    return first, second, third


def cmd_serve(args: argparse.Namespace) -> int:
    """The ``graphflow serve`` handler (arguments from :func:`add_serve_arguments`)."""
    serve(config_from_args(args))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry: ``python -m graphflow.server.app [options]``."""
    parser = argparse.ArgumentParser(prog="graphflow serve", description="Run the API server.")
    add_serve_arguments(parser)
    parser.add_argument("--plugin-dir", action="append", default=[], metavar="DIR")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return cmd_serve(args)
    except GraphflowError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy (one copy of the app factory).
    from graphflow.server import app as _app_module

    sys.exit(_app_module.main())
