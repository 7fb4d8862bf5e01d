"""One settings object: what every part of graphflow may be told, and where it was told.

A :class:`Settings` is built once by whoever starts graphflow — the CLI, the server, a test
or an embedding program — from, highest first: explicit values (the CLI's flags), the
``GRAPHFLOW_*`` environment variables, a TOML config file, the defaults. It is passed down,
never written back to ``os.environ``: the executor makes its settings the *current* ones
while it runs (a :mod:`contextvars` variable, so two servers in one process, or two threads,
each see their own), nodes read them as ``ctx.settings``, and helpers that run outside a node
(choice lists of files, plugin discovery) call :func:`current_settings`.

docs/settings.md lists every setting; ``graphflow config`` prints the effective values and
where each came from.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .errors import GraphflowError

ENV_PREFIX = "GRAPHFLOW_"
CONFIG_ENV = "GRAPHFLOW_CONFIG"
DEFAULT_CONFIG_FILE = Path("graphflow.toml")


class SettingsError(GraphflowError, ValueError):
    """A setting has an invalid value, or the config file cannot be read (one clear line)."""


class Settings(BaseModel):
    """Every setting of graphflow (env var ``GRAPHFLOW_<NAME>``, TOML key ``<name>``).

    A plain validated value: making one reads nothing. :func:`load_settings` reads the
    environment and the config file (through pydantic-settings' sources).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    models: Path = Field(
        Path("models"),
        description="Models folder, with checkpoints/, vae/, loras/, upscale_models/... inside",
    )
    input_dir: Path | None = Field(
        None,
        description="Folder the load-image nodes read from (unset: ./input; the server: its "
        "data folder's input/)",
    )
    device: str | None = Field(
        None, description="Device nodes compute on: cpu, cuda, cuda:1, mps (unset: automatic)"
    )
    allow_pickle: bool = Field(
        False, description="Load pickle model files (.ckpt/.pt), weights-only (unsafe files)"
    )
    model_bytes: int = Field(
        16 << 30, ge=0, description="Bytes of resident models before the least used are offloaded"
    )
    cache_bytes: int = Field(4 << 30, ge=0, description="Byte budget of the output cache")
    cache_device_bytes: int = Field(
        2 << 30,
        ge=0,
        description="Accelerator bytes the output cache keeps before spilling values to the CPU",
    )
    disk_cache: bool = Field(
        False,
        description="Keep outputs of expensive nodes on disk too, so they survive a restart "
        "(docs/caching.md)",
    )
    disk_cache_dir: Path | None = Field(
        None, description="Folder of the disk cache (unset: the data folder's cache/)"
    )
    disk_cache_bytes: int = Field(
        20 << 30, ge=0, description="Byte budget of the disk cache (least recently used go first)"
    )
    disk_cache_min_seconds: float = Field(
        0.05,
        ge=0,
        description="Nodes that take less to recompute (with their upstream nodes not on disk) "
        "stay memory-only; requested outputs are always stored",
    )
    upscale_bytes: int | None = Field(
        None, ge=1, description="CPU memory an upscale may use before it tiles (unset: 2 GiB)"
    )
    extra_models: list[Path] = Field(
        [],
        description="More models folders with the same layout (e.g. a ComfyUI models/ "
        "tree), searched after models",
    )
    model_paths: dict[str, list[Path]] = Field(
        {},
        description="More folders for one kind of model, searched last (e.g. checkpoints = "
        "an A1111 models/Stable-diffusion)",
    )
    plugin_path: str = Field("", description=f"Extra plugin folders, separated by {os.pathsep!r}")
    data_dir: Path | None = Field(
        None,
        description="The server's data folder (queue, uploads, outputs; unset: "
        "$XDG_DATA_HOME/graphflow or ~/.local/share/graphflow)",
    )
    auth_token: str | None = Field(
        None, description="Token the server requires on every request (unset: none, loopback only)"
    )
    attention: Literal["auto", "triton", "sdpa"] = Field(
        "auto", description="Attention backend: auto (Triton on CUDA), triton or sdpa"
    )
    comfy_previews: bool = Field(
        False,
        description="Send ComfyUI websocket clients binary type-1 previews even when they did "
        "not ask (ComfyUI's --preview-method; feature_flags clients get type 4 anyway)",
    )

    @field_validator(
        "device",
        "auth_token",
        "upscale_bytes",
        "data_dir",
        "input_dir",
        "disk_cache_dir",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("attention", mode="before")
    @classmethod
    def _normalised_name(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def plugin_folders(self) -> list[Path]:
        """``plugin_path`` split into folders."""
        return [Path(p) for p in self.plugin_path.split(os.pathsep) if p.strip()]

    def with_values(self, **values: Any) -> Settings:
        """A copy with some settings replaced (validated like any other source)."""
        data = self.model_dump()
        data.update(values)
        return _validated(data, "explicit values")


def _validated(data: Mapping[str, Any], where: str, origins: Mapping[str, str] = {}) -> Settings:
    try:
        return Settings.model_validate(dict(data))
    except ValidationError as error:
        problems = []
        for item in error.errors():
            name = ".".join(str(p) for p in item["loc"]) or "settings"
            origin = origins.get(name)
            shown = f"{name} (from {origin})" if origin else name
            problems.append(f"{shown}: {item['msg']}")
        raise SettingsError(f"invalid settings in {where}: {'; '.join(problems)}") from None


@dataclass(frozen=True)
class SettingSource:
    """Where one setting's value came from."""

    name: str
    value: Any
    origin: str  # "default", "config file PATH", "environment GRAPHFLOW_X", "command line"
    description: str


class LoadedSettings:
    """Settings plus the origin of each value (what ``graphflow config`` prints)."""

    def __init__(self, settings: Settings, origins: dict[str, str], config_file: Path | None):
        self.settings = settings
        self.origins = origins
        self.config_file = config_file

    def sources(self) -> list[SettingSource]:
        """One row per setting, in declaration order."""
        rows = []
        for name, field in Settings.model_fields.items():
            rows.append(
                SettingSource(
                    name,
                    getattr(self.settings, name),
                    self.origins.get(name, "default"),
                    field.description or "",
                )
            )
        return rows


def config_file_path(explicit: str | os.PathLike | None, environ: Mapping[str, str]) -> Path | None:
    """The config file to read: ``explicit``, else ``$GRAPHFLOW_CONFIG``, else
    ``./graphflow.toml`` when it exists, else none. A named file that is missing is an error."""
    named = explicit or environ.get(CONFIG_ENV) or None
    if named:
        path = Path(named)
        if not path.is_file():
            raise SettingsError(f"config file {path} does not exist")
        return path
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


# pydantic-settings reads sources for a BaseSettings class: one with the same fields, whose
# sources are used only through load_settings (so Settings itself never reads anything).
_Sources = create_model(
    "_Sources",
    __base__=BaseSettings,
    __config__=None,
    **{name: (field.annotation, field) for name, field in Settings.model_fields.items()},
)
_Sources.model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")


def _file_values(path: Path) -> dict[str, Any]:
    try:
        values = TomlConfigSettingsSource(_Sources, toml_file=path)()
    except Exception as error:  # tomllib's decode error, or an unreadable file
        raise SettingsError(f"cannot read config file {path}: {error}") from None
    unknown = sorted(set(values) - set(Settings.model_fields))
    if unknown:
        known = ", ".join(Settings.model_fields)
        raise SettingsError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)} (known: {known})"
        )
    return values


