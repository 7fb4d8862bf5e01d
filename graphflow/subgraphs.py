"""Subgraphs: a workflow used as one node, flattened into ordinary nodes before validation.

A document's ``subgraphs`` section maps an id to a subgraph: typed ``inputs``, ``outputs``
taken from inner nodes, and inner ``nodes``. A node ``{"type": "subgraph", "subgraph": id}``
runs one (``"file": "lib.json"`` takes it from another workflow file, relative to this one).
Inner nodes read the subgraph's inputs as links from the pseudo node ``$in``.

Before validation every subgraph node is replaced by its inner nodes, whose ids carry the
nesting path: inner node ``3`` of subgraph node ``12`` becomes ``"12:3"`` (nested deeper,
``"12:4:3"``). Links across a boundary are joined end to end, so the flat graph is an
ordinary workflow: the executor and the cache see plain nodes, and an inner node's cache
signature depends on its inputs only, never on where it sits. Errors found here or in the
flat graph name the path (``outer node 12 › inner node 3``, :attr:`GraphError.path`).

What is checked at a boundary: the subgraph node's inputs against the declared types (a
link's source type, a literal's kind), required inputs (those without ``default``), names
it does not declare, the declared types against the inner inputs that read them, outputs
taken from nodes that do not exist (or of the wrong declared type), subgraphs that refer to
each other in a cycle, missing or unreadable files, and inner ids that would collide.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ErrorCode, GraphError, ValidationFailed, WorkflowFormatError
from .registry import Registry
from .workflow import Link, NodeEntry, Subgraph, Workflow, workflow_from_dict

SUBGRAPH_TYPE = "subgraph"
"""The node type of a node that runs a subgraph."""
INPUTS_NODE = "$in"
"""The pseudo node inner nodes link from to read the subgraph's inputs."""
SEPARATOR = ":"
"""Joins the ids along the nesting path: ``"12:3"``."""
MAX_DEPTH = 32
"""How deep subgraphs may nest."""
MAX_NODES = 250_000
"""How many nodes a flattened workflow may have (nesting multiplies them)."""


@dataclass(frozen=True, slots=True)
class _Ref:
    """An unresolved input: ``node`` output ``name`` (kind "node"), or input ``name`` of
    subgraph node ``node`` (kind "in"); node ids are flat ids."""

    kind: str
    node: str
    name: str


@dataclass(frozen=True, slots=True)
class _Value:
    value: Any


@dataclass(frozen=True, slots=True)
class _Problem:
    code: ErrorCode
    message: str


_UNSET = object()  # nothing reaches the input: it keeps its own default
_FAILED = object()  # an error already reported cut the link


@dataclass
class _Scope:
    """Where subgraph ids resolve: one document's subgraphs and its folder."""

    key: str
    subgraphs: dict[str, Subgraph]
    base_dir: Path | None
    label: str


@dataclass
class _Instance:
    """A subgraph node being expanded."""

    name: str
    definition: Subgraph
    inputs: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)  # a _Ref, or _FAILED


@dataclass
class FlatGraph:
    """The flattened workflow, the problems found while flattening, and where each flat
    node came from (``paths``: flat id → ids along the nesting, for inner nodes only)."""

    workflow: Workflow
    errors: list[GraphError]
    paths: dict[str, tuple[str, ...]]
    dropped: set[tuple[str, str]]

    def locate(self, errors: list[GraphError]) -> list[GraphError]:
        """This flattening's errors, then ``errors`` of the flat graph with their nesting
        paths, less the follow-ons of a problem already reported here."""
        located = list(self.errors)
        for error in errors:
            if error.code is ErrorCode.MISSING_INPUT and (error.node, error.input) in self.dropped:
                continue
            if error.code is ErrorCode.NO_OUTPUT and self.errors:
                continue  # the output nodes may be in a subgraph that did not expand
            path = self.paths.get(error.node or "")
            if path is not None:
                error = GraphError(error.code, error.message, error.node, error.input, path)
            located.append(error)
        return located


