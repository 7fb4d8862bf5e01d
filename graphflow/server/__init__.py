"""graphflow's HTTP and websocket server (``graphflow serve``).

- :mod:`.app` — the application factory (:func:`create_app`) and the ``serve`` command;
- :mod:`.config` — :class:`ServerConfig` (what ``serve`` can be told) and the data folder;
- :mod:`.state` — :class:`ServerState`, what the routes use (``app[STATE]``);
- ``routes_*`` — the API, one module per concept (jobs, files, system);
- :mod:`.queue_base` / :mod:`.queue_sqlite` — the queue interface and the persistent queue
  (job records, statuses and :func:`~graphflow.jobs.execute_job` are the engine's:
  :mod:`graphflow.jobs`);
- :mod:`.dispatcher` — moves jobs from the queue to a runner and records their outcomes;
- :mod:`.runner_local` — the local runner (a worker thread of this process);
- :mod:`.events_ws` — websocket fan-out of run events and previews;
- :mod:`.security` / :mod:`.files` — origin, host and token checks; safe paths.

Importing this package is cheap: aiohttp and the rest load on first use of a name below, so
the CLI can declare ``serve``'s options without slowing every other command. See
docs/api.md for the API itself.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8188
TOKEN_ENV = "GRAPHFLOW_AUTH_TOKEN"
DATA_DIR_ENV = "GRAPHFLOW_DATA_DIR"


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``serve`` options on ``parser`` (``--plugin-dir`` comes from the CLI's
    shared options). Needs no aiohttp."""
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (default 8188)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="queue database, inputs, outputs, workflows (default ~/.local/share/graphflow)",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="URL",
        help="also accept requests from this origin, e.g. http://localhost:5173 (repeatable)",
    )
    parser.add_argument(
        "--auth-token",
        default=None,
        metavar="TOKEN",
        help=f"require this token on every request (default ${TOKEN_ENV})",
    )
    parser.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="allow binding a non-loopback address without a token",
    )
    add_backend_arguments(parser, serve=True)


def add_backend_arguments(parser: argparse.ArgumentParser, *, serve: bool = False) -> None:
    """Declare ``--backend`` and the Ray options (``serve`` also gets ``--workers``)."""
    parser.add_argument(
        "--backend",
        choices=["local", "ray"],
        default="local",
        help="where jobs run: this process (local) or Ray actors (ray; see docs/distributed.md)",
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        metavar="auto|HOST:PORT",
        help="Ray cluster to join (default: start a local Ray unless RAY_ADDRESS is set)",
    )
    if serve:
        parser.add_argument(
            "--workers", type=int, default=1, metavar="N", help="Ray worker actors (default 1)"
        )
    parser.add_argument(
        "--gpus-per-worker",
        type=float,
        default=None,
        metavar="G",
        help="GPUs reserved per Ray worker (default: 1 if the cluster has GPUs, else 0)",
    )


def run_serve(args: argparse.Namespace) -> int:
    """Run the server from parsed ``serve`` arguments (the CLI's handler)."""
    from .app import cmd_serve

    return cmd_serve(args)


_LAZY = {
    "ConfigError": ".config",
    "ServerConfig": ".config",
    "default_data_dir": ".config",
    "ServerState": ".state",
    "create_app": ".app",
    "serve": ".app",
    "Job": "graphflow.jobs",
    "JobOutcome": "graphflow.jobs",
    "JobStatus": "graphflow.jobs",
    "JobRunner": "graphflow.jobs",
    "RunnerListener": "graphflow.jobs",
    "JobQueue": ".queue_base",
    "SQLiteJobQueue": ".queue_sqlite",
    "Dispatcher": ".dispatcher",
    "LocalRunner": ".runner_local",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)


__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "add_backend_arguments",
    "add_serve_arguments",
    "run_serve",
    *_LAZY,
]
