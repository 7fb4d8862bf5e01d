"""Job records and the :class:`JobQueue` interface every queue implementation follows.

A job is one accepted ``POST /api/prompt``: the workflow document, who asked (``client_id``),
its priority, and — once it has run — its status, timings, the JSON-able ``ui`` data of the
run and the error if it failed. The queue is the single source of truth about jobs: it is
written before the server answers, so an accepted job is never lost.

Order: higher ``priority`` first, then first come first served (``seq``).
"""

from __future__ import annotations

import abc
import json
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class JobStatus(str, Enum):
    """Where a job is in its life."""

    PENDING = "pending"
    """Accepted and waiting for the worker."""
    RUNNING = "running"
    """Claimed by a worker and executing."""
    DONE = "done"
    """The run finished; ``result`` holds its ui data."""
    FAILED = "failed"
    """The run failed (a node raised, the workflow no longer validates, a restart cut it)."""
    CANCELLED = "cancelled"
    """Cancelled while pending, or interrupted while running."""

    @property
    def finished(self) -> bool:
        """True for the three terminal states."""
        return self in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


FINISHED_STATUSES = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)

RESTART_ERROR_CODE = "interrupted_by_restart"
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
    """One job as the queue stores it."""

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


class JobNotFound(KeyError):
    """No job has this id."""


class JobQueue(abc.ABC):
    """Persistent jobs: pending ones in run order, the running ones, and the history.

    Implementations are used from one thread (the server's event loop); they need not be
    thread-safe, but they must make ``put`` durable before returning.
    """

    @abc.abstractmethod
    def put(self, job: Job) -> int:
        """Store a new pending job (durably); returns its position among pending jobs."""

    @abc.abstractmethod
    def claim_next(self) -> Job | None:
        """Mark the next pending job running and return it (None when nothing is pending).

        The job comes without its workflow (``workflow`` is ``{}``): a freshly posted job's
        document is still in memory, and parsing megabytes back is wasted work then. Read it
        with :meth:`workflow` when needed.
        """

    @abc.abstractmethod
    def workflow(self, job_id: str) -> dict:
        """The workflow document of a job; raises :class:`JobNotFound`."""

    @abc.abstractmethod
    def finish(self, job_id: str, outcome: JobOutcome) -> Job:
        """Record how a running job ended; returns the job (its workflow may be left out)."""

    @abc.abstractmethod
    def requeue(self, job_id: str) -> bool:
        """Put a running job back to pending (used when the server shuts down cleanly)."""

    @abc.abstractmethod
    def cancel(self, job_id: str) -> Job:
        """Cancel a pending job; raises :class:`JobNotFound`, or ValueError if not pending."""

    @abc.abstractmethod
    def clear_pending(self) -> list[str]:
        """Cancel every pending job; returns their ids."""

    @abc.abstractmethod
    def get(self, job_id: str) -> Job:
        """One job by id; raises :class:`JobNotFound`."""

    @abc.abstractmethod
    def pending(self) -> list[Job]:
        """Pending jobs in the order they will run."""

    @abc.abstractmethod
    def running(self) -> list[Job]:
        """Jobs now running."""

    @abc.abstractmethod
    def position(self, job_id: str) -> int | None:
        """0-based place of a pending job in the run order (None when not pending)."""

    @abc.abstractmethod
    def history(self, limit: int = 50, offset: int = 0) -> tuple[list[Job], int]:
        """Finished jobs, newest first, and how many there are in all."""

    @abc.abstractmethod
    def delete(self, job_id: str) -> None:
        """Forget a finished job; raises :class:`JobNotFound`, or ValueError if unfinished."""

    @abc.abstractmethod
    def recover(self) -> list[str]:
        """After a restart: fail the jobs left running; returns their ids."""

    @abc.abstractmethod
    def counts(self) -> dict[str, int]:
        """Number of jobs per status."""

    @abc.abstractmethod
    def active_counts(self) -> dict[str, int]:
        """``{"pending": n, "running": m}``, cheaply (sent on every queue change)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the storage."""
