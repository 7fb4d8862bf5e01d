"""Run-time node expansion: a node returns a small graph to run in its place.

A node builds the graph with :class:`InnerGraph` and returns :meth:`InnerGraph.expand`::

    @node("demo.scale_twice", category="demo")
    def scale_twice(image: Image, factor: Float = 2.0) -> Image:
        \"\"\"Scale by factor, then the result by factor again.\"\"\"
        graph = InnerGraph()
        first = graph.add("image.scale", image=graph.parent("image"), factor=graph.parent("factor"))
        second = graph.add("image.scale", image=first["image"], factor=graph.parent("factor"))
        return graph.expand(image=second["image"])

The executor checks the inner graph like a workflow (node types, inputs, links and their
types, cycles), gives its nodes ids prefixed by the parent's (``"7:first"``; an element of
a mapped parent: ``"7[2]:first"``) and runs them through the ordinary path: each inner node
has a content signature built from its inputs, so it caches like any node, and an inner node
whose inputs did not change is not run again even when the parent runs again. The parent's
outputs are the named inner outputs (and are cached under the parent's signature). Inner
nodes that are output nodes run too. ``graph.parent(name)`` stands for the value the parent
received at input ``name`` (an element, for a mapped parent).
"""

from __future__ import annotations

import graphlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ErrorCode, GraphError, GraphflowError
from .workflow import Link

if TYPE_CHECKING:
    from .node import InputSpec, NodeSpec
    from .registry import Registry


@dataclass(frozen=True)
class InnerLink:
    """An output of an inner node: ``node["output"]``."""

    node: str
    output: str


@dataclass(frozen=True)
class ParentInput:
    """The value the expanding node received at its input ``name``."""

    name: str


@dataclass(frozen=True)
class InnerNode:
    """A node added to an :class:`InnerGraph`; index it by output name to link from it."""

    id: str
    type: str

    def __getitem__(self, output: str) -> InnerLink:
        return InnerLink(self.id, output)


class InnerGraph:
    """A small graph a node builds to run in its place."""

    def __init__(self) -> None:
        self.nodes: dict[str, tuple[str, dict[str, Any]]] = {}

    def add(self, type: str, *, id: str | None = None, **inputs: Any) -> InnerNode:
        """Add a node of ``type`` with ``inputs`` (literals, ``other["output"]`` links or
        ``graph.parent(name)``); ``id`` defaults to a running number."""
        node_id = id if id is not None else str(len(self.nodes) + 1)
        if node_id in self.nodes:
            raise ValueError(f"inner node id {node_id!r} is used twice")
        self.nodes[node_id] = (type, dict(inputs))
        return InnerNode(node_id, type)

    def parent(self, name: str) -> ParentInput:
        """The expanding node's own input ``name``, for an inner node's input."""
        return ParentInput(name)

    def expand(self, *, ui: dict | None = None, **outputs: Any) -> Expand:
        """The result that runs this graph: each parent output named to an inner output."""
        return Expand(self, outputs, ui)


