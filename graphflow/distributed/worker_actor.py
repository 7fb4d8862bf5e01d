"""The Ray actor that runs jobs: one :class:`~graphflow.executor.Executor` per actor.

Each actor loads the plugins itself (entry points plus the server's plugin folders), and
keeps its own model manager and output cache, so models stay resident on its GPU between
jobs. Before anything else it takes on the driver's torch numerics settings (thread count,
deterministic algorithms: :mod:`.numerics`), so it computes what a local run would. Two
concurrency groups keep it responsive: ``run`` executes one job at a time, while
``control`` answers ``interrupt``, ``info`` and ``free`` during a run. Every run has its own
:class:`~graphflow.cancel.CancelToken`; ``interrupt`` cancels it, even when it arrives
before the run has started.

A run is a Ray *streaming generator*: the executor works in a thread of the actor and its
events go through a local queue; the generator yields them in batches (whatever piled up
since the last yield, so a burst of progress costs one object, not hundreds) and yields the
outcome last. The caller reads one ordered stream; if the actor dies, reading it raises
:class:`ray.exceptions.RayActorError`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import ray

from ..cancel import CancelToken
from ..errors import RunStatus, ValidationFailed
from ..events import Event, Preview
from ..executor import Executor, RunError, RunResult
from ..graph import ValidatedGraph
from ..jobs import Job, JobErrorCode, error_outcome, execute_job, free_executor, to_json
from ..plugins import load_plugins
from ..settings import Settings, use_settings
from ..workflow import workflow_from_dict
from .affinity import affinity_keys, cache_signatures
from .numerics import TorchNumerics

MAX_BATCH = 512
"""Most events in one yielded batch."""

_MAX_REMEMBERED = 1024


@dataclasses.dataclass
class _Final:
    """The last item of a stream: what the run came to."""

    value: Any


def _portable(event: Event) -> Event:
    """The event as it can travel: a preview tensor (maybe on a GPU) becomes a CPU array."""
    if type(event) is Preview and hasattr(event.image, "detach"):
        torch = sys.modules["torch"]
        image = event.image.detach().to("cpu", torch.float32).numpy()
        return dataclasses.replace(event, image=image)
    return event


@ray.remote(concurrency_groups={"run": 1, "control": 4})
class GraphflowWorker:
    """A graphflow worker living in a Ray actor (created by the runner, not by hand)."""

    def __init__(
        self,
        name: str,
        plugin_dirs: list[str],
        output_dir: str,
        temp_dir: str,
        device: str | None = None,
        numerics: TorchNumerics | None = None,
        settings: Settings | None = None,
    ):
        if numerics is not None:  # first, so nothing computes with Ray's thread settings
            numerics.apply()
        with use_settings(settings):  # the head's settings (plugin_path...), not the env's
            loaded = load_plugins(plugin_dirs)
        self.name = name
        self.problems = [str(problem) for problem in loaded.problems]
        self.executor = Executor(
            loaded.registry,
            output_dir=output_dir,
            temp_dir=temp_dir,
            device=device,
            settings=settings,
        )
        self._lock = threading.Lock()
        self._current: str | None = None
        # run id → its token; an interrupt may come first (it creates a cancelled token)
        self._cancels: OrderedDict[str, CancelToken] = OrderedDict()
        # affinity key → (the loader's cache signature here, label), for the warm report
        self._known: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._jobs = 0
        self._model_types = loaded.registry.types.model_types()

    # -- control group: answers during a run ----------------------------------------------

    @ray.method(concurrency_group="control")
    def ready(self) -> dict[str, Any]:
        """Who this worker is (answered once the actor has started)."""
        return {
            "name": self.name,
            "node": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "device": self._device(),
            "numerics": self._numerics(),
            "plugin_problems": self.problems,
        }

    @ray.method(concurrency_group="control")
    def interrupt(self, job_id: str) -> bool:
        """Stop ``job_id`` at its next node boundary or progress call (or before it starts)."""
        self._cancel_for(job_id).cancel()
        return True

    @ray.method(concurrency_group="control")
    def info(self) -> dict[str, Any]:
        """Device, cache and model statistics, the running job and the warm models."""
        stats = getattr(self.executor.models, "stats", None)
        return {
            "name": self.name,
            "node": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "device": self._device(),
            "numerics": self._numerics(),
            "cache": self.executor.cache.stats(),
            "models": stats() if callable(stats) else None,
            "running": self._current,
            "holds": self.holds(),
            "jobs_run": self._jobs,
        }

    @ray.method(concurrency_group="control")
    def free(self, cache: bool = True, models: bool = True) -> dict[str, Any]:
        """Drop cached outputs and/or unload models (see :func:`free_executor`)."""
        return free_executor(self.executor, cache=cache, models=models)

    @ray.method(concurrency_group="control")
    def holds(self) -> dict[str, str]:
        """Affinity keys of the models whose loader outputs are still in the cache."""
        with self._lock:
            return {
                key: label
                for key, (signature, label) in self._known.items()
                if signature in self.executor.cache
            }

    # -- run group: one job at a time -----------------------------------------------------

    @ray.method(concurrency_group="run")
    def run_job(
        self, job_id: str, workflow: dict, outputs: list[str] | None
    ) -> Iterator[tuple[str, Any]]:
        """Run a server job: yields ``("events", [...])`` batches, then
        ``("outcome", JobOutcome, holds)`` with the warm models after the run."""

        def work(report: Callable[[Event], None]) -> tuple:
            job = Job(id=job_id, workflow=workflow, outputs=outputs)
            validated = self._validate(workflow)
            outcome = execute_job(self.executor, job, validated, report, self._cancel_for(job_id))
            outcome.worker = self.name
            # What the queue stores is JSON: make it JSON here, so nothing odd has to travel.
            outcome.ui = json.loads(to_json(outcome.ui))
            if validated is not None:
                self._remember(validated, outputs)
            return ("outcome", outcome, self.holds())

        def failed(error: BaseException) -> tuple:
            outcome = error_outcome(JobErrorCode.WORKER_ERROR, error)
            outcome.worker = self.name
            return ("outcome", outcome, self.holds())

        yield from self._stream(job_id, work, failed)

    @ray.method(concurrency_group="run")
    def run_workflow(
        self, run_id: str, workflow: dict, outputs: list[str] | None
    ) -> Iterator[tuple[str, Any]]:
        """Run a workflow for ``graphflow run``: yields event batches, then
        ``("result", RunResult)`` (output values stay here; files and ui data travel), or
        ``("invalid", [error dicts])`` when it does not validate here."""

        def work(report: Callable[[Event], None]) -> tuple:
            try:
                validated = self.executor.validate(workflow_from_dict(workflow))
            except ValidationFailed as error:
                return ("invalid", [e.to_dict() for e in error.errors])
            result = self.executor.run(
                validated,
                outputs,
                run_id=run_id,
                observers=[report],
                cancel=self._cancel_for(run_id),
            )
            return ("result", dataclasses.replace(result, outputs={}))

        def failed(error: BaseException) -> tuple:
            text = f"{type(error).__name__}: {error}"
            failure = RunError("", "WorkerError", text)
            return ("result", RunResult(run_id, RunStatus.FAILED, error=failure))

        yield from self._stream(run_id, work, failed)

    # -- helpers --------------------------------------------------------------------------

    def _device(self) -> str:
        if self.executor.device is None:
            from ..runtime.devices import default_device

            with use_settings(self.executor.settings):  # the head's device setting, if any
                self.executor.device = default_device()
        return self.executor.device

    def _validate(self, workflow: dict) -> ValidatedGraph | None:
        try:
            return self.executor.validate(workflow_from_dict(workflow))
        except Exception:  # execute_job validates again and records the errors
            return None

    @staticmethod
    def _numerics() -> dict[str, Any] | None:
        numerics = TorchNumerics.of_this_process()
        return numerics.to_dict() if numerics is not None else None

    def _cancel_for(self, run_id: str) -> CancelToken:
        """The token of ``run_id`` (made on first use, by its run or by an interrupt)."""
        with self._lock:
            cancel = self._cancels.get(run_id)
            if cancel is None:
                cancel = self._cancels[run_id] = CancelToken()
                while len(self._cancels) > _MAX_REMEMBERED:  # interrupts of runs never seen
                    self._cancels.popitem(last=False)
            return cancel

    def _remember(self, validated: ValidatedGraph, outputs: list[str] | None) -> None:
        try:
            labels = affinity_keys(validated, outputs, model_types=self._model_types)
            signatures = cache_signatures(validated, outputs, model_types=self._model_types)
        except Exception:  # affinity is an optimisation: never fail a job over it
            return
        with self._lock:
            for key, signature in signatures.items():
                self._known[key] = (signature, labels.get(key, key))
                self._known.move_to_end(key)
            while len(self._known) > _MAX_REMEMBERED:
                self._known.popitem(last=False)

    def _stream(
        self,
        run_id: str,
        work: Callable[[Callable[[Event], None]], tuple],
        failed: Callable[[BaseException], tuple],
    ) -> Iterator[tuple[str, Any]]:
        inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()

        def target() -> None:
            with self._lock:
                self._current = run_id
            try:
                # The head's settings for all of it, not just the run: validation lists files
                # and the warm report's signatures fingerprint files in the models folder.
                with use_settings(self.executor.settings):
                    final = work(lambda event: inbox.put(_portable(event)))
            except BaseException as error:  # belt and braces: work() maps errors itself
                final = failed(error)
            finally:
                with self._lock:
                    self._current = None
                    self._cancels.pop(run_id, None)
                    self._jobs += 1
            inbox.put(_Final(final))

        thread = threading.Thread(target=target, name=f"graphflow-run-{run_id}", daemon=True)
        thread.start()
        while True:
            batch: list[Event] = [inbox.get()]
            while len(batch) < MAX_BATCH and not isinstance(batch[-1], _Final):
                try:
                    batch.append(inbox.get_nowait())
                except queue.Empty:
                    break
            last = batch[-1]
            if isinstance(last, _Final):
                if len(batch) > 1:
                    yield ("events", batch[:-1])
                thread.join()
                yield last.value
                return
            yield ("events", batch)
