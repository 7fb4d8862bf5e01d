"""What ``graphflow serve`` can be told (:class:`ServerConfig`) and where its data lives.

Layout of the data folder (``--data-dir``, default ``$GRAPHFLOW_DATA_DIR``, else
``$XDG_DATA_HOME/graphflow``, else ``~/.local/share/graphflow``)::

    graphflow.db      jobs and history (SQLite, WAL)
    input/  output/  temp/   what /api/view serves and /api/upload/image writes
    workflows/        saved workflows of the editor
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import GraphflowError
from ..settings import Settings, current_settings, default_data_dir
from . import DEFAULT_HOST, DEFAULT_PORT, TOKEN_ENV
from .security import OriginPolicy, is_loopback


class ConfigError(GraphflowError):
    """The server cannot start with these settings (shown as one line)."""


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
    settings: Settings | None = None
    """The engine settings requests and jobs run with (models folder, device, budgets...);
    None: the settings current when the application is built."""

    def __post_init__(self) -> None:
        # Given settings decide what they name unless told otherwise here: their token is
        # the one every request must carry (the data folder: see ``folder``).
        if self.auth_token is None and self.settings is not None:
            self.auth_token = self.settings.auth_token

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
        return Path(self.data_dir) if self.data_dir is not None else default_data_dir(self.settings)


def input_folder(config: ServerConfig) -> Path:
    """Where uploads go and image nodes read: ``config.input_dir``, else the ``input_dir``
    setting (``$GRAPHFLOW_INPUT_DIR``), else ``DATA/input``."""
    if config.input_dir is not None:
        return Path(config.input_dir)
    configured = (config.settings or current_settings()).input_dir
    if configured is not None:
        return Path(configured)
    return config.folder / "input"