class _TooLarge(Exception):
    pass


def has_subgraphs(workflow: Workflow) -> bool:
    """True when some node of the workflow runs a subgraph (flattening is needed)."""
    for entry in workflow.nodes.values():
        if entry.type == SUBGRAPH_TYPE or entry.subgraph is not None or entry.file is not None:
            return True
    return False


def reads_files(workflow: Workflow) -> bool:
    """True when a node of the workflow, or of one of its subgraphs, takes its subgraph
    from another file (running it then depends on that file as it is now)."""
    bodies = [workflow.nodes] + [d.nodes for d in (workflow.subgraphs or {}).values()]
    return any(entry.file is not None for nodes in bodies for entry in nodes.values())


def flatten(workflow: Workflow, registry: Registry) -> FlatGraph:
    """Replace every subgraph node by its inner nodes (recursively); see the module text."""
    return _Flattener(workflow, registry).run(workflow)


def flat_document(document: dict, registry: Registry, base_dir: Path | None = None) -> dict:
    """A graphflow/1 document (JSON data) with every subgraph node replaced by its inner
    nodes: what an exporter to a format without graphflow's subgraphs writes (ComfyUI's API
    format has the same ``"12:3"`` ids). A document without subgraph nodes comes back as it
    is; one whose subgraphs cannot be expanded raises ValidationFailed."""
    workflow = workflow_from_dict(document)
    if not has_subgraphs(workflow):
        return document
    workflow.base_dir = base_dir
    flat = flatten(workflow, registry)
    if flat.errors:
        raise ValidationFailed(flat.errors)
    return flat.workflow.to_dict()


