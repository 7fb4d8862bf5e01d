"""Jobs as the engine knows them: records, outcomes, one run → one outcome, and runners.

A *job* is one run asked of a queue (``POST /api/prompt``; a benchmark; anything that keeps
jobs): the workflow document, who asked, its priority, and once it has run its status,
timings, JSON-able ``ui`` data and error. Whoever executes jobs — the server's local thread,
a pool of Ray actors, a program embedding graphflow — turns each run into a
:class:`JobOutcome` with :func:`execute_job`, so what is recorded has one shape whichever
runner ran it.

A :class:`JobRunner` executes jobs somewhere and reports through a :class:`RunnerListener`;
both are protocols here, so the server's dispatcher and the Ray backend meet without either
importing the other. Statuses and error codes are the enums :class:`JobStatus` and
:class:`JobErrorCode` (in :mod:`graphflow.errors`, re-exported here).

Nothing here imports the server, aiohttp or Ray.
"""

from __future__ import annotations

import gc
import json
import math
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .cancel import CancelToken
from .errors import JobErrorCode, JobStatus, RunStatus, ValidationFailed, WorkflowFormatError
from .events import Event, NodeFinished
from .workflow import workflow_from_dict

if TYPE_CHECKING:
    from .executor import Executor, RunResult
    from .graph import ValidatedGraph

__all__ = [
    "FINISHED_STATUSES",
    "RESTART_ERROR_CODE",
    "CancelToken",
    "Job",
    "JobErrorCode",
    "JobOutcome",
    "JobRunner",
    "JobStatus",
    "RunnerListener",
    "error_outcome",
    "execute_job",
    "failed_outcome",
    "free_executor",
    "interrupted_outcome",
    "outcome_from_result",
    "to_json",
]

FINISHED_STATUSES = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)
"""The terminal job statuses."""

RESTART_ERROR_CODE = JobErrorCode.INTERRUPTED_BY_RESTART
"""Error code of a job that was running when the server stopped without finishing it."""


@dataclass
class JobOutcome:
    """What a runner reports when a job ends (any runner: local thread or remote pool).

    ``ui`` is the JSON-able display data of the output nodes (never tensors); ``nodes`` maps
    each executed node to its wall seconds; ``error`` is a structured error dict or None;
    ``worker`` names the worker that ran it (``local``, or a Ray worker's name).
    """

    status: JobStatus
    ui: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    executed: int = 0
    cached: int = 0
    run_seconds: float = 0.0
    nodes: dict[str, float] = field(default_factory=dict)
    worker: str | None = None

    def result_dict(self) -> dict[str, Any]:
        """The part stored as the job's ``result``."""
        return {
            "ui": self.ui,
            "executed": self.executed,
            "cached": self.cached,
            "run_seconds": self.run_seconds,
            "nodes": self.nodes,
            "worker": self.worker,
        }


@dataclass
class Job:
    """One job as a queue stores it."""

    id: str
    workflow: dict[str, Any]
    status: JobStatus = JobStatus.PENDING
    priority: int = 0
    client_id: str | None = None
    outputs: list[str] | None = None
    node_count: int = 0
    seq: int = 0
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        """The JSON form used in lists (no workflow, no outputs)."""
        return {
            "job_id": self.id,
            "status": self.status.value,
            "priority": self.priority,
            "client_id": self.client_id,
            "node_count": self.node_count,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error,
        }

    def timings(self) -> dict[str, Any]:
        """Queue wait and run time in seconds (None where not reached yet)."""
        queued = None
        if self.started_at is not None:
            queued = self.started_at - self.created_at
        total = None
        if self.finished_at is not None and self.started_at is not None:
            total = self.finished_at - self.started_at
        result = self.result or {}
        return {
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "queue_seconds": queued,
            "total_seconds": total,
            "run_seconds": result.get("run_seconds"),
            "nodes": result.get("nodes", {}),
        }

    def to_dict(self, *, workflow: bool = True) -> dict[str, Any]:
        """The full JSON form of ``GET /api/history/{job_id}``."""
        data = self.summary()
        result = self.result or {}
        data.update(
            {
                "outputs": result.get("ui", {}),
                "requested_outputs": self.outputs,
                "executed": result.get("executed"),
                "cached": result.get("cached"),
                "worker": result.get("worker"),
                "timings": self.timings(),
            }
        )
        if workflow:
            data["workflow"] = self.workflow
        return data


# -- runners ----------------------------------------------------------------------------


class RunnerListener(Protocol):
    """Where a runner reports; both methods may be called from any thread."""

    def job_event(self, job_id: str, event: Event) -> None:
        """An executor event of a running job (in the order they happened)."""

    def job_done(self, job_id: str, outcome: JobOutcome) -> None:
        """A job ended; called after its last event."""


class JobRunner(Protocol):
    """Something that executes jobs: a local thread, or a pool of remote workers."""

    capacity: int
    """How many jobs it runs at once (read before every hand-over; it may change)."""

    def start(self, listener: RunnerListener) -> None:
        """Begin accepting jobs; report to ``listener``."""

    def submit(self, job: Job, prepared: ValidatedGraph | None = None) -> None:
        """Run a job (returns at once). ``prepared`` is its validated graph when at hand."""

    def interrupt(self, job_id: str) -> bool:
        """Ask a submitted job to stop; False when this runner does not have it."""

    def free(self, *, cache: bool = True, models: bool = True) -> dict[str, Any]:
        """Drop cached outputs and/or unload models; says what was done."""

    def info(self) -> dict[str, Any]:
        """Cache usage and device of each worker (for ``/api/system``)."""

    def stop(self, timeout: float = 10.0) -> None:
        """Interrupt what runs and stop; blocks up to ``timeout`` seconds."""


