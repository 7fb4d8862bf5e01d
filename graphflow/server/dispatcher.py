"""The dispatcher: moves jobs from the queue to the runner and records what happened.

It lives on the event loop. It claims pending jobs from the queue while the runner has free
slots (``JobRunner.capacity``), hands them to the runner, and records each outcome. A runner
executes jobs somewhere else — :class:`~.runner_local.LocalRunner` in one thread of this
process; :class:`graphflow.distributed.RayRunner` on a pool of Ray actors, several jobs at
once. Both turn a run into a :class:`~graphflow.jobs.JobOutcome` with
:func:`~graphflow.jobs.execute_job`, so the queue records the same shape whichever runs it.

Runners report through a :class:`~graphflow.jobs.RunnerListener` from any thread. The
dispatcher implements it by appending to a queue that is drained on the event loop (one
``call_soon_threadsafe`` per burst, not per event, so a 10,000-node run does not flood the
loop's wakeup pipe). A job's events and its outcome travel through that one queue, so they
arrive in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections import deque
from typing import Any

from ..events import Event, Preview
from ..graph import ValidatedGraph
from ..jobs import Job, JobErrorCode, JobOutcome, JobRunner, JobStatus, error_outcome
from .events_ws import EventHub, encode_preview, preview_frame
from .queue_base import JobQueue

log = logging.getLogger("graphflow.server")


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
        idle_collect_seconds: float | None = 1.0,
    ):
        self.queue = queue
        self.runner = runner
        self.hub = hub
        self.max_prepared = max_prepared
        self.preview_size = preview_size
        self.flush_batch = flush_batch
        self.idle_collect_seconds = idle_collect_seconds
        """A full garbage collection this long after the last job ended with none waiting
        (None: never). The server runs the collector rarely (graphflow.gcpause); this frees
        cyclic garbage plugin code may leave, e.g. tensors held by a cycle, between jobs."""
        self._idle_timer: asyncio.TimerHandle | None = None
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
        inbox = self._inbox
        run_job: str | None = None  # consecutive events of one job go to the hub together
        run: list[Event] = []
        for _ in range(self.flush_batch):
            if not inbox:
                break
            kind, job_id, payload = inbox.popleft()
            if kind == "event":
                if job_id != run_job and run:
                    self._deliver(run_job, run)
                    run = []
                run_job = job_id
                run.append(payload)
                continue
            if run:  # what came before goes first: a job's events, then its outcome
                self._deliver(run_job, run)
                run = []
            try:
                if kind == "preview":
                    self.hub.send_preview(self.active.get(job_id), payload)
                else:
                    self._finished(job_id, payload)
            except Exception:
                log.exception("could not deliver %s of job %s", kind, job_id)
        if run:
            self._deliver(run_job, run)
        if inbox and not self._flush_scheduled:
            # Yield to the loop between batches so requests stay responsive during a big run.
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _deliver(self, job_id: str | None, events: list[Event]) -> None:
        assert job_id is not None
        try:
            self.hub.send_job_events(self.active.get(job_id), job_id, events)
        except Exception:
            log.exception("could not deliver events of job %s", job_id)

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
        self.hub.send_job_done(
            client_id,
            {
                "type": "job_done",
                "data": {
                    "job_id": job_id,
                    "status": outcome.status.value,
                    "error": _public_error(outcome.error),
                },
            },
            outcome,
        )
        if not self._stopping:
            self.pump()
            self._collect_when_idle()
        self.hub.broadcast_status()

    def _collect_when_idle(self) -> None:
        """(Re)start the idle timer when nothing runs now (see ``idle_collect_seconds``)."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self.idle_collect_seconds is None or self.active:
            return
        self._idle_timer = asyncio.get_running_loop().call_later(
            self.idle_collect_seconds, self._idle_collect
        )

    def _idle_collect(self) -> None:
        self._idle_timer = None
        if self._stopping:
            return
        if self.active:  # a job started meanwhile: collect after it instead
            return
        gc.collect()

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
                self._post(("done", job.id, error_outcome(JobErrorCode.INVALID_DOCUMENT, error)))
                continue
            try:
                self.runner.submit(job, prepared)
            except Exception as error:  # a runner that cannot take it fails the job visibly
                log.exception("runner refused job %s", job.id)
                self._post(("done", job.id, error_outcome(JobErrorCode.WORKER_ERROR, error)))

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
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
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
