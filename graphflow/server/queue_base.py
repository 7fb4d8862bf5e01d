"""The :class:`JobQueue` interface every queue implementation follows.

A job is one accepted ``POST /api/prompt`` (the records — :class:`~graphflow.jobs.Job`,
:class:`~graphflow.jobs.JobOutcome`, :class:`~graphflow.errors.JobStatus` — live in
:mod:`graphflow.jobs`). The queue is the single source of truth about jobs: it is written
before the server answers, so an accepted job is never lost.

Order: higher ``priority`` first, then first come first served (``seq``).
"""

from __future__ import annotations

import abc

# Job records, statuses and the JSON helper are the engine's (graphflow.jobs); they are
# re-exported here so imports from graphflow.server.queue_base keep working.
from ..jobs import (
    FINISHED_STATUSES,
    RESTART_ERROR_CODE,
    Job,
    JobOutcome,
    JobStatus,
    to_json,
)

__all__ = [
    "FINISHED_STATUSES",
    "RESTART_ERROR_CODE",
    "Job",
    "JobNotFound",
    "JobOutcome",
    "JobQueue",
    "JobStatus",
    "to_json",
]


class JobNotFound(KeyError):
    """No job has this id."""


class JobQueue(abc.ABC):
    """Persistent jobs: pending ones in run order, the running ones, and the history.

    Implementations are used from one thread (the server's event loop); they need not be
    thread-safe, but they must make ``put`` durable before returning.
    """

    @abc.abstractmethod
    def put(self, job: Job, workflow_text: str | None = None) -> int:
        """Store a new pending job (durably); returns its position among pending jobs.

        ``workflow_text`` is the JSON text of ``job.workflow`` when the caller has it (the
        posted body's), so it need not be encoded again."""

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

    def workflow_text(self, job_id: str) -> str:
        """The workflow of a job as JSON text (stored queues return what they store)."""
        return to_json(self.workflow(job_id))

    def summary(self, job_id: str) -> Job:
        """One job; its workflow may be left out (``{}``)."""
        return self.get(job_id)

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
