"""The local runner: jobs one at a time in a worker thread of this process.

:class:`LocalRunner` holds one :class:`~graphflow.executor.Executor`, so the model cache and
the output cache persist between jobs. Each submitted job gets its own
:class:`~graphflow.cancel.CancelToken`; ``interrupt(job_id)`` cancels it, whether the job
runs now or still waits in the runner's line (it then ends ``cancelled`` without running).

No job can stop the worker: whatever a job raises — a node's exception, RecursionError,
MemoryError, SystemExit from plugin code, a bug while preparing the job — becomes that
job's recorded error (:func:`~graphflow.jobs.execute_job`), and the worker takes the next
job.
"""

from __future__ import annotations

import contextlib
import logging
import queue as queue_module
import threading
from typing import Any

from ..cancel import CancelToken
from ..executor import Executor
from ..graph import ValidatedGraph
from ..jobs import (
    Job,
    JobErrorCode,
    JobOutcome,
    RunnerListener,
    error_outcome,
    execute_job,
    free_executor,
)

log = logging.getLogger("graphflow.server")


class LocalRunner:
    """Runs jobs one at a time in a worker thread of this process, through one Executor."""

    capacity = 1

    def __init__(self, executor: Executor):
        self.executor = executor
        self._inbox: queue_module.SimpleQueue[tuple[Job, ValidatedGraph | None] | None] = (
            queue_module.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._cancels: dict[str, CancelToken] = {}  # submitted and not finished, by job id
        self._current: str | None = None
        self._listener: RunnerListener | None = None
        self._thread: threading.Thread | None = None

    def start(self, listener: RunnerListener) -> None:
        """Start the worker thread."""
        self._listener = listener
        self._spawn()

    def _spawn(self) -> None:
        self._thread = threading.Thread(target=self._work, name="graphflow-worker", daemon=True)
        self._thread.start()

    def submit(self, job: Job, prepared: ValidatedGraph | None = None) -> None:
        """Queue a job for the worker thread."""
        if self._thread is None or not self._thread.is_alive():
            log.error("the worker thread was not running; starting a new one")
            self._spawn()
        with self._lock:
            self._cancels[job.id] = CancelToken()
        self._inbox.put((job, prepared))

    def interrupt(self, job_id: str) -> bool:
        """Stop a submitted job at its next node boundary or progress call (or before it
        starts, if it still waits)."""
        with self._lock:
            cancel = self._cancels.get(job_id)
        if cancel is None:
            return False
        cancel.cancel()
        return True

    def free(self, *, cache: bool = True, models: bool = True) -> dict[str, Any]:
        """Clear the output cache and ask the model loader to drop what it holds."""
        return free_executor(self.executor, cache=cache, models=models)

    def info(self) -> dict[str, Any]:
        """The executor's cache and model statistics, and its device."""
        stats = getattr(self.executor.models, "stats", None)
        return {
            "workers": [
                {
                    "name": "local",
                    "device": self.executor.device,
                    "cache": self.executor.cache.stats(),
                    "models": stats() if callable(stats) else None,
                    "running": self._current,
                }
            ]
        }

    def stop(self, timeout: float = 10.0) -> None:
        """Interrupt the running job (and the waiting ones) and end the worker thread."""
        with self._lock:
            cancels = list(self._cancels.values())
        for cancel in cancels:
            cancel.cancel()
        self._inbox.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the worker thread ----------------------------------------------------------------

    def _work(self) -> None:
        while True:
            try:
                item = self._inbox.get()
                if item is None:
                    return
                job, prepared = item
                with self._lock:
                    self._current = job.id
                try:
                    outcome = self._run_one(job, prepared)
                except BaseException as error:  # _run_one catches everything; belt and braces
                    outcome = error_outcome(JobErrorCode.WORKER_ERROR, error)
                finally:
                    with self._lock:
                        self._current = None
                        self._cancels.pop(job.id, None)
                assert self._listener is not None
                self._listener.job_done(job.id, outcome)
            except BaseException:  # nothing may end this loop but the stop sentinel
                with contextlib.suppress(BaseException):
                    log.exception("worker loop error (the worker keeps running)")

    def _run_one(self, job: Job, prepared: ValidatedGraph | None) -> JobOutcome:
        listener = self._listener
        assert listener is not None
        with self._lock:
            cancel = self._cancels.setdefault(job.id, CancelToken())
        outcome = execute_job(
            self.executor,
            job,
            prepared,
            lambda event: listener.job_event(job.id, event),
            cancel,
        )
        outcome.worker = "local"
        return outcome
