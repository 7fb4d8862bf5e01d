"""``graphflow run --backend ray``: one workflow on one Ray actor, progress streamed back."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..cancel import CancelToken
from ..errors import GraphflowError
from ..events import Observer
from ..executor import RunResult
from ..graph import build_graph
from ..registry import Registry
from ..workflow import Workflow
from .cluster import connect, has_gpus, import_ray, worker_settings
from .numerics import TorchNumerics


class RemoteRun:
    """A workflow running on a Ray actor. Its :class:`~graphflow.cancel.CancelToken`
    (``cancel``) reaches the actor when cancelled, from any thread; so does ``interrupt()``."""

    def __init__(self, actor: Any, run_id: str, cancel: CancelToken | None = None):
        self.actor = actor
        self.run_id = run_id
        self.cancel = cancel if cancel is not None else CancelToken()
        self.cancel.on_cancel(lambda: actor.interrupt.remote(run_id))

    def interrupt(self) -> None:
        """Ask the remote run to stop at its next node boundary or progress call."""
        self.cancel.cancel()

    @property
    def interrupt_requested(self) -> bool:
        """True once the run was asked to stop."""
        return self.cancel.cancelled


def run_on_ray(
    workflow: Workflow,
    outputs: Iterable[str] | None,
    *,
    registry: Registry,
    output_dir: str | Path,
    plugin_dirs: Iterable[str] = (),
    address: str | None = None,
    gpus: float | None = None,
    cpus: float = 1.0,
    observers: Iterable[Observer] = (),
    started: Any = None,
    local_options: dict[str, Any] | None = None,
    cancel: CancelToken | None = None,
    numerics: TorchNumerics | None = None,
) -> RunResult:
    """Run ``workflow`` on a fresh Ray worker actor and return its :class:`RunResult`.

    The workflow is validated here first (raises ``ValidationFailed`` as a local run does).
    Events reach ``observers`` in order; output files are written by the actor to
    ``output_dir`` (the same path on the worker's machine). ``cancel`` stops the remote run
    when cancelled (e.g. by Ctrl+C); ``started``, if given, is called with the
    :class:`RemoteRun`. The actor computes with ``numerics`` (default: this process's torch
    settings, so the result matches a local run here). Output values stay on the worker:
    the result carries ui data, node lists, timings and the error.
    """
    ray = import_ray()
    build_graph(workflow, registry)
    targets = list(outputs) if outputs is not None else None
    output = Path(output_dir).resolve()
    connected = connect(address, **(local_options or {}))
    actor = None
    try:
        actor = _start_actor(output, plugin_dirs, cpus=cpus, gpus=gpus, numerics=numerics)
        run = RemoteRun(actor, uuid.uuid4().hex, cancel)
        if started is not None:
            started(run)
        stream = actor.run_workflow.remote(run.run_id, workflow.to_dict(), targets)
        return _read_stream(ray, stream, list(observers))
    except ray.exceptions.RayActorError as error:
        raise GraphflowError(f"the Ray worker died: {str(error).splitlines()[0]}") from None
    finally:
        if actor is not None:
            with contextlib.suppress(Exception):
                ray.kill(actor)
        if connected:
            ray.shutdown()


def _start_actor(
    output: Path,
    plugin_dirs: Iterable[str],
    *,
    cpus: float,
    gpus: float | None,
    numerics: TorchNumerics | None,
) -> Any:
    """A fresh worker actor for one run (GPUs: 1 if the cluster has any, unless given)."""
    from .worker_actor import GraphflowWorker

    if gpus is None:
        gpus = 1.0 if has_gpus() else 0.0
    if numerics is None:
        numerics = TorchNumerics.of_this_process()
    return GraphflowWorker.options(
        num_cpus=cpus,
        num_gpus=gpus,
        max_restarts=0,
    ).remote(
        "ray-run",
        [str(Path(d).resolve()) for d in plugin_dirs],
        str(output),
        str(output.parent / "temp"),
        None,
        numerics,
        worker_settings(),
    )


def _read_stream(ray: Any, stream: Any, watchers: list[Observer]) -> RunResult:
    """Feed the run's event batches to ``watchers``; return its result."""
    for ref in stream:
        kind, payload = ray.get(ref)
        if kind == "events":
            for event in payload:
                for observer in watchers:
                    observer(event)
        elif kind == "invalid":
            messages = "; ".join(e.get("message", "") for e in payload)
            raise GraphflowError(f"the Ray worker refused the workflow: {messages}")
        else:
            return payload
    raise GraphflowError("the Ray worker ended the run without a result")