@dataclass(frozen=True)
class Expand:
    """What a node returns to run ``graph`` in its place.

    ``graph``: an :class:`InnerGraph`, or ``{id: {"type": ..., "inputs": {...}}}`` whose
    inputs may also be written ``{"link": [id, output]}`` and ``{"parent": name}``.
    ``outputs``: each of the parent's outputs → an inner output (or a plain value).
    """

    graph: InnerGraph | Mapping[str, Mapping[str, Any]]
    outputs: Mapping[str, Any]
    ui: dict | None = None

    def inner_nodes(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """The graph as ``{id: (type, inputs)}`` with every link an InnerLink/ParentInput."""
        if isinstance(self.graph, InnerGraph):
            return dict(self.graph.nodes)
        nodes = {}
        for node_id, entry in self.graph.items():
            inputs = {name: _read_input(v) for name, v in dict(entry.get("inputs", {})).items()}
            nodes[str(node_id)] = (entry.get("type", ""), inputs)
        return nodes


def _read_input(value: Any) -> Any:
    if isinstance(value, Link):
        return InnerLink(value.node, value.output)
    if isinstance(value, dict) and len(value) == 1:
        if "link" in value and len(value["link"]) == 2:
            return InnerLink(str(value["link"][0]), str(value["link"][1]))
        if "parent" in value:
            return ParentInput(str(value["parent"]))
    return value


class ExpansionError(GraphflowError):
    """A node returned an inner graph that does not check out; ``errors`` lists why."""

    def __init__(self, node_id: str, spec: NodeSpec, errors: list[GraphError]):
        self.node = node_id
        self.errors = errors
        lines = "\n".join(f"  - {error}" for error in errors)
        super().__init__(
            f"node {node_id!r} ({spec.id}) expanded into a graph with "
            f"{len(errors)} problem(s):\n{lines}"
        )


@dataclass(frozen=True)
class Constant:
    """A parent output given as a plain value rather than an inner output."""

    value: Any


@dataclass
class ExpansionPlan:
    """An inner graph ready to run: specs, literals and links by prefixed id, the order,
    the nodes to pull, the parent inputs it reads (input name → source id) and the parent's
    outputs (name → (inner id, output) or :class:`Constant`)."""

    specs: dict[str, NodeSpec] = field(default_factory=dict)
    literals: dict[str, dict[str, Any]] = field(default_factory=dict)
    links: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, tuple[str, str] | Constant] = field(default_factory=dict)


def prepare_expansion(
    expand: Expand, parent_id: str, parent: NodeSpec, registry: Registry, prefix: str
) -> ExpansionPlan:
    """Check an expansion against the registry and lay it out for the executor (raises
    :class:`ExpansionError` listing every problem)."""
    nodes = expand.inner_nodes()
    plan = ExpansionPlan()
    errors: list[GraphError] = []
    checker = _Checker(registry, nodes, parent, prefix, errors)
    deps: dict[str, set[str]] = {}
    for inner_id, (type_name, inputs) in nodes.items():
        spec = registry.get(type_name)
        full = prefix + inner_id
        if spec is None:
            errors.append(
                GraphError(ErrorCode.UNKNOWN_NODE_TYPE, f"unknown node type {type_name!r}", full)
            )
            continue
        plan.specs[full] = spec
        literals, links = checker.inputs(full, spec, inputs, plan.sources)
        plan.literals[full], plan.links[full] = literals, links
        deps[full] = {source for _, source, _ in links if source not in plan.sources.values()}
        if spec.output_node:
            plan.targets.append(full)
    try:
        plan.order = list(graphlib.TopologicalSorter(deps).static_order())
    except graphlib.CycleError as error:
        cycle = " → ".join(error.args[1])
        errors.append(GraphError(ErrorCode.CYCLE, f"links form a cycle: {cycle}", parent_id))
    for name, ref in expand.outputs.items():
        target = checker.output(parent_id, name, ref)
        if target is not None:
            plan.outputs[name] = target
            if isinstance(target, tuple) and target[0] not in plan.targets:
                plan.targets.append(target[0])
    missing = [o.name for o in parent.outputs if o.name not in expand.outputs]
    if missing:
        errors.append(
            GraphError(
                ErrorCode.MISSING_INPUT,
                f"no inner output given for the node's output(s) {missing}",
                parent_id,
            )
        )
    if errors:
        raise ExpansionError(parent_id, parent, errors)
    return plan