# -- one run → one outcome --------------------------------------------------------------


def failed_outcome(code: JobErrorCode | str, message: str, **extra: Any) -> JobOutcome:
    """A ``failed`` outcome with error ``code`` and ``message`` (plus ``extra`` fields)."""
    return JobOutcome(JobStatus.FAILED, error={"code": code, "message": message, **extra})


def interrupted_outcome(message: str) -> JobOutcome:
    """A ``cancelled`` outcome with code ``interrupted`` (before or while it ran)."""
    return JobOutcome(
        JobStatus.CANCELLED, error={"code": JobErrorCode.INTERRUPTED, "message": message}
    )


def error_outcome(code: JobErrorCode | str, error: BaseException, **extra: Any) -> JobOutcome:
    """A failed outcome for an exception: its type, message and traceback under ``code``."""
    try:
        detail = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    except BaseException:  # formatting can fail too (MemoryError); the record matters more
        detail = ""
    return failed_outcome(
        code,
        f"{type(error).__name__}: {error}",
        exception_type=type(error).__name__,
        traceback=detail,
        **extra,
    )


def outcome_from_result(result: RunResult, nodes: dict[str, float]) -> JobOutcome:
    """Map an executor :class:`~graphflow.executor.RunResult` to what a queue records."""
    outcome = JobOutcome(
        JobStatus.DONE,
        ui=result.ui,
        executed=len(result.executed),
        cached=len(result.cached),
        run_seconds=result.seconds,
        nodes=nodes,
    )
    if result.status == RunStatus.FAILED and result.error is not None:
        err = result.error
        outcome.status = JobStatus.FAILED
        outcome.error = {
            "code": JobErrorCode.NODE_FAILED,
            "message": f"node {err.node!r} failed: {err.exception_type}: {err.message}",
            "node": err.node,
            "exception_type": err.exception_type,
            "exception_message": err.message,
            "traceback": err.traceback,
        }
    elif result.status == RunStatus.INTERRUPTED:
        outcome.status = JobStatus.CANCELLED
        outcome.error = interrupted_outcome("interrupted while running").error
    return outcome


def execute_job(
    executor: Executor,
    job: Job,
    prepared: ValidatedGraph | None,
    report: Callable[[Event], None],
    cancel: CancelToken,
) -> JobOutcome:
    """Run one job through ``executor`` and map whatever happens to a :class:`JobOutcome`.

    ``report`` gets every event in order; ``cancel`` is the job's token (cancelled before
    the run: the job ends ``cancelled`` without running; during it: at the next node or
    progress call). Shared by every runner, local or remote, so what the queue records has
    one shape. Never raises.
    """
    nodes: dict[str, float] = {}

    def observer(event: Event) -> None:
        if type(event) is NodeFinished:
            nodes[event.node] = event.seconds
        report(event)

    try:
        validated = prepared
        if validated is None:  # e.g. a job that was pending across a restart
            validated = executor.validate(workflow_from_dict(job.workflow))
        if cancel.cancelled:
            return interrupted_outcome("interrupted before it started")
        result = executor.run(
            validated, job.outputs, run_id=job.id, observers=[observer], cancel=cancel
        )
        return outcome_from_result(result, nodes)
    except ValidationFailed as error:
        return failed_outcome(
            JobErrorCode.VALIDATION_FAILED,
            f"workflow has {len(error.errors)} problem(s)",
            errors=[e.to_dict() for e in error.errors],
        )
    except WorkflowFormatError as error:
        return failed_outcome(JobErrorCode.INVALID_DOCUMENT, str(error))
    except BaseException as error:  # SystemExit, KeyboardInterrupt, a plugin bug...
        return error_outcome(JobErrorCode.WORKER_ERROR, error)


def free_executor(executor: Executor, *, cache: bool = True, models: bool = True) -> dict:
    """Clear an executor's output cache and/or unload its models; says what was done."""
    done: dict[str, Any] = {}
    if cache:
        done["cache_entries_dropped"] = len(executor.cache)
        executor.cache.clear()
    if models:
        drop = getattr(executor.models, "free", None)  # ModelManager.free()
        if callable(drop):
            done["models_unloaded"] = drop()
        else:
            done["models_unloaded"] = False
            done["models_note"] = "the model loader cannot unload (it has no free())"
    gc.collect()
    torch = sys.modules.get("torch")  # never import torch just to free nothing
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
        done["cuda_cache_emptied"] = True
    return done


# -- JSON of records --------------------------------------------------------------------


def _json_fallback(value: Any) -> Any:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def to_json(value: Any) -> str:
    """JSON text for stored and sent data; values JSON cannot hold become short reprs.

    Node ui data comes from plugin code, so it may hold anything; a repr keeps the record
    (and the job) intact instead of failing on one odd value.
    """
    try:
        return json.dumps(value, default=_json_fallback, allow_nan=False, separators=(",", ":"))
    except ValueError:  # NaN/inf somewhere: JSON has no spelling for them
        return json.dumps(_replace_non_finite(value), default=_json_fallback)
    except RecursionError:
        return json.dumps(_json_fallback(value))


def _replace_non_finite(value: Any) -> Any:
    # Iterative so a deep structure cannot exhaust the stack here either.
    root: list[Any] = [value]
    stack: list[tuple[Any, Any, Any]] = [(root, 0, value)]
    while stack:
        parent, key, item = stack.pop()
        if isinstance(item, dict):
            copy: Any = dict(item)
            parent[key] = copy
            stack.extend((copy, k, v) for k, v in item.items())
        elif isinstance(item, (list, tuple)):
            copy = list(item)
            parent[key] = copy
            stack.extend((copy, i, v) for i, v in enumerate(item))
        else:
            parent[key] = _finite(item)
    return root[0]