class _Flattener:
    def __init__(self, workflow: Workflow, registry: Registry):
        self.registry = registry
        self.types = registry.types
        self.top_ids = set(workflow.nodes)
        self.errors: list[GraphError] = []
        self.paths: dict[str, tuple[str, ...]] = {}
        self.dropped: set[tuple[str, str]] = set()
        self.nodes: dict[str, tuple[NodeEntry, dict[str, Any]]] = {}
        self.instances: dict[str, _Instance] = {}
        self.failed: set[str] = set()
        self.files: dict[Path, _Scope | str] = {}
        self.root = workflow.file_root
        self.memo: dict[_Ref, Any] = {}

    def run(self, workflow: Workflow) -> FlatGraph:
        scope = _Scope("", workflow.subgraphs or {}, workflow.base_dir, "this document")
        try:
            self._expand(workflow.nodes, "", (), scope, (), None)
        except _TooLarge:
            self.nodes.clear()
        for node_id, instance in self.instances.items():
            self._check_instance(node_id, instance)
        nodes = {
            node_id: self._resolved_entry(node_id, entry, inputs)
            for node_id, (entry, inputs) in self.nodes.items()
        }
        flat = Workflow(format=workflow.format, nodes=nodes, editor=workflow.editor)
        flat.base_dir = workflow.base_dir
        flat.file_root = workflow.file_root
        return FlatGraph(flat, self.errors, self.paths, self.dropped)

    # -- expansion ------------------------------------------------------------------------

    def _error(self, code: ErrorCode, message: str, node: str, name: str | None = None) -> None:
        self.errors.append(GraphError(code, message, node, name, self.paths.get(node, ())))

    def _expand(self, nodes, prefix, path, scope: _Scope, chain, parent: str | None) -> None:
        for node_id, entry in nodes.items():
            flat_id = prefix + node_id
            if prefix:
                self.paths[flat_id] = (*path, node_id)
                if not self._inner_id_ok(node_id, flat_id):
                    continue
            if len(self.nodes) + len(self.instances) >= MAX_NODES:
                self._error(
                    ErrorCode.INVALID_INPUT,
                    f"the subgraphs expand to more than {MAX_NODES:,} nodes",
                    flat_id,
                )
                raise _TooLarge
            inputs = {name: _ref(value, prefix, parent) for name, value in entry.inputs.items()}
            if entry.type != SUBGRAPH_TYPE:
                if entry.subgraph is not None or entry.file is not None:
                    self._error(
                        ErrorCode.INVALID_INPUT,
                        f"only nodes of type {SUBGRAPH_TYPE!r} take 'subgraph' or 'file'",
                        flat_id,
                    )
                self.nodes[flat_id] = (entry, inputs)
                continue
            found = self._definition(entry, scope, flat_id)
            if found is None or not self._nesting_ok(found, chain, flat_id):
                self.failed.add(flat_id)
                continue
            name, definition, inner_scope = found
            instance = _Instance(name, definition, inputs)
            for output in definition.outputs:
                source, output_name = output.source
                if source == INPUTS_NODE:
                    instance.outputs[output.name] = _Ref("in", flat_id, output_name)
                elif source in definition.nodes:
                    inner = _Ref("node", flat_id + SEPARATOR + source, output_name)
                    instance.outputs[output.name] = inner
                else:  # reported by _check_output; what it feeds is left unset
                    instance.outputs[output.name] = _FAILED
            self.instances[flat_id] = instance
            inner_chain = (*chain, (inner_scope.key, name))
            self._expand(
                definition.nodes,
                flat_id + SEPARATOR,
                self.paths.get(flat_id, (node_id,)),
                inner_scope,
                inner_chain,
                flat_id,
            )

    def _inner_id_ok(self, node_id: str, flat_id: str) -> bool:
        if SEPARATOR in node_id or node_id == INPUTS_NODE:
            problem = f"inner node ids may not contain {SEPARATOR!r} or be {INPUTS_NODE!r}"
        elif flat_id in self.top_ids:
            problem = f"the inner node's id {flat_id!r} is also a node of the workflow; rename one"
        else:
            return True
        self._error(ErrorCode.INVALID_INPUT, problem, flat_id)
        self.failed.add(flat_id)
        return False

    def _nesting_ok(self, found, chain, flat_id: str) -> bool:
        name, _, scope = found
        key = (scope.key, name)
        if key in chain:
            names = [n for _, n in chain[chain.index(key) :]] + [name]
            self._error(
                ErrorCode.CYCLE,
                "subgraphs refer to each other in a cycle: " + " → ".join(names),
                flat_id,
            )
            return False
        if len(chain) >= MAX_DEPTH:
            self._error(
                ErrorCode.INVALID_INPUT, f"subgraphs nest more than {MAX_DEPTH} deep", flat_id
            )
            return False
        return True

    def _definition(self, entry: NodeEntry, scope: _Scope, flat_id: str):
        """(id, subgraph, scope it came from) for a subgraph node, or None (error added)."""
        name = entry.subgraph
        if entry.file is not None:
            loaded = self._load_file(entry.file, scope, flat_id)
            if loaded is None:
                return None
            scope = loaded
            if name is None and len(scope.subgraphs) == 1:
                name = next(iter(scope.subgraphs))
        if name is None:
            needs = (
                f"'subgraph' (which of {', '.join(scope.subgraphs)} in {entry.file!r})"
                if entry.file is not None
                else "'subgraph' (the id of one in the document's subgraphs) or 'file'"
            )
            self._error(ErrorCode.UNKNOWN_NODE_TYPE, f"a subgraph node needs {needs}", flat_id)
            return None
        definition = scope.subgraphs.get(name)
        if definition is None:
            close = difflib.get_close_matches(name, list(scope.subgraphs), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            known = ", ".join(scope.subgraphs) or "none"
            self._error(
                ErrorCode.UNKNOWN_NODE_TYPE,
                f"no subgraph {name!r} in {scope.label}{hint} (subgraphs: {known})",
                flat_id,
            )
            return None
        return name, definition, scope

    def _load_file(self, reference: str, scope: _Scope, flat_id: str) -> _Scope | None:
        from .workflow import load_workflow

        path = ((scope.base_dir or Path.cwd()) / reference).resolve()
        if self.root is not None and not path.is_relative_to(self.root):
            self._error(
                ErrorCode.UNKNOWN_NODE_TYPE,
                f"subgraph file {reference!r} is outside the workflows folder; "
                "only files in it can be referenced here",
                flat_id,
            )
            return None
        if path not in self.files:
            try:
                document = load_workflow(path)
            except WorkflowFormatError as error:
                self.files[path] = f"cannot read subgraph file {reference!r}: {error}"
            else:
                if not document.subgraphs:
                    self.files[path] = f"subgraph file {reference!r} has no subgraphs section"
                else:
                    self.files[path] = _Scope(
                        str(path), document.subgraphs, path.parent, repr(reference)
                    )
        loaded = self.files[path]
        if isinstance(loaded, str):
            self._error(ErrorCode.UNKNOWN_NODE_TYPE, loaded, flat_id)
            return None
        return loaded

    # -- boundary checks ----------------------------------------------------------------

    def _check_instance(self, node_id: str, instance: _Instance) -> None:
        definition = instance.definition
        declared = {item.name: item for item in definition.inputs}
        kinds = {
            "input": [item.name for item in definition.inputs],
            "output": [item.name for item in definition.outputs],
        }
        for kind, names in kinds.items():
            for repeated in sorted({n for n in names if names.count(n) > 1}):
                self._error(
                    ErrorCode.INVALID_INPUT,
                    f"subgraph {instance.name!r} declares the {kind} {repeated!r} twice",
                    node_id,
                )
        for name in instance.inputs:
            if name not in declared:
                known = ", ".join(declared) or "none"
                self._error(
                    ErrorCode.UNKNOWN_INPUT,
                    f"subgraph {instance.name!r} has no input {name!r} (inputs: {known})",
                    node_id,
                    name,
                )
        for item in definition.inputs:
            if item.type not in self.types:
                self._error(
                    ErrorCode.INVALID_INPUT,
                    f"subgraph input {item.name!r} has the unknown type {item.type!r}",
                    node_id,
                )
                continue
            given = instance.inputs.get(item.name, _UNSET)
            if given is _UNSET:
                if not item.has_default:
                    self._error(
                        ErrorCode.MISSING_INPUT,
                        f"required {item.type} input is neither linked nor set",
                        node_id,
                        item.name,
                    )
                continue
            self._check_value(node_id, item.name, item.type, given)
        for output in definition.outputs:
            self._check_output(node_id, instance, output)

    def _check_output(self, node_id: str, instance: _Instance, output) -> None:
        source, name = output.source
        if source != INPUTS_NODE and source not in instance.definition.nodes:
            self._error(
                ErrorCode.LINK_MISSING_NODE,
                f"subgraph output {output.name!r} comes from node {source!r}, "
                "which is not in the subgraph",
                node_id,
            )
            return
        if output.type is None:
            return
        resolved = self._resolve(instance.outputs[output.name])
        found = self._output_type(resolved) if isinstance(resolved, Link) else None
        if found is not None and not self.types.can_connect(found, output.type):
            self._error(
                ErrorCode.TYPE_MISMATCH,
                f"subgraph output {output.name!r} is declared {output.type}, "
                f"but {source}.{name} is {found}",
                node_id,
            )

    def _check_value(self, node_id: str, name: str, wanted: str, given: Any) -> None:
        """A subgraph node's input against the type its subgraph declares."""
        if isinstance(given, _Ref):
            resolved = self._resolve(given)
            if isinstance(resolved, Link):
                found = self._output_type(resolved)
                if found is not None and not self.types.can_connect(found, wanted):
                    self._error(
                        ErrorCode.TYPE_MISMATCH,
                        f"output {resolved.node}.{resolved.output} is {found}, "
                        f"input needs {wanted}",
                        node_id,
                        name,
                    )
                return
            if not isinstance(resolved, _Value):
                return
            given = resolved.value
        if given is None:
            return
        if not self.types.takes_literals(wanted):
            message = f"{wanted} input takes a link from another node, not the value {given!r}"
        elif not self.types.accepts_literal(wanted, given):
            message = f"expects {wanted}, got {type(given).__name__} {_short(given)}"
        else:
            return
        self._error(ErrorCode.INVALID_LITERAL, message, node_id, name)

    def _output_type(self, link: Link) -> str | None:
        found = self.nodes.get(link.node)
        spec = self.registry.get(found[0].type) if found is not None else None
        output = spec.outputs_by_name.get(link.output) if spec is not None else None
        return output.type if output is not None else None

    # -- resolution ---------------------------------------------------------------------

    def _resolve(self, ref: _Ref) -> Any:
        """Follow a reference across boundaries to a Link, a _Value, _UNSET, _FAILED or a
        _Problem for the consumer to report."""
        seen: list[_Ref] = []
        current: Any = ref
        while isinstance(current, _Ref):
            if current in self.memo:
                current = self.memo[current]
                break
            if current in seen:
                current = _Problem(
                    ErrorCode.CYCLE,
                    f"links form a cycle through subgraph node {current.node!r}",
                )
                break
            seen.append(current)
            current = self._step(current)
        for item in seen:
            self.memo[item] = current
        return current

    def _step(self, ref: _Ref) -> Any:
        instance = self.instances.get(ref.node)
        if ref.kind == "node":
            if instance is None:
                return _FAILED if ref.node in self.failed else Link(link=(ref.node, ref.name))
            if ref.name not in instance.outputs:
                known = ", ".join(instance.outputs) or "none"
                return _Problem(
                    ErrorCode.LINK_MISSING_OUTPUT,
                    f"subgraph node {ref.node!r} ({instance.name}) has no output "
                    f"{ref.name!r} (outputs: {known})",
                )
            return instance.outputs[ref.name]
        declared = {item.name: item for item in instance.definition.inputs}
        item = declared.get(ref.name)
        if item is None:
            known = ", ".join(declared) or "none"
            return _Problem(
                ErrorCode.LINK_MISSING_OUTPUT,
                f"subgraph {instance.name!r} has no input {ref.name!r} (inputs: {known})",
            )
        given = instance.inputs.get(ref.name, _UNSET)
        if given is _UNSET:
            if item.has_default:
                return _Value(item.default)
            return _FAILED  # reported on the subgraph node as a missing input
        return given if isinstance(given, _Ref) else _Value(given)

    def _resolved_entry(self, node_id: str, entry: NodeEntry, inputs: dict) -> NodeEntry:
        spec = self.registry.get(entry.type)
        resolved: dict[str, Any] = {}
        for name, value in inputs.items():
            if not isinstance(value, _Ref):
                resolved[name] = value
                continue
            if value.kind == "in" and spec is not None and name in spec.inputs_by_name:
                self._check_reader(node_id, name, value, spec.inputs_by_name[name].type)
            result = self._resolve(value)
            if isinstance(result, Link):
                resolved[name] = result
            elif isinstance(result, _Value):
                resolved[name] = result.value
            elif result is not _UNSET:
                self.dropped.add((node_id, name))
                if isinstance(result, _Problem):
                    self._error(result.code, result.message, node_id, name)
        return NodeEntry.model_construct(
            type=entry.type, subgraph=None, file=None, inputs=resolved, title=entry.title
        )

    def _check_reader(self, node_id: str, name: str, ref: _Ref, wanted: str) -> None:
        """An inner input reading a subgraph input must take the type declared for it."""
        instance = self.instances[ref.node]
        for item in instance.definition.inputs:
            if item.name == ref.name and not self.types.can_connect(item.type, wanted):
                self._error(
                    ErrorCode.TYPE_MISMATCH,
                    f"subgraph input {item.name!r} is {item.type}, input needs {wanted}",
                    node_id,
                    name,
                )


def _ref(value: Any, prefix: str, parent: str | None) -> Any:
    if not isinstance(value, Link):
        return value
    if value.node == INPUTS_NODE and parent is not None:
        return _Ref("in", parent, value.output)
    return _Ref("node", prefix + value.node, value.output)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
