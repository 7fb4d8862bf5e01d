"""The aiohttp application factory and ``graphflow serve``.

Everything the server holds lives in one :class:`ServerState` stored on the application
(``app[STATE]``); there are no module globals, so tests and benchmarks can run several
servers in one process.

Layout of the data folder (``--data-dir``, default ``$GRAPHFLOW_DATA_DIR``, else
``$XDG_DATA_HOME/graphflow``, else ``~/.local/share/graphflow``)::

    graphflow.db      jobs and history (SQLite, WAL)
    input/  output/  temp/   what /api/view serves and /api/upload/image writes
    workflows/        saved workflows of the editor
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from ..errors import GraphflowError
from ..executor import Executor
from ..plugins import PluginProblem, load_plugins
from ..registry import Registry
from ..runtime.folders import INPUT_ENV
from . import DATA_DIR_ENV, DEFAULT_HOST, DEFAULT_PORT, TOKEN_ENV, add_serve_arguments
from .events_ws import EventHub
from .queue_base import JobQueue
from .queue_sqlite import SQLiteJobQueue
from .routes_common import error_middleware
from .security import (
    OriginPolicy,
    auth_middleware,
    is_loopback,
    origin_middleware,
    security_headers,
)
from .worker import Dispatcher, JobRunner, LocalRunner

log = logging.getLogger("graphflow.server")


class ConfigError(GraphflowError):
    """The server cannot start with these settings (shown as one line)."""


def default_data_dir() -> Path:
    """``$GRAPHFLOW_DATA_DIR``, else ``$XDG_DATA_HOME/graphflow``, else ``~/.local/share/...``."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV])
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "graphflow"


def find_web_root() -> Path | None:
    """The built editor: ``graphflow/web_dist`` (package data; ``npm --prefix web run build``
    writes it, in a checkout and for a wheel alike)."""
    candidate = Path(__file__).resolve().parent.parent / "web_dist"
    return candidate if (candidate / "index.html").is_file() else None


