""":class:`RayRunner`: a :class:`~graphflow.jobs.JobRunner` (the server's) on Ray actors.

The server keeps its SQLite queue, dispatcher and websocket; this runner only executes. It
holds a pool of :class:`~.worker_actor.GraphflowWorker` actors and says it can take one job
per live worker (``capacity``), so the dispatcher hands over N jobs at once and they run in
parallel. Each job is routed by :func:`~.routing.choose_worker` (model affinity, else the
least loaded idle worker), then driven by one thread of this process that reads the actor's
event stream and reports to the dispatcher — events first, in order, then the outcome.

Faults: when reading the stream raises a Ray actor/node error, the worker is gone: it is
killed for good, a fresh actor replaces it, and the job goes back to the front of the
runner's line to run on another worker. A job lost ``max_attempts`` times fails with error
code ``worker_lost``. The job stays ``running`` in the queue throughout, so an accepted job is
never dropped, and a server restart still recovers it as the queue always did.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import GraphflowError
from ..graph import ValidatedGraph
from ..jobs import (
    Job,
    JobErrorCode,
    JobOutcome,
    RunnerListener,
    error_outcome,
    failed_outcome,
    interrupted_outcome,
)
from ..registry import Registry
from ..settings import Settings
from ..workflow import workflow_from_dict
from .affinity import affinity_keys
from .cluster import connect, has_gpus, import_ray, worker_settings
from .numerics import TorchNumerics
from .routing import SlotState, WorkerSlot, choose_worker

log = logging.getLogger("graphflow.distributed")

WORKER_LOST = JobErrorCode.WORKER_LOST
"""Error code of a job whose worker died on every attempt (kept for old imports)."""

STARTUP_WARNING_SECONDS = 60.0
"""How long a worker may take to start before the log says what it waits for."""

_DRIVE_THREAD = "graphflow-ray-job"


@dataclass
class RayBackendConfig:
    """How the Ray pool is made (``graphflow serve --backend ray`` options)."""

    address: str | None = None
    """``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``; None starts a local Ray."""
    workers: int = 1
    gpus_per_worker: float | None = None
    """GPUs reserved per actor; None: 1 when the cluster has GPUs, else 0."""
    cpus_per_worker: float = 1.0
    plugin_dirs: list[str] = field(default_factory=list)
    output_dir: Path = Path("output")
    temp_dir: Path | None = None
    device: str | None = None
    max_attempts: int = 2
    """Workers a job may be lost on before it fails (2: requeued once)."""
    local_options: dict[str, Any] = field(default_factory=dict)
    """``ray.init`` options for a local cluster started here (``num_cpus``…)."""
    numerics: TorchNumerics | None = None
    """torch settings every actor computes with (intra-op threads, deterministic
    algorithms...); None: this process's, so a seed gives the pixels of a local run here."""
    settings: Settings | None = None
    """graphflow settings the actors run with (folders made absolute); None: the current
    ones when the pool starts."""


@dataclass
class _Entry:
    """A job the runner holds: waiting for a worker, or running on one."""

    job: Job
    keys: dict[str, str]
    lost_on: list[str] = field(default_factory=list)
    slot: WorkerSlot | None = None


