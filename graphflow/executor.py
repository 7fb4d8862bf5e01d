"""Runs one validated graph: pulls from the requested outputs, uses the cache, emits events.

Execution is demand-driven with an explicit stack (no recursion): a node is resolved from the
cache if its signature is there (then nothing upstream of it is touched), otherwise its
non-lazy inputs are resolved, then the lazy inputs it asks for, then it executes. Each run
has its own :class:`~graphflow.cancel.CancelToken`, checked between nodes and at every
``context.progress()``. A node that raises fails the run with a structured error and leaves
nothing of itself in the cache.
"""

from __future__ import annotations

import functools
import logging
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import mapping
from .cache import FingerprintError, OutputCache, SignaturePlan, compute_signatures, is_portable
from .cancel import CancelToken
from .context import ModelLoader, NodeContext, RunServices
from .errors import Interrupted, RunStatus
from .events import (
    Event,
    NodeCached,
    NodeFinished,
    NodeStarted,
    Observer,
    RunFailed,
    RunFinished,
    RunInterrupted,
    RunStarted,
)
from .expansion import Expand, prepare_expansion
from .formats import png_chunks_for
from .gcpause import gc_paused
from .graph import ValidatedGraph, build_graph, plan_execution
from .registry import Registry
from .settings import Settings, current_settings, use_settings
from .subgraphs import reads_files
from .workflow import Link, Workflow

log = logging.getLogger("graphflow.executor")


@dataclass
class RunError:
    """Why a run failed: the node, the exception type and message, and the traceback."""

    node: str
    exception_type: str
    message: str
    traceback: str = ""

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "node": self.node,
            "exception_type": self.exception_type,
            "message": self.message,
            "traceback": self.traceback,
        }


