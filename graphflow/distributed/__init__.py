"""Scale-out on Ray: graphflow jobs executed by a pool of Ray actors (``--backend ray``).

- :mod:`.runner` — :class:`RayRunner`, the server's job runner on Ray (pool, faults);
- :mod:`.worker_actor` — the actor: one executor, model manager and cache per actor;
- :mod:`.routing` — which worker takes a job (model affinity, else least loaded);
- :mod:`.affinity` — which models a job loads, as keys the router can compare;
- :mod:`.cluster` — joining or starting a Ray cluster; the environment workers get;
- :mod:`.numerics` — the torch settings (threads, deterministic algorithms) actors take on;
- :mod:`.remote_run` — ``graphflow run --backend ray``.

Ray is an optional dependency (``pip install 'graphflow[distributed]'``); nothing here is
imported unless the Ray backend is chosen. See docs/distributed.md.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "RayRunner": "runner",
    "RayBackendConfig": "runner",
    "WORKER_LOST": "runner",
    "affinity_keys": "affinity",
    "choose_worker": "routing",
    "WorkerSlot": "routing",
    "TorchNumerics": "numerics",
    "connect": "cluster",
    "RayUnavailable": "cluster",
    "run_on_ray": "remote_run",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = list(_LAZY)
