"""Joining a Ray cluster, and the settings worker actors take from the head."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import GraphflowError
from ..runtime.folders import input_dir_of
from ..settings import Settings, current_settings, default_data_dir

RAY_MISSING = (
    "the Ray backend needs Ray, which is not installed: pip install 'graphflow[distributed]'"
)

# Options only a freshly started local cluster takes (Ray refuses them when it connects).
_LOCAL_ONLY = ("num_cpus", "num_gpus", "object_store_memory", "include_dashboard")


class RayUnavailable(GraphflowError):
    """Ray is missing, or the cluster cannot be reached (shown as one line)."""


def import_ray() -> Any:
    """The ``ray`` module, or :class:`RayUnavailable` with how to install it."""
    try:
        import ray
    except ImportError:
        raise RayUnavailable(RAY_MISSING) from None
    return ray


def connect(address: str | None = None, **local_options: Any) -> bool:
    """Join the Ray cluster at ``address`` (``auto``, ``HOST:PORT``, ``ray://...``, or
    ``$RAY_ADDRESS`` when None), or start a private local one (None without ``$RAY_ADDRESS``,
    or ``local``).

    Returns True when this call connected (so the caller disconnects again), False when this
    process was already connected. ``local_options`` (``num_cpus``, ``object_store_memory``…)
    apply only to a cluster started here.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"configure_logging": False, "log_to_driver": True}
    if not address and os.environ.get("RAY_ADDRESS"):
        address = None  # Ray reads $RAY_ADDRESS itself
        options.update({k: v for k, v in local_options.items() if k not in _LOCAL_ONLY})
    elif address in (None, "", "local"):
        # "local": a private cluster, even if `ray start` runs one on this machine (which
        # ray.init() would join otherwise; --ray-address auto is the way to join it).
        address = "local"
        options["include_dashboard"] = False
        options.update(local_options)
    else:
        options.update({k: v for k, v in local_options.items() if k not in _LOCAL_ONLY})
    try:
        ray.init(address=address, **options)
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise RayUnavailable(f"cannot join the Ray cluster at {address}: {error}") from None
    return True


def has_gpus() -> bool:
    """True when the connected cluster offers at least one GPU."""
    ray = import_ray()
    return ray.cluster_resources().get("GPU", 0) > 0


def _absolute(path: Path | None) -> Path | None:
    """``path`` resolved against this process's working directory (None stays None)."""
    return None if path is None else Path(path).resolve()


def worker_settings(settings: Settings | None = None) -> Settings:
    """The settings worker actors run with: ``settings`` (default: the current ones) with the
    models, extra model, input, data and disk-cache folders made absolute (the data folder as
    the server resolves it, so that workers share its disk cache), since a worker's working
    directory is not the server's. On other machines the same paths must exist (shared storage; see
    docs/distributed.md). They travel to the actor as a value, not as environment variables.
    """
    settings = settings or current_settings()
    return settings.with_values(
        models=Path(settings.models).resolve(),
        input_dir=Path(input_dir_of(settings)).resolve(),
        data_dir=default_data_dir(settings).resolve(),
        disk_cache_dir=_absolute(settings.disk_cache_dir),
        extra_models=[Path(root).resolve() for root in settings.extra_models],
        model_paths={
            kind: [Path(folder).resolve() for folder in folders]
            for kind, folders in settings.model_paths.items()
        },
    )