def load_settings(
    explicit: Mapping[str, Any] | None = None,
    *,
    config_file: str | os.PathLike | None = None,
    environ: Mapping[str, str] | None = None,
) -> LoadedSettings:
    """Build the settings from explicit values > environment > config file > defaults.

    ``explicit`` holds values given on the command line or by an embedding program (``None``
    values are ignored: "not given"). ``environ`` defaults to ``os.environ`` (read, never
    written).
    """
    environ = os.environ if environ is None else environ
    path = config_file_path(config_file, environ)
    layers: list[tuple[str, dict[str, Any]]] = []
    if path is not None:
        layers.append((f"config file {path}", _file_values(path)))
    env_values = _env_values(environ)
    layers.append(("environment", env_values))
    given = {k: v for k, v in (explicit or {}).items() if v is not None}
    unknown = sorted(set(given) - set(Settings.model_fields))
    if unknown:
        raise SettingsError(f"unknown setting(s): {', '.join(unknown)}")
    layers.append(("command line", given))
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for where, values in layers:
        for name, value in values.items():
            merged[name] = value
            origins[name] = (
                f"environment {ENV_PREFIX}{name.upper()}" if where == "environment" else where
            )
    return LoadedSettings(_validated(merged, "the configuration", origins), origins, path)


def _env_values(environ: Mapping[str, str]) -> dict[str, Any]:
    """The ``GRAPHFLOW_*`` values in ``environ`` (pydantic-settings' own env parsing)."""
    source = EnvSettingsSource(_Sources)
    if environ is not os.environ:
        source.env_vars = {k.lower(): v for k, v in environ.items()}
    return {k: v for k, v in source().items() if k in Settings.model_fields}


# -- the current settings -----------------------------------------------------------------

_current: contextvars.ContextVar[Settings | None] = contextvars.ContextVar(
    "graphflow_settings", default=None
)
_process_default: tuple[tuple, Settings] | None = None


def _environment_key() -> tuple:
    config = Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_FILE)  # the file that is read
    stamp = config.stat().st_mtime_ns if config.is_file() else None
    own = sorted((k, v) for k, v in os.environ.items() if k.startswith(ENV_PREFIX))
    return (os.getcwd(), stamp, *own)


def current_settings() -> Settings:
    """The settings in force here: those of the run, request or command being served
    (:func:`use_settings`), else the process default — the environment and the config
    file (``$GRAPHFLOW_CONFIG`` or ``./graphflow.toml``) as they are now (re-read only when
    they change)."""
    settings = _current.get()
    if settings is not None:
        return settings
    global _process_default
    key = _environment_key()
    if _process_default is None or _process_default[0] != key:
        _process_default = (key, load_settings().settings)
    return _process_default[1]


@contextmanager
def use_settings(settings: Settings | None) -> Iterator[Settings]:
    """Make ``settings`` the current ones in this thread/task for the ``with`` block
    (``None``: leave the current ones in force)."""
    if settings is None:
        yield current_settings()
        return
    token = _current.set(settings)
    try:
        yield settings
    finally:
        _current.reset(token)


def default_data_dir(settings: Settings | None = None) -> Path:
    """The ``data_dir`` setting (``$GRAPHFLOW_DATA_DIR``), else ``$XDG_DATA_HOME/graphflow``,
    else ``~/.local/share/graphflow``. ``settings`` default to the current ones."""
    configured = (settings or current_settings()).data_dir
    if configured is not None:
        return Path(configured)
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "graphflow"
