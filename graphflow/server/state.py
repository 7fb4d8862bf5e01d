"""What a running server holds: :class:`ServerState`, one per application, under ``STATE``.

The routes read it as ``request.app[STATE]``. It lives in its own module so the routes
import it without importing the application factory (``app.py`` imports the routes).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from ..executor import Executor
from ..jobs import JobRunner
from ..plugins import PluginProblem
from ..registry import Registry
from ..settings import Settings
from .config import ServerConfig
from .dispatcher import Dispatcher
from .events_ws import EventHub
from .queue_base import JobQueue


@dataclass
class ServerState:
    """What the routes use: one per application."""

    config: ServerConfig
    settings: Settings
    """The engine settings of this server's requests and jobs (input folder = uploads)."""
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