class RayRunner:
    """Runs jobs on a pool of Ray actors, one job per actor at a time (see module doc)."""

    def __init__(self, registry: Registry, config: RayBackendConfig | None = None):
        self.registry = registry
        self.config = config or RayBackendConfig()
        self.ray = import_ray()
        self._lock = threading.RLock()
        self._slots: list[WorkerSlot] = []
        self._waiting: deque[_Entry] = deque()
        self._running: dict[str, _Entry] = {}
        self._interrupts: set[str] = set()
        self._threads: set[threading.Thread] = set()
        self._listener: RunnerListener | None = None
        self._serial = 0
        self._connected_here = False
        self._stopping = False

    # -- JobRunner ------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """One job per live worker (starting ones included: jobs wait here until ready)."""
        with self._lock:
            return sum(1 for slot in self._slots if slot.state is not SlotState.LOST)

    def start(self, listener: RunnerListener) -> None:
        """Join or start the Ray cluster and create the worker actors."""
        self._listener = listener
        self._connected_here = connect(self.config.address, **self.config.local_options)
        if self.config.gpus_per_worker is None:
            self.config.gpus_per_worker = 1.0 if has_gpus() else 0.0
        if self.config.numerics is None:
            self.config.numerics = TorchNumerics.of_this_process()
        with self._lock:
            for _ in range(max(1, self.config.workers)):
                self._spawn()

    def submit(self, job: Job, prepared: ValidatedGraph | None = None) -> None:
        """Queue a job for the next suitable worker (returns at once)."""
        entry = _Entry(job, self._keys(job, prepared))
        with self._lock:
            self._waiting.append(entry)
        self._schedule()

    def interrupt(self, job_id: str) -> bool:
        """Cancel a job still waiting for a worker, or ask its actor to stop it."""
        with self._lock:
            waiting = next((e for e in self._waiting if e.job.id == job_id), None)
            if waiting is not None:
                self._waiting.remove(waiting)
            elif job_id in self._running:
                self._interrupts.add(job_id)
                slot = self._running[job_id].slot
            else:
                return False
        if waiting is not None:
            self._report_done(job_id, interrupted_outcome("interrupted before it started"))
            return True
        if slot is not None:
            slot.handle.interrupt.remote(job_id)  # answered by the actor's control group
        return True

    def free(self, *, cache: bool = True, models: bool = True) -> dict[str, Any]:
        """Free the cache and/or models of every ready worker; says what each one did."""
        slots = self._ready_slots()
        refs = [slot.handle.free.remote(cache, models) for slot in slots]
        done: dict[str, Any] = {}
        for slot, ref in zip(slots, refs, strict=True):
            try:
                done[slot.name] = self.ray.get(ref, timeout=60)
            except Exception as error:
                done[slot.name] = {"error": f"{type(error).__name__}: {error}"}
            if cache or models:
                slot.warm = {}
        return {"workers": done}

    def info(self) -> dict[str, Any]:
        """Every worker: state, node, device, cache and models, running job, warm models."""
        with self._lock:
            slots = list(self._slots)
        ready = [slot for slot in slots if slot.state is SlotState.READY]
        refs = {slot.name: slot.handle.info.remote() for slot in ready}
        # One short wait for all of them: this runs on the server's event loop.
        answered: list[Any] = []
        if refs:
            answered, _ = self.ray.wait(list(refs.values()), num_returns=len(refs), timeout=2.0)
        workers = []
        for slot in slots:
            report: dict[str, Any] = {}
            ref = refs.get(slot.name)
            if ref is not None and ref in answered:
                try:
                    report = self.ray.get(ref)
                except Exception as error:
                    report = {"error": f"{type(error).__name__}: {error}"}
            elif ref is not None:
                report = {"error": "no answer within 2 s"}
            report.update(
                name=slot.name,
                state=slot.state.value,
                node=slot.node,
                device=report.get("device", slot.device),
                running=slot.job,
                jobs_run=slot.jobs_run,
                holds=sorted(slot.warm.values()),
            )
            workers.append(report)
        return {
            "backend": "ray",
            "address": self.config.address or "local",
            "gpus_per_worker": self.config.gpus_per_worker,
            "workers": workers,
        }

    def stop(self, timeout: float = 10.0) -> None:
        """Interrupt running jobs, wait for them up to ``timeout``, then end the actors."""
        with self._lock:
            self._stopping = True
            running = [(job_id, e.slot) for job_id, e in self._running.items()]
            self._interrupts.update(job_id for job_id, _ in running)
        for job_id, slot in running:
            if slot is not None:
                with contextlib.suppress(Exception):
                    slot.handle.interrupt.remote(job_id)
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = [t for t in self._threads if t.name == _DRIVE_THREAD]
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            slots, self._slots = self._slots, []
        for slot in slots:
            with contextlib.suppress(Exception):
                self.ray.kill(slot.handle)
        if self._connected_here:
            self.ray.shutdown()

    def worker_of(self, job_id: str) -> WorkerSlot | None:
        """The worker running ``job_id`` now (None while it waits, or when not here)."""
        with self._lock:
            entry = self._running.get(job_id)
            return entry.slot if entry is not None else None

    # -- worker pool ----------------------------------------------------------------------

    def _spawn(self) -> WorkerSlot:
        """Create one worker actor (call with the lock held); it joins the pool once ready."""
        from .worker_actor import GraphflowWorker

        self._serial += 1
        name = f"ray-worker-{self._serial}"
        config = self.config
        output_dir = Path(config.output_dir).resolve()
        temp_dir = (
            Path(config.temp_dir).resolve() if config.temp_dir else output_dir.parent / "temp"
        )
        handle = GraphflowWorker.options(
            num_cpus=config.cpus_per_worker,
            num_gpus=config.gpus_per_worker or 0,
            max_restarts=0,  # a dead worker is replaced by a fresh actor (see _lost)
            max_task_retries=0,  # the runner decides where a lost job runs again
        ).remote(
            name,
            [str(Path(d).resolve()) for d in config.plugin_dirs],
            str(output_dir),
            str(temp_dir),
            config.device,
            config.numerics,
            worker_settings(config.settings),
        )
        slot = WorkerSlot(name, handle)
        self._slots.append(slot)
        self._start_thread(self._await_ready, slot, name="graphflow-ray-start")
        return slot

    def _await_ready(self, slot: WorkerSlot) -> None:
        try:
            ref = slot.handle.ready.remote()
            # Ray holds an actor until its resources exist (e.g. no free GPU): say so, and wait.
            while not self.ray.wait([ref], timeout=STARTUP_WARNING_SECONDS)[0]:
                if self._stopping or slot.state is not SlotState.STARTING:
                    return
                log.warning(
                    "Ray worker %s is still starting: waiting for %s CPU and %s GPU in the "
                    "cluster (see `ray status`)",
                    slot.name,
                    self.config.cpus_per_worker,
                    self.config.gpus_per_worker,
                )
            identity = self.ray.get(ref)
        except Exception as error:  # could not start (bad environment, no resources left)
            if not self._stopping:
                log.error("Ray worker %s could not start: %s", slot.name, error)
            with self._lock:
                slot.state = SlotState.LOST
                if slot in self._slots:
                    self._slots.remove(slot)
            self._fail_if_no_workers()
            return
        with self._lock:
            if slot.state is SlotState.STARTING:
                slot.state = SlotState.READY
                slot.node = identity.get("node")
                slot.device = identity.get("device")
        for problem in identity.get("plugin_problems", []):
            log.warning("%s: %s", slot.name, problem)
        log.info("Ray worker %s ready on node %s (%s)", slot.name, slot.node, slot.device)
        self._schedule()

    def _ready_slots(self) -> list[WorkerSlot]:
        with self._lock:
            return [slot for slot in self._slots if slot.state is SlotState.READY]

    def _fail_if_no_workers(self) -> None:
        """With no worker left or starting, the held jobs cannot run: fail them visibly."""
        with self._lock:
            if self._stopping or any(s.state is not SlotState.LOST for s in self._slots):
                return
            stranded = list(self._waiting)
            self._waiting.clear()
        for entry in stranded:
            self._report_done(
                entry.job.id,
                failed_outcome(WORKER_LOST, "no Ray worker could be started"),
            )

    # -- routing and driving jobs ---------------------------------------------------------

    def _keys(self, job: Job, prepared: ValidatedGraph | None) -> dict[str, str]:
        try:
            validated = prepared or build_validated(self.registry, job.workflow)
            return affinity_keys(
                validated, job.outputs, model_types=self.registry.types.model_types()
            )
        except Exception:  # an invalid job has no affinity; its worker reports the errors
            return {}

    def _schedule(self) -> None:
        """Start every waiting job that has a suitable idle worker, in order."""
        with self._lock:
            if self._stopping:
                return
            for entry in list(self._waiting):
                slot = choose_worker(self._slots, entry.keys, entry.lost_on)
                if slot is None:
                    if not any(s.idle for s in self._slots):
                        break
                    continue
                self._waiting.remove(entry)
                slot.job = entry.job.id
                entry.slot = slot
                self._running[entry.job.id] = entry
                self._start_thread(self._drive, entry, slot, name=_DRIVE_THREAD)

    def _start_thread(self, target: Any, *args: Any, name: str) -> None:
        def run() -> None:
            try:
                target(*args)
            except BaseException:  # a bug here must not leave the job silent
                log.exception("Ray runner thread failed")
            finally:
                with self._lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _drive(self, entry: _Entry, slot: WorkerSlot) -> None:
        """Read one job's stream from its actor and report it (runs in its own thread)."""
        ray = self.ray
        job = entry.job
        listener = self._listener
        assert listener is not None
        outcome: JobOutcome | None = None
        holds: dict[str, str] | None = None
        try:
            if job.id in self._interrupts:  # asked to stop while it was being handed over
                slot.handle.interrupt.remote(job.id)
            stream = slot.handle.run_job.remote(job.id, job.workflow, job.outputs)
            for ref in stream:
                item = ray.get(ref)
                if item[0] == "events":
                    for event in item[1]:
                        listener.job_event(job.id, event)
                else:
                    _, outcome, holds = item
            if outcome is None:
                raise GraphflowError(f"{slot.name} ended the job's stream without an outcome")
        except _lost_errors(ray) as error:
            self._lost(entry, slot, error)
            return
        except Exception as error:
            outcome = error_outcome(JobErrorCode.WORKER_ERROR, error)
            outcome.worker = slot.name
        with self._lock:
            slot.job = None
            slot.jobs_run += 1
            if holds is not None:
                slot.warm = holds
            self._running.pop(job.id, None)
            self._interrupts.discard(job.id)
        self._report_done(job.id, outcome)
        self._schedule()

    def _lost(self, entry: _Entry, slot: WorkerSlot, error: BaseException) -> None:
        """The worker died under a job: replace it, and run the job again or fail it."""
        job_id = entry.job.id
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        log.warning("Ray worker %s lost while running job %s: %s", slot.name, job_id, reason)
        with contextlib.suppress(Exception):
            self.ray.kill(slot.handle)  # make sure it is gone for good, not half-restarted
        with self._lock:
            slot.state = SlotState.LOST
            slot.job = None
            if slot in self._slots:
                self._slots.remove(slot)
            if not self._stopping:
                self._spawn()
            self._running.pop(job_id, None)
            entry.lost_on.append(slot.name)
            entry.slot = None
            interrupted = job_id in self._interrupts
            self._interrupts.discard(job_id)
            retry = (
                not self._stopping
                and not interrupted
                and len(entry.lost_on) < self.config.max_attempts
            )
            if retry:
                self._waiting.appendleft(entry)
        if retry:
            log.warning("job %s requeued after losing %s", job_id, slot.name)
        elif interrupted or self._stopping:
            self._report_done(job_id, interrupted_outcome("interrupted while running"))
        else:
            failed = failed_outcome(
                WORKER_LOST,
                f"the job's worker died {len(entry.lost_on)} time(s) "
                f"({', '.join(entry.lost_on)}); last: {reason}",
                workers=list(entry.lost_on),
            )
            failed.worker = slot.name
            self._report_done(job_id, failed)
        self._schedule()

    def _report_done(self, job_id: str, outcome: JobOutcome) -> None:
        assert self._listener is not None
        self._listener.job_done(job_id, outcome)


def build_validated(registry: Registry, workflow: dict) -> ValidatedGraph:
    """Validate a workflow document against ``registry`` (raises on problems)."""
    from ..graph import build_graph

    return build_graph(workflow_from_dict(workflow), registry)


def _lost_errors(ray: Any) -> tuple[type[BaseException], ...]:
    """The Ray exceptions that mean the worker (its actor, process or node) is gone."""
    errors = ray.exceptions
    return tuple(
        getattr(errors, name)
        for name in ("RayActorError", "NodeDiedError", "WorkerCrashedError", "ObjectLostError")
        if hasattr(errors, name)
    )