class _Checker:
    """Checks inner inputs and outputs as graph validation checks a workflow's."""

    def __init__(self, registry, nodes, parent: NodeSpec, prefix: str, errors: list):
        self.registry = registry
        self.types = registry.types
        self.nodes = nodes
        self.parent = parent
        self.prefix = prefix
        self.errors = errors

    def _error(self, code: ErrorCode, message: str, node: str, name: str | None = None):
        self.errors.append(GraphError(code, message, node, name))

    def _output_type(self, node: str, link: InnerLink, where: str, name: str) -> str | None:
        entry = self.nodes.get(link.node)
        spec = self.registry.get(entry[0]) if entry is not None else None
        if entry is None:
            self._error(
                ErrorCode.LINK_MISSING_NODE,
                f"links to inner node {link.node!r}, which is not in the expansion",
                where,
                name,
            )
            return None
        if spec is None:
            return None
        output = spec.outputs_by_name.get(link.output)
        if output is None:
            known = ", ".join(spec.outputs_by_name) or "none"
            self._error(
                ErrorCode.LINK_MISSING_OUTPUT,
                f"inner node {link.node!r} has no output {link.output!r} (outputs: {known})",
                where,
                name,
            )
            return None
        return output.type

    def inputs(self, node: str, spec: NodeSpec, given: dict[str, Any], sources: dict):
        literals: dict[str, Any] = {}
        links: list[tuple[str, str, str]] = []
        for name in given:
            if name not in spec.inputs_by_name:
                known = ", ".join(spec.inputs_by_name) or "none"
                self._error(
                    ErrorCode.UNKNOWN_INPUT,
                    f"{spec.id} has no input {name!r} (inputs: {known})",
                    node,
                    name,
                )
        for input_spec in spec.inputs:
            name = input_spec.name
            value = given.get(name, input_spec.default)
            if isinstance(value, InnerLink):
                self._check_type(self._output_type(node, value, node, name), input_spec, node)
                links.append((name, self.prefix + value.node, value.output))
            elif isinstance(value, ParentInput):
                source = self._parent_source(value, input_spec, node, sources)
                if source is not None:
                    links.append((name, source, "value"))
            elif input_spec.required and name not in given:
                self._error(
                    ErrorCode.MISSING_INPUT,
                    f"required {input_spec.type} input is neither linked nor set",
                    node,
                    name,
                )
            else:
                self._check_literal(node, input_spec, value)
                is_int = type(value) is int
                literals[name] = float(value) if is_int and input_spec.type == "FLOAT" else value
        return literals, links

    def _parent_source(self, ref: ParentInput, input_spec, node: str, sources: dict):
        own = self.parent.inputs_by_name.get(ref.name)
        if own is None:
            known = ", ".join(self.parent.inputs_by_name) or "none"
            self._error(
                ErrorCode.UNKNOWN_INPUT,
                f"the expanding node has no input {ref.name!r} (inputs: {known})",
                node,
                input_spec.name,
            )
            return None
        self._check_type(own.type, input_spec, node)
        return sources.setdefault(ref.name, f"{self.prefix}<{ref.name}>")

    def _check_type(self, output_type: str | None, input_spec: InputSpec, node: str) -> None:
        if output_type is not None and not self.types.can_connect(output_type, input_spec.type):
            self._error(
                ErrorCode.TYPE_MISMATCH,
                f"gets {output_type}, input needs {input_spec.type}",
                node,
                input_spec.name,
            )

    def _check_literal(self, node: str, spec: InputSpec, value: Any) -> None:
        if value is None and spec.default is None:
            return
        if not self.types.accepts_literal(spec.type, value):
            self._error(
                ErrorCode.INVALID_LITERAL,
                f"expects {spec.type}, got {type(value).__name__}",
                node,
                spec.name,
            )
            return
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        low = number and spec.min is not None and value < spec.min
        if low or (number and spec.max is not None and value > spec.max):
            self._error(
                ErrorCode.OUT_OF_RANGE,
                f"{value!r} is outside [{spec.min}, {spec.max}]",
                node,
                spec.name,
            )
        choices = spec.allowed_choices()
        if choices is not None and value not in choices:
            self._error(
                ErrorCode.NOT_IN_CHOICES, f"{value!r} is not an allowed choice", node, spec.name
            )

    def output(self, parent_id: str, name: str, ref: Any):
        port = self.parent.outputs_by_name.get(name)
        if port is None:
            known = ", ".join(self.parent.outputs_by_name) or "none"
            self._error(
                ErrorCode.UNKNOWN_OUTPUT,
                f"the node has no output {name!r} (outputs: {known})",
                parent_id,
            )
            return None
        ref = _read_input(ref)
        if not isinstance(ref, InnerLink):
            return Constant(ref)
        output_type = self._output_type(parent_id, ref, parent_id, None)
        if output_type is None:
            return None
        if not self.types.can_connect(output_type, port.type):
            self._error(
                ErrorCode.TYPE_MISMATCH,
                f"output {name!r} is {port.type}, inner "
                f"output {ref.node}.{ref.output} is {output_type}",
                parent_id,
            )
        return (self.prefix + ref.node, ref.output)
