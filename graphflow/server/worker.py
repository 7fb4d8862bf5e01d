"""Running jobs: the :class:`JobRunner` protocol, the local thread runner, and the dispatcher.

The dispatcher lives on the event loop. It claims pending jobs from the queue while the
runner has free slots, hands them to the runner, and records each outcome. A runner executes
jobs somewhere else — :class:`LocalRunner` in one thread of this process with one
:class:`~graphflow.executor.Executor` (so the model cache and the output cache persist
between jobs); :class:`graphflow.distributed.RayRunner` on a pool of Ray actors, several
jobs at once (its ``capacity``). Both turn a run into a :class:`JobOutcome` with
:func:`execute_job`, so the queue records the same shape whichever runs it.

Runners report through a :class:`RunnerListener` from any thread. The dispatcher implements
it by appending to a queue that is drained on the event loop (one ``call_soon_threadsafe``
per burst, not per event, so a 10,000-node run does not flood the loop's wakeup pipe). A
job's events and its outcome travel through that one queue, so they arrive in order.

No job can stop the worker: whatever a job raises — a node's exception, RecursionError,
MemoryError, SystemExit from plugin code, a bug while preparing the job — becomes that
job's recorded error, and the worker takes the next job.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import queue as queue_module
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import ValidationFailed, WorkflowFormatError
from ..events import Event, NodeFinished, Preview, RunStarted
from ..executor import Executor, RunResult
from ..graph import ValidatedGraph
from ..workflow import workflow_from_dict
from .events_ws import EventHub, encode_preview, preview_frame
from .queue_base import Job, JobOutcome, JobQueue, JobStatus

log = logging.getLogger("graphflow.server")


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


def error_outcome(code: str, error: BaseException, **extra: Any) -> JobOutcome:
    """A failed outcome for an exception: its type, message and traceback under ``code``."""
    try:
        detail = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    except BaseException:  # formatting can fail too (MemoryError); the record matters more
        detail = ""
    message = f"{type(error).__name__}: {error}"
    return JobOutcome(
        JobStatus.FAILED,
        error={
            "code": code,
            "message": message,
            "exception_type": type(error).__name__,
            "traceback": detail,
            **extra,
        },
    )


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


def outcome_from_result(result: RunResult, nodes: dict[str, float]) -> JobOutcome:
    """Map an executor :class:`RunResult` to what the queue records."""
    outcome = JobOutcome(
        JobStatus.DONE,
        ui=result.ui,
        executed=len(result.executed),
        cached=len(result.cached),
        run_seconds=result.seconds,
        nodes=nodes,
    )
    if result.status == "failed" and result.error is not None:
        err = result.error
        outcome.status = JobStatus.FAILED
        outcome.error = {
            "code": "node_failed",
            "message": f"node {err.node!r} failed: {err.exception_type}: {err.message}",
            "node": err.node,
            "exception_type": err.exception_type,
            "exception_message": err.message,
            "traceback": err.traceback,
        }
    elif result.status == "interrupted":
        outcome.status = JobStatus.CANCELLED
        outcome.error = {"code": "interrupted", "message": "interrupted while running"}
    return outcome


class LocalRunner:
    """Runs jobs one at a time in a worker thread of this process, through one Executor."""

    capacity = 1

    def __init__(self, executor: Executor):
        self.executor = executor
        self._inbox: queue_module.SimpleQueue[tuple[Job, ValidatedGraph | None] | None] = (
            queue_module.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._assigned: set[str] = set()
        self._interrupts: set[str] = set()
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
            self._assigned.add(job.id)
        self._inbox.put((job, prepared))

    def interrupt(self, job_id: str) -> bool:
        """Stop a submitted job at its next node boundary or progress call."""
        with self._lock:
            if job_id not in self._assigned:
                return False
            self._interrupts.add(job_id)
            if self._current == job_id:
                self.executor.interrupt()
        return True

    def _interrupt_requested(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._interrupts

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
        """Interrupt the running job and end the worker thread."""
        with self._lock:
            self._interrupts.update(self._assigned)
            if self._current is not None:
                self.executor.interrupt()
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
                    outcome = error_outcome("worker_error", error)
                finally:
                    with self._lock:
                        self._current = None
                        self._assigned.discard(job.id)
                        self._interrupts.discard(job.id)
                assert self._listener is not None
                self._listener.job_done(job.id, outcome)
            except BaseException:  # nothing may end this loop but the stop sentinel
                with contextlib.suppress(BaseException):
                    log.exception("worker loop error (the worker keeps running)")

    def _run_one(self, job: Job, prepared: ValidatedGraph | None) -> JobOutcome:
        listener = self._listener
        assert listener is not None
        outcome = execute_job(
            self.executor,
            job,
            prepared,
            lambda event: listener.job_event(job.id, event),
            lambda: self._interrupt_requested(job.id),
        )
        outcome.worker = "local"
        return outcome


def execute_job(
    executor: Executor,
    job: Job,
    prepared: ValidatedGraph | None,
    report: Callable[[Event], None],
    interrupt_requested: Callable[[], bool],
) -> JobOutcome:
    """Run one job through ``executor`` and map whatever happens to a :class:`JobOutcome`.

    ``report`` gets every event in order; ``interrupt_requested`` says whether the job was
    asked to stop (checked before the run and again when it starts). Shared by every runner,
    local or remote, so what the queue records has one shape. Never raises.
    """
    nodes: dict[str, float] = {}

    def observer(event: Event) -> None:
        if type(event) is NodeFinished:
            nodes[event.node] = event.seconds
        elif type(event) is RunStarted and interrupt_requested():
            executor.interrupt()  # asked before the run cleared its flag: ask again
        report(event)

    try:
        validated = prepared
        if validated is None:  # e.g. a job that was pending across a restart
            validated = executor.validate(workflow_from_dict(job.workflow))
        if interrupt_requested():
            return JobOutcome(
                JobStatus.CANCELLED,
                error={"code": "interrupted", "message": "interrupted before it started"},
            )
        result = executor.run(validated, job.outputs, run_id=job.id, observers=[observer])
        return outcome_from_result(result, nodes)
    except ValidationFailed as error:
        return JobOutcome(
            JobStatus.FAILED,
            error={
                "code": "validation_failed",
                "message": f"workflow has {len(error.errors)} problem(s)",
                "errors": [e.to_dict() for e in error.errors],
            },
        )
    except WorkflowFormatError as error:
        return JobOutcome(
            JobStatus.FAILED, error={"code": "invalid_document", "message": str(error)}
        )
    except BaseException as error:  # SystemExit, KeyboardInterrupt, a plugin bug...
        return error_outcome("worker_error", error)


class Dispatcher:
    """Moves jobs from the queue to the runner and records what happened (event loop side)."""

    def __init__(
        self,
        queue: JobQueue,
        runner: JobRunner,
        hub: EventHub,
        *,
        max_prepared: int = 32,
        preview_size: int = 512,
        flush_batch: int = 2000,
    ):
        self.queue = queue
        self.runner = runner
        self.hub = hub
        self.max_prepared = max_prepared
        self.preview_size = preview_size
        self.flush_batch = flush_batch
        self.active: dict[str, str | None] = {}  # job id → client id, for running jobs
        self.recovered: list[str] = []
        # Validated graphs (and their documents) of freshly posted jobs, so the worker need
        # not parse and validate them again; bounded, the rest are re-read from the queue.
        self._prepared: dict[str, tuple[ValidatedGraph, dict]] = {}
        self._user_interrupts: set[str] = set()
        self._inbox: deque[tuple[str, str, Any]] = deque()
        self._flush_scheduled = False
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Recover from a previous process, start the runner and begin running jobs."""
        self._loop = asyncio.get_running_loop()
        self.recovered = self.queue.recover()
        if self.recovered:
            log.warning("marked %d job(s) failed: interrupted by restart", len(self.recovered))
        self.runner.start(self)
        self.pump()

    # -- RunnerListener (any thread) -------------------------------------------------------

    def job_event(self, job_id: str, event: Event) -> None:
        """Queue an event for the loop; previews are encoded here, only if someone watches."""
        if type(event) is Preview:
            client_id = self.active.get(job_id)
            if not self.hub.has_listeners(client_id):
                return
            try:
                jpeg, width, height = encode_preview(event.image, self.preview_size)
            except Exception as error:  # a bad preview must not fail the job
                log.warning("preview of node %s not shown: %s", event.node, error)
                return
            header = event.to_dict()
            header["data"].update(job_id=job_id, format="jpeg", width=width, height=height)
            self._post(("preview", job_id, preview_frame(header, jpeg)))
            return
        self._post(("event", job_id, event))

    def job_done(self, job_id: str, outcome: JobOutcome) -> None:
        """Queue a job's outcome for the loop."""
        self._post(("done", job_id, outcome))

    def _post(self, item: tuple[str, str, Any]) -> None:
        self._inbox.append(item)
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            with contextlib.suppress(RuntimeError):  # the loop closed: shutdown flushes
                self._loop.call_soon_threadsafe(self._flush)

    # -- event loop side --------------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_scheduled = False
        for _ in range(self.flush_batch):
            if not self._inbox:
                return
            kind, job_id, payload = self._inbox.popleft()
            try:
                if kind == "event":
                    self.hub.send_job_event(self.active.get(job_id), job_id, payload)
                elif kind == "preview":
                    self.hub.send_preview(self.active.get(job_id), payload)
                else:
                    self._finished(job_id, payload)
            except Exception:
                log.exception("could not deliver %s of job %s", kind, job_id)
        if self._inbox and not self._flush_scheduled:
            # Yield to the loop between batches so requests stay responsive during a big run.
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _finished(self, job_id: str, outcome: JobOutcome) -> None:
        client_id = self.active.pop(job_id, None)
        interrupted_by_us = (
            self._stopping
            and outcome.status is JobStatus.CANCELLED
            and job_id not in self._user_interrupts
        )
        self._user_interrupts.discard(job_id)
        if interrupted_by_us:
            self.queue.requeue(job_id)  # shutdown stopped it: it runs again on the next start
            return
        try:
            self.queue.finish(job_id, outcome)
        except Exception:  # e.g. a full disk: the job stays "running" and a restart fails it
            log.exception("could not record the outcome of job %s", job_id)
        self.hub.send_to_client(
            client_id,
            {
                "type": "job_done",
                "data": {
                    "job_id": job_id,
                    "status": outcome.status.value,
                    "error": _public_error(outcome.error),
                },
            },
        )
        if not self._stopping:
            self.pump()
        self.hub.broadcast_status()

    def accepted(self, job: Job, prepared: ValidatedGraph | None) -> None:
        """A job was stored: keep its validated graph (bounded) and run it when its turn comes."""
        if prepared is not None and len(self._prepared) < self.max_prepared:
            self._prepared[job.id] = (prepared, job.workflow)
        self.pump()
        self.hub.broadcast_status()

    def pump(self) -> None:
        """Hand pending jobs to the runner while it has free slots."""
        while not self._stopping and len(self.active) < self.runner.capacity:
            job = self.queue.claim_next()
            if job is None:
                return
            self.active[job.id] = job.client_id
            held = self._prepared.pop(job.id, None)
            prepared = None
            try:
                if held is not None:
                    prepared, job.workflow = held
                else:
                    job.workflow = self.queue.workflow(job.id)
            except Exception as error:  # an unreadable record fails that job, not the loop
                self._post(("done", job.id, error_outcome("invalid_document", error)))
                continue
            try:
                self.runner.submit(job, prepared)
            except Exception as error:  # a runner that cannot take it fails the job visibly
                log.exception("runner refused job %s", job.id)
                self._post(("done", job.id, error_outcome("worker_error", error)))

    def cancel(self, job_id: str) -> Job:
        """Cancel a pending job (see :meth:`JobQueue.cancel`)."""
        job = self.queue.cancel(job_id)
        self._prepared.pop(job_id, None)
        self.hub.broadcast_status()
        return job

    def clear(self) -> list[str]:
        """Cancel every pending job."""
        ids = self.queue.clear_pending()
        for job_id in ids:
            self._prepared.pop(job_id, None)
        self.hub.broadcast_status()
        return ids

    def interrupt(self, job_id: str | None = None) -> list[str]:
        """Interrupt one running job, or all of them; returns the ids asked to stop."""
        targets = [job_id] if job_id is not None else list(self.active)
        stopped = []
        for target in targets:
            if target in self.active and self.runner.interrupt(target):
                self._user_interrupts.add(target)
                stopped.append(target)
        return stopped

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop the runner; jobs it was running go back to pending for the next start."""
        self._stopping = True
        await asyncio.get_running_loop().run_in_executor(None, self.runner.stop, timeout)
        while self._inbox:
            self._flush()
        for job_id in list(self.active):  # still running after the timeout: requeue anyway
            self.active.pop(job_id)
            self.queue.requeue(job_id)


def _public_error(error: dict | None) -> dict | None:
    if error is None:
        return None
    return {k: v for k, v in error.items() if k != "traceback"}