@dataclass
class RunResult:
    """What a run produced.

    ``status`` is a :class:`~graphflow.errors.RunStatus` (``finished``, ``failed`` or
    ``interrupted``; a ``str``, so comparing with the plain word works too); ``outputs`` maps
    each requested output node to its named output values; ``ui`` holds display data of
    output nodes; ``elements`` tells, for each node mapped over lists, which elements ran
    (``"executed"``) and which came from the cache (``"cached"``), by index.
    """

    run_id: str
    status: RunStatus
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    ui: dict[str, dict] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: RunError | None = None
    elements: dict[str, dict[str, list[int]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the run finished."""
        return self.status == RunStatus.FINISHED


def _peak_memory_start() -> Any:
    torch = sys.modules.get("torch")
    # is_initialized first: is_available asks NVML every call (40% of a trivial node's time)
    if torch is not None and torch.cuda.is_initialized() and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return torch
    return None


class Executor:
    """Runs workflows against a registry, keeping an output cache between runs.

    One run at a time per executor (runs are serialised). Each run has its own
    :class:`~graphflow.cancel.CancelToken` (given to :meth:`run`, or made by it);
    ``interrupt()`` cancels the token of the run in progress, from any thread.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        cache: OutputCache | None = None,
        observers: Iterable[Observer] = (),
        models: ModelLoader | None = None,
        device: str | None = None,
        dtype: Any = None,
        output_dir: str | Path = "output",
        temp_dir: str | Path | None = None,
        settings: Settings | None = None,
    ):
        """``settings`` are in force during every run (``None``: whatever settings are
        current when a run starts, see graphflow.settings); budgets of a default cache and
        model manager come from them."""
        self.registry = registry
        self.settings = settings
        with use_settings(settings):
            self.cache = cache if cache is not None else OutputCache()
            if models is None:
                from .runtime.models import ModelManager

                models = ModelManager()
        self.observers: list[Observer] = list(observers)
        self.models = models
        self.device = device
        self.dtype = dtype
        self.output_dir = Path(output_dir)
        self.temp_dir = Path(temp_dir) if temp_dir else Path(tempfile.gettempdir()) / "graphflow"
        self._current_cancel: CancelToken | None = None
        self._run_lock = threading.Lock()

    def interrupt(self) -> None:
        """Ask the run in progress to stop at its next node boundary or progress call.

        Cancels that run's token; does nothing when no run is in progress (a run that has
        not started yet is stopped by cancelling the token passed to its :meth:`run`).
        """
        cancel = self._current_cancel
        if cancel is not None:
            cancel.cancel()

    @property
    def interrupt_requested(self) -> bool:
        """True between ``interrupt()`` and the end of the run it stops."""
        cancel = self._current_cancel
        return cancel is not None and cancel.cancelled

    def validate(self, workflow: Workflow) -> ValidatedGraph:
        """Validate against this executor's registry (raises ValidationFailed)."""
        with use_settings(self.settings):
            return build_graph(workflow, self.registry)

    def run(
        self,
        workflow: Workflow | ValidatedGraph,
        outputs: Iterable[str] | None = None,
        *,
        run_id: str | None = None,
        observers: Iterable[Observer] = (),
        cancel: CancelToken | None = None,
    ) -> RunResult:
        """Run a workflow (validated first if needed) for ``outputs`` (default: all outputs).

        ``cancel`` stops this run when cancelled, from any thread (default: a token of its
        own, which :meth:`interrupt` reaches); one cancelled before the run starts ends it
        ``interrupted`` without executing a node. Raises
        :class:`~graphflow.errors.ValidationFailed` before running anything if the workflow
        is invalid; node failures and interrupts are reported in the result.
        """
        # The settings current now stay in force for the whole run (one lookup, not one per
        # helper call: the process default re-checks the environment each time).
        settings = self.settings if self.settings is not None else current_settings()
        with use_settings(settings):
            return self._run_with_settings(
                workflow,
                outputs,
                run_id,
                observers,
                cancel if cancel is not None else CancelToken(),
            )

    def _run_with_settings(self, workflow, outputs, run_id, observers, cancel) -> RunResult:
        validated = workflow if isinstance(workflow, ValidatedGraph) else self.validate(workflow)
        targets = list(validated.output_nodes if outputs is None else outputs)
        plan = plan_execution(validated, targets)
        with self._run_lock:
            self._current_cancel = cancel
            try:
                with gc_paused():  # engine-only bookkeeping; node code runs with the GC on
                    run = _Run(
                        self,
                        validated,
                        plan,
                        targets,
                        run_id or uuid.uuid4().hex,
                        [*self.observers, *observers],
                        cancel,
                    )
                return run.execute()
            finally:
                self._current_cancel = None


def planned_inputs(
    validated: ValidatedGraph, plan: list[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, list[tuple[str, str, str]]]]:
    """Each planned node's effective literal inputs (defaults filled in; INT given to a FLOAT
    input becomes a float) and its links as ``(input, source node, source output)``."""
    literals: dict[str, dict[str, Any]] = {}
    links: dict[str, list[tuple[str, str, str]]] = {}
    nodes = validated.workflow.nodes
    for node_id in plan:
        given = nodes[node_id].inputs
        own: dict[str, Any] = {}
        linked: list[tuple[str, str, str]] = []
        for input_spec in validated.specs[node_id].inputs:
            value = given.get(input_spec.name, input_spec.default)
            if isinstance(value, Link):
                linked.append((input_spec.name, value.node, value.output))
            elif input_spec.type == "FLOAT" and type(value) is int:
                own[input_spec.name] = float(value)  # FLOAT inputs get floats
            else:
                own[input_spec.name] = value
        literals[node_id] = own
        links[node_id] = linked
    return literals, links


def _document_to_embed(validated: ValidatedGraph) -> Workflow:
    """What saved images carry: the workflow as written (its subgraphs kept), unless its
    subgraphs come from other files, which a reader of the image may not have."""
    document = validated.document
    if document is None or reads_files(document):
        return validated.workflow
    return document


def _emit(observers: list[Observer], event: Event) -> None:
    for observer in observers:
        try:
            observer(event)
        except Exception:  # an observer's bug must not break the run
            log.exception("event observer %r failed on %s", observer, event.type)


class _Run:
    """The state of one run (kept apart so the executor itself stays reusable)."""

    def __init__(
        self,
        executor: Executor,
        validated: ValidatedGraph,
        plan: list[str],
        targets: list[str],
        run_id: str,
        observers: list[Observer],
        cancel: CancelToken,
    ):
        self.executor = executor
        self.cancel = cancel
        self.cache = executor.cache
        self.specs = self.validated_specs = validated.specs
        self.plan = plan
        self.targets = targets
        self.target_set = frozenset(targets)
        self.run_id = run_id
        self.observers = observers
        # Not a bound method: the services would then hold the run and the run them, a
        # reference cycle keeping every output of the run alive until a full collection.
        self.emit = functools.partial(_emit, observers)
        self.literals, self.links = planned_inputs(validated, plan)
        self.services = RunServices(
            run_id,
            self.emit,
            cancel,
            device=executor.device,
            dtype=executor.dtype,
            temp_dir=executor.temp_dir,
            output_dir=executor.output_dir,
            models=executor.models,
            workflow=_document_to_embed(validated),
            settings=executor.settings,
            png_chunks=functools.partial(png_chunks_for, registry=executor.registry),
        )
        self.result = RunResult(run_id, RunStatus.RUNNING)
        self.values: dict[str, dict[str, Any]] = {}
        self.started: set[str] = set()
        self.signatures = SignaturePlan({}, set())
        self.rebuild: dict[str, float] = {}  # seconds to recompute a node after a restart

    def execute(self) -> RunResult:
        started = time.perf_counter()
        result = self.result
        try:
            if self.cancel.cancelled:  # cancelled before it started: run nothing
                self.emit(RunStarted(self.run_id, tuple(self.plan)))
                raise Interrupted("cancelled before the run started")
            with gc_paused():
                signatures = compute_signatures(
                    self.plan,
                    self.specs,
                    self.literals.__getitem__,
                    self.links.__getitem__,
                    self.run_id,
                )
            self.emit(RunStarted(self.run_id, tuple(self.plan)))
            self.signatures = signatures
            self.portable = signatures.signatures if self.cache.disk is not None else {}
            self._pull(self.targets)
            for target in self.targets:
                result.outputs[target] = self.values[target]
            result.status = RunStatus.FINISHED
            result.seconds = time.perf_counter() - started
            self.emit(
                RunFinished(self.run_id, len(result.executed), len(result.cached), result.seconds)
            )
        except Interrupted:
            result.status = RunStatus.INTERRUPTED
            result.seconds = time.perf_counter() - started
            self.emit(RunInterrupted(self.run_id, self.current))
        except FingerprintError as error:
            self._fail(error.node, error.error, started)
        except Exception as error:
            self._fail(self.current, error, started)
        finally:
            self.cache.flush()
        return result

    portable: dict[str, str] = {}
    """Signatures of this run's nodes when the cache has a disk tier, else empty."""

    def _durable(self, node_id: str) -> bool:
        """May the disk tier serve and store this (non-volatile) node? Yes with a disk tier,
        a portable signature, and a spec that does not opt out (``spec.disk_cache = False``).
        Asked only for the nodes a run looks up, so a restart that hits at the output nodes
        costs nothing per node."""
        signature = self.portable.get(node_id)
        return (
            signature is not None
            and is_portable(signature)
            and getattr(self.specs[node_id], "disk_cache", True)
        )

    def _store(self, node_id: str, signature: str, outputs, ui, seconds: float) -> None:
        """Keep a node's outputs in memory, and on disk when the disk tier wants them: a
        requested output, or a node whose recompute after a restart (its own seconds plus
        those of its upstream nodes that are not on disk) reaches ``min_seconds``."""
        self.cache.put(signature, outputs, ui, seconds)
        if not self._durable(node_id):
            self.rebuild[node_id] = seconds
            return
        sources = {source for _, source, _ in self.links[node_id]}
        rebuild = seconds + sum(self.rebuild.get(source, 0.0) for source in sources)
        wanted = node_id in self.target_set or rebuild >= self.cache.disk.min_seconds
        stored = wanted and self.cache.persist(signature, outputs, ui, seconds)
        self.rebuild[node_id] = 0.0 if stored else rebuild

    def _fail(self, node: str, error: BaseException, started: float) -> None:
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        self.result.status = RunStatus.FAILED
        self.result.seconds = time.perf_counter() - started
        self.result.error = RunError(node, type(error).__name__, str(error), text)
        self.emit(RunFailed(self.run_id, node, type(error).__name__, str(error), text))

    current = ""
    """The node executing now ("" between nodes); names the culprit when a run stops."""

    def _pull(self, targets: list[str]) -> None:
        """Compute ``targets`` into ``self.values`` (an expansion pulls its inner nodes
        through here too, nested once per expansion level)."""
        values = self.values
        started = self.started
        signatures = self.signatures.signatures
        volatile = self.signatures.volatile
        cancel = self.cancel
        cache = self.cache
        result = self.result
        stack = list(reversed(targets))
        while stack:
            node_id = stack[-1]
            if node_id in values:
                stack.pop()
                continue
            if cancel.cancelled:
                self.current = ""
                raise Interrupted("interrupted between nodes")
            spec = self.specs[node_id]
            links = self.links[node_id]
            if node_id not in started:
                started.add(node_id)
                if node_id not in volatile:
                    entry = cache.get(signatures[node_id], self._durable(node_id))
                    if entry is not None:
                        self.rebuild[node_id] = 0.0 if entry.on_disk else entry.cost
                        values[node_id] = entry.outputs
                        if entry.ui is not None:
                            result.ui[node_id] = entry.ui
                        result.cached.append(node_id)
                        self.emit(NodeCached(self.run_id, node_id))
                        stack.pop()
                        continue
            lazy = spec.lazy_inputs
            missing = [s for name, s, _ in links if s not in values and name not in lazy]
            if missing:
                stack.extend(missing)
                continue
            kwargs = dict(self.literals[node_id])
            for name, source, output in links:
                value = values[source][output] if source in values else None
                if type(value) is int and name in spec.float_inputs:
                    value = float(value)  # an INT output feeding a FLOAT input
                kwargs[name] = value
            if lazy:
                wanted = self._lazy_wanted(node_id, spec, kwargs, links)
                missing = [s for name, s, _ in links if name in wanted and s not in values]
                if missing:
                    stack.extend(missing)
                    continue
            self.current = node_id
            outputs, ui, seconds = self._execute(node_id, spec, kwargs)
            self.current = ""
            values[node_id] = outputs
            if ui is not None:
                result.ui[node_id] = ui
            result.executed.append(node_id)
            if node_id not in volatile:
                self._store(node_id, signatures[node_id], outputs, ui, seconds)
            stack.pop()

    def _lazy_wanted(self, node_id: str, spec, kwargs: dict[str, Any], links) -> set[str]:
        if spec.needs_function is None:
            return {name for name, _, _ in links if name in spec.lazy_inputs}
        plan = mapping.plan_calls(node_id, spec, kwargs, {})
        calls = [kwargs] if plan is None else plan.calls  # a mapped node: what any call needs
        return {name for call in calls for name in spec.needs_function(**call) or ()}

    def _link_keys(self, node_id: str) -> dict[str, str]:
        signatures = self.signatures.signatures
        return {name: f"{signatures[s]}:{output}" for name, s, output in self.links[node_id]}

    def _execute(self, node_id: str, spec, kwargs: dict[str, Any]):
        """Run one node: once, or once per element when lists reach it (graphflow.mapping)."""
        plan = mapping.plan_calls(node_id, spec, kwargs, self._link_keys(node_id))
        if plan is not None and plan.mapped:
            return mapping.run_mapped(self, node_id, spec, plan)
        if plan is not None:
            kwargs = plan.calls[0]
        self.emit(NodeStarted(self.run_id, node_id, spec.id))
        torch = _peak_memory_start()
        began = time.perf_counter()
        context = NodeContext(self.services, node_id) if spec.context_param else None
        keys = None if plan is None else plan.keys[0]
        outputs, ui = self.invoke(node_id, spec, kwargs, keys, context, None)
        seconds = time.perf_counter() - began
        peak = torch.cuda.max_memory_allocated() if torch is not None else None
        self.emit(NodeFinished(self.run_id, node_id, seconds, peak, ui))
        return outputs, ui, seconds

    def invoke(self, node_id, spec, kwargs, keys, context, key):
        """Call a node's function once: packed outputs (lists wrapped) and ui. ``key`` is
        the call's element signature (None: the node's own signature)."""
        if spec.context_param is not None:
            kwargs[spec.context_param] = context
        raw = spec.function(**kwargs)
        if isinstance(raw, Expand):
            outputs, ui = self._expand(node_id, spec, raw, kwargs, keys, context)
        else:
            outputs, ui = spec.pack_result(raw)
        if spec.list_outputs:
            base = key if key is not None else self.signatures.signatures[node_id]
            outputs = mapping.list_outputs(spec, outputs, base)
        return outputs, ui

    def _expand(self, node_id, spec, expand: Expand, kwargs, keys, context):
        """Run the graph a node returned in its place; its outputs are the named inner ones."""
        if keys is None:
            keys = mapping.input_keys(kwargs, self._link_keys(node_id))
        element = getattr(context, "element", None)
        prefix = f"{node_id}:" if element is None else f"{node_id}[{element}]:"
        inner = prepare_expansion(expand, node_id, spec, self.executor.registry, prefix)
        for name, source in inner.sources.items():
            self.values[source] = {"value": kwargs.get(name)}
            self.signatures.signatures[source] = keys.get(name, mapping.literal_key(None))
            if node_id in self.signatures.volatile:
                self.signatures.volatile.add(source)
        if self.specs is self.validated_specs:
            self.specs = dict(self.specs)  # the validated graph stays as it was
        self.specs.update(inner.specs)
        self.literals.update(inner.literals)
        self.links.update(inner.links)
        known = self.signatures
        added = compute_signatures(
            inner.order,
            self.specs,
            self.literals.__getitem__,
            self.links.__getitem__,
            self.run_id,
            known=known,
        )
        known.signatures.update(added.signatures)
        known.volatile.update(added.volatile)
        known.fingerprints.update(added.fingerprints)
        self._pull(inner.targets)
        self.current = node_id
        outputs = {
            name: self.values[ref[0]][ref[1]] if isinstance(ref, tuple) else ref.value
            for name, ref in inner.outputs.items()
        }
        return outputs, expand.ui

    # -- what graphflow.mapping asks of a run (mapping.ElementRunner) ------------------------
    def element_entry(self, node_id: str, key: str):
        """The cached outputs of one element call, if any."""
        return self.cache.get(key, self._durable(node_id) and is_portable(key))

    def store_element(self, node_id: str, key: str, outputs, ui, seconds: float) -> None:
        """Keep one element call's outputs (on disk too when the node's would be)."""
        self.cache.put(key, outputs, ui, seconds)
        if not self._durable(node_id) or not is_portable(key):
            return
        wanted = node_id in self.target_set or seconds >= self.cache.disk.min_seconds
        if wanted and node_id not in self.signatures.volatile:
            self.cache.persist(key, outputs, ui, seconds)

    def element_nonce(self, node_id: str) -> tuple[object, str]:
        """The node's fingerprint, and the run's nonce when the node is not idempotent."""
        spec = self.specs[node_id]
        nonce = "" if spec.idempotent else self.run_id
        return self.signatures.fingerprints.get(node_id), nonce

    def record_elements(self, node_id: str, ran: list[int], cached: list[int]) -> None:
        """Note which elements of a mapped node ran and which were cached."""
        self.result.elements[node_id] = {"executed": ran, "cached": cached}