@dataclass
class ServerConfig:
    """Everything ``graphflow serve`` can be told. Limits are in bytes."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    data_dir: Path | None = None
    allow_origins: list[str] = field(default_factory=list)
    auth_token: str | None = None
    insecure_no_auth: bool = False
    plugin_dirs: list[str] = field(default_factory=list)
    web_root: Path | None = None
    input_dir: Path | None = None
    max_body_bytes: int = 32 << 20
    max_upload_bytes: int = 25 << 20
    max_upload_pixels: int = 64_000_000
    max_nodes: int = 50_000
    max_history: int = 10_000
    preview_size: int = 512
    durable: bool = False
    backend: str = "local"
    """``local`` (a thread of this process) or ``ray`` (a pool of Ray actors)."""
    ray_address: str | None = None
    workers: int = 1
    gpus_per_worker: float | None = None

    def check(self) -> None:
        """Refuse unsafe or impossible settings (raises :class:`ConfigError`)."""
        if not is_loopback(self.host) and not self.auth_token and not self.insecure_no_auth:
            raise ConfigError(
                f"binding {self.host!r} exposes the server to the network: give --auth-token "
                f"(or ${TOKEN_ENV}), or --insecure-no-auth if you really mean it"
            )
        if self.auth_token is not None and len(self.auth_token) < 16:
            raise ConfigError("--auth-token must be at least 16 characters")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port {self.port} is not a TCP port")
        if self.backend not in ("local", "ray"):
            raise ConfigError(f"--backend must be local or ray, not {self.backend!r}")
        if self.workers < 1:
            raise ConfigError("--workers must be at least 1")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise ConfigError("--gpus-per-worker cannot be negative")
        try:
            OriginPolicy(self.host, self.allow_origins)
        except ValueError as error:
            raise ConfigError(str(error)) from None

    @property
    def folder(self) -> Path:
        """The data folder."""
        return Path(self.data_dir) if self.data_dir is not None else default_data_dir()


def input_folder(config: ServerConfig) -> Path:
    """Where uploads go and image nodes read: ``config.input_dir``, else
    ``$GRAPHFLOW_INPUT_DIR`` (what the image nodes use), else ``DATA/input``."""
    if config.input_dir is not None:
        return Path(config.input_dir)
    if os.environ.get(INPUT_ENV):
        return Path(os.environ[INPUT_ENV])
    return config.folder / "input"


@dataclass
class ServerState:
    """What the routes use: one per application."""

    config: ServerConfig
    registry: Registry
    executor: Executor | None
    queue: JobQueue
    runner: JobRunner
    dispatcher: Dispatcher
    hub: EventHub
    folders: dict[str, Path]
    web_root: Path | None
    plugin_problems: list[PluginProblem] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)

    def queue_status(self) -> dict[str, int]:
        """Pending and running counts (sent to every websocket client)."""
        return self.queue.active_counts()


STATE = web.AppKey("graphflow_state", ServerState)


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
    from . import routes_files, routes_prompt, routes_system

    config = config or ServerConfig()
    config.check()
    problems: list[PluginProblem] = []
    if registry is None:
        loaded = load_plugins(config.plugin_dirs)
        registry, problems = loaded.registry, loaded.problems
        for problem in problems:
            log.warning("%s", problem)
    data = config.folder
    folders = {name: data / name for name in ("input", "output", "temp", "workflows")}
    folders["input"] = input_folder(config)
    for path in folders.values():
        path.mkdir(parents=True, exist_ok=True)
    if runner is None and config.backend == "ray":
        runner = ray_runner(config, registry, folders)
    if runner is None:
        if executor is None:
            executor = Executor(registry, output_dir=folders["output"], temp_dir=folders["temp"])
        runner = LocalRunner(executor)
    queue = SQLiteJobQueue(
        data / "graphflow.db", max_history=config.max_history, durable=config.durable
    )
    hub = EventHub()
    dispatcher = Dispatcher(queue, runner, hub, preview_size=config.preview_size)
    state = ServerState(
        config=config,
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

    policy = OriginPolicy(config.host, config.allow_origins)
    middlewares = [error_middleware, origin_middleware(policy)]
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
    app.router.add_get("/ws", hub.handle)
    app.router.add_routes(routes_system.routes)  # last: it holds the static catch-all

    async def start_jobs(app: web.Application) -> None:
        dispatcher.start()

    async def close_sockets(app: web.Application) -> None:
        await hub.close_all()

    async def stop_jobs(app: web.Application) -> None:
        try:
            await dispatcher.stop()
        finally:
            queue.close()

    app.on_startup.append(start_jobs)
    app.on_shutdown.append(close_sockets)
    app.on_cleanup.append(stop_jobs)
    return app


def ray_runner(config: ServerConfig, registry: Registry, folders: dict[str, Path]) -> JobRunner:
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
        auth_token=args.auth_token,
        insecure_no_auth=args.insecure_no_auth,
        plugin_dirs=list(getattr(args, "plugin_dir", None) or []),
        backend=getattr(args, "backend", "local"),
        ray_address=getattr(args, "ray_address", None),
        workers=getattr(args, "workers", 1),
        gpus_per_worker=getattr(args, "gpus_per_worker", None),
    )


def serve(config: ServerConfig) -> None:
    """Run the server until Ctrl+C (raises :class:`ConfigError` for bad settings)."""
    # The image nodes find input files through $GRAPHFLOW_INPUT_DIR: point it at the folder
    # uploads go to, so an uploaded name works in a workflow (one server per process here).
    os.environ[INPUT_ENV] = str(input_folder(config))
    app = create_app(config)
    shown = f"[{config.host}]" if ":" in config.host else config.host
    print(f"graphflow serving on http://{shown}:{config.port} (data: {config.folder})", flush=True)
    try:
        web.run_app(app, host=config.host, port=config.port, print=None, access_log=None)
    except OSError as error:
        raise ConfigError(
            f"cannot listen on {config.host}:{config.port}: {error.strerror or error}"
        ) from None


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
    # Run the imported module's main, not this __main__ copy: the routes read the STATE key
    # of graphflow.server.app, and a second copy of this module would define another one.
    from graphflow.server import app as _app_module

    sys.exit(_app_module.main())
