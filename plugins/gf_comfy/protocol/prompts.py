"""``POST /prompt`` bodies: an API-format prompt → a graphflow/1 document, checked and
reported in ComfyUI's error shapes (``error`` + ``node_errors``, every problem listed).

A class type is a ComfyUI name declared in :data:`gf_comfy.names.CLASSES` or, as an
extension, a graphflow node id (``core.add``). Lookups, coercion and titles are the API-format
importer's (:mod:`gf_comfy.api_format`); the checks here keep ComfyUI's per-node error
shapes and partial validity, which a whole-document importer cannot give. A link
``["4", 0]`` becomes ``{"link": ["4", <name of output 0>]}``; node ids are kept, so
``executing.node`` is the prompt's id. Values are coerced as ComfyUI does (``int()``,
``float()``, ``str()``, ``bool()``), seeds stay Python ints (never floats). graphflow then
validates the document and its findings are rendered per COMFY_COMPAT §2.3; outputs whose
ancestors are all valid still run (200 with ``node_errors``), as in ComfyUI.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from graphflow.errors import ErrorCode, GraphError, WorkflowFormatError
from graphflow.gcpause import gc_paused
from graphflow.graph import ValidatedGraph, validate
from graphflow.node import NodeSpec
from graphflow.registry import Registry
from graphflow.workflow import workflow_from_dict

from ..api_format import PLAIN_TYPES, coerce, spec_for, title_entry
from .errors import err as _err
from .errors import input_config, render_graph_error


class PromptRefused(Exception):
    """A prompt refused with ComfyUI's 400 body ``{"error": {...}, "node_errors": {...}}``."""

    def __init__(
        self,
        kind: str,
        message: str,
        details: str = "",
        node_errors: dict | None = None,
        status: int = 400,
    ):
        super().__init__(message)
        self.status = status
        self.body = {
            "error": {"type": kind, "message": message, "details": details, "extra_info": {}},
            "node_errors": node_errors or {},
        }


Converted = tuple[dict, dict, dict[str, list[dict]], set[tuple[str, str]]]
"""What :func:`convert_prompt` gives: document, coerced prompt, problems, bad inputs."""


@dataclass
class Accepted:
    """A prompt that will run: its document, what runs, and the errors of skipped outputs."""

    document: dict
    prompt: dict
    outputs: list[str]
    validated: ValidatedGraph
    node_errors: dict = field(default_factory=dict)
    partial: bool = False
    """Only some outputs run (targets given, or others invalid): the job's ``outputs``."""
    converted: Converted | None = None
    """The prompt's conversion, for :class:`Conversions` (never changed by a job)."""


class Conversions:
    """The last few ``POST /prompt`` bodies, parsed and converted, keyed by the digest of
    their bytes: a client that queues the same prompt again (the common "queue again")
    skips parsing and converting it. Entries are never changed once stored (each job gets
    its own top-level document and problem lists); bodies over ``max_body`` bytes are not
    kept, nor more than ``max_entries``."""

    def __init__(self, max_entries: int = 8, max_body: int = 256 << 10):
        self.max_entries = max_entries
        self.max_body = max_body
        self._entries: OrderedDict[bytes, tuple[Registry, Any, Converted | None]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(raw: bytes) -> bytes:
        """The cache key of a body's bytes."""
        return hashlib.blake2b(raw, digest_size=20).digest()

    def get(self, key: bytes, registry: Registry) -> tuple[Any, Converted | None] | None:
        """(parsed body, conversion or None) of a body seen before with this registry."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] is not registry:
                return None
            self._entries.move_to_end(key)
            return entry[1], entry[2]

    def put(
        self, key: bytes, size: int, registry: Registry, body: Any, converted: Converted | None
    ) -> None:
        """Keep a parsed body and its conversion (None: not converted, e.g. refused)."""
        if size > self.max_body:
            return
        with self._lock:
            self._entries[key] = (registry, body, converted)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


def check_shape(prompt: Any) -> None:
    """Refuse a UI-format workflow (with a message saying what to do) or a non-object."""
    if isinstance(prompt, dict) and isinstance(prompt.get("nodes"), list) and "links" in prompt:
        raise PromptRefused(
            "invalid_prompt",
            "This is a UI-format workflow (litegraph 'nodes' and 'links'); /prompt takes the API"
            " format. Queue it as it is on graphflow's own POST /api/prompt (it reads UI files),"
            " convert it with `graphflow convert WORKFLOW OUT --to comfy-api`, or run it with"
            " `graphflow run WORKFLOW`.",
        )
    if not isinstance(prompt, dict):
        raise PromptRefused("invalid_prompt", "'prompt' must be an object of node id → node")


def _class_problems(registry: Registry, prompt: dict) -> tuple[dict, dict[str, NodeSpec]]:
    problems: dict[str, dict] = {}
    specs: dict[str, NodeSpec] = {}
    for node_id, node in prompt.items():
        spec = spec_for(registry, node.get("class_type")) if isinstance(node, dict) else None
        if spec is not None:
            specs[node_id] = spec
        if not isinstance(node, dict) or "class_type" not in node:
            problems[node_id] = _err(
                "invalid_prompt",
                "Cannot execute because a node is missing the class_type property.",
                f"Node ID '#{node_id}'",
            )
        elif spec is None:
            problems[node_id] = _err(
                "missing_node_type",
                f"Cannot execute because node {node['class_type']} does not exist.",
                f"Node ID '#{node_id}'",
                class_type=node["class_type"],
            )
        elif not isinstance(node.get("inputs", {}), dict):
            problems[node_id] = _err(
                "invalid_prompt", "A node's 'inputs' must be an object.", f"Node ID '#{node_id}'"
            )
    return problems, specs


def convert_prompt(
    prompt: dict, specs: dict[str, NodeSpec]
) -> tuple[dict, dict, dict[str, list[dict]], set[tuple[str, str]]]:
    """The graphflow/1 document of a checked prompt, the coerced prompt, the problems found
    while converting (per node id) and the (node, input) pairs they concern."""
    nodes: dict[str, dict] = {}
    coerced: dict[str, dict] = {}
    problems: dict[str, list[dict]] = {}
    bad: set[tuple[str, str]] = set()
    for node_id, node in prompt.items():
        spec = specs[node_id]
        by_name = spec.inputs_by_name
        given = node.get("inputs") or {}
        inputs: dict[str, Any] = {}
        changed: dict | None = None  # the node's inputs, copied only if coercion changes one
        for name, value in given.items():
            item = by_name.get(name)
            if item is None:
                continue  # ComfyUI keeps unknown inputs and ignores them
            if type(value) is list:
                link, error = _fast_link(specs, value) or _link(specs, spec, name, value)
                if error is not None:
                    problems.setdefault(node_id, []).append(error)
                    bad.add((node_id, name))
                else:
                    inputs[name] = link
                continue
            if type(value) is not PLAIN_TYPES.get(item.type):
                # As ComfyUI stores it; a value that does not convert is graphflow's to report.
                new = coerce(spec, name, value)
                if new is not value:
                    changed = changed if changed is not None else dict(given)
                    changed[name] = value = new
            inputs[name] = value
        nodes[node_id] = {"type": spec.id, "inputs": inputs}
        if "_meta" in node:
            nodes[node_id].update(title_entry(node, spec))
        coerced[node_id] = node if changed is None else {**node, "inputs": changed}
    return {"format": "graphflow/1", "nodes": nodes}, coerced, problems, bad


def _fast_link(specs: dict[str, NodeSpec], value: list) -> tuple[dict, None] | None:
    """The common, well-formed link ``["4", 0]``; None for anything :func:`_link` must check."""
    if len(value) != 2 or type(value[0]) is not str or type(value[1]) is not int:
        return None
    source = specs.get(value[0])
    if source is None or not 0 <= value[1] < len(source.outputs):
        return None
    return {"link": [value[0], source.outputs[value[1]].name]}, None


def _link(
    specs: dict[str, NodeSpec], spec: NodeSpec, name: str, value: list
) -> tuple[dict | None, dict | None]:
    if len(value) != 2 or not isinstance(value[1], int) or isinstance(value[1], bool):
        return None, _err(
            "bad_linked_input",
            "Bad linked input, must be a length-2 list of [node_id, slot_index]",
            name,
            input_name=name,
            input_config=input_config(spec, name),
            received_value=value,
        )
    source, index = str(value[0]), value[1]
    source_spec = specs.get(source)
    if source_spec is None:
        return None, _err(
            "exception_during_validation",
            "Exception when validating node",
            f"input {name!r} links to node {source!r}, which is not in the prompt",
            exception_type="KeyError",
            traceback=[],
        )
    if not 0 <= index < len(source_spec.outputs):
        return None, _err(
            "exception_during_validation",
            "Exception when validating node",
            f"input {name!r} links to output {index} of node {source!r}, which has "
            f"{len(source_spec.outputs)} output(s)",
            exception_type="IndexError",
            traceback=[],
        )
    return {"link": [source, source_spec.outputs[index].name]}, None


def _cycles(document: dict) -> dict[str, list[str]]:
    """Node id → the loop it lies on (``a → b → a``), for every node on a cycle."""
    import networkx as nx

    graph = nx.DiGraph()
    for node_id, node in document["nodes"].items():
        for value in node["inputs"].values():
            if isinstance(value, dict) and "link" in value:
                graph.add_edge(value["link"][0], node_id)
    found: dict[str, list[str]] = {}
    for component in nx.strongly_connected_components(graph):
        if len(component) == 1 and not graph.has_edge(*(next(iter(component)),) * 2):
            continue
        edges = nx.find_cycle(graph.subgraph(component))
        path = [edge[0] for edge in edges] + [edges[0][0]]
        for node_id in component:
            found[node_id] = path
    return found


def _ancestors(document: dict, start: str) -> set[str]:
    seen = {start}
    stack = [start]
    nodes = document["nodes"]
    while stack:
        for value in nodes.get(stack.pop(), {}).get("inputs", {}).values():
            if isinstance(value, dict) and "link" in value:
                source = value["link"][0]
                if source not in seen:
                    seen.add(source)
                    stack.append(source)
    return seen


def output_nodes(registry: Registry, document: dict) -> list[str]:
    """The document's output nodes, in document order."""
    nodes = document["nodes"]
    return [
        node_id
        for node_id, node in nodes.items()
        if (spec := registry.get(node["type"])) is not None and spec.output_node
    ]


def _validate(document: dict, registry: Registry) -> tuple[ValidatedGraph | None, list]:
    try:
        return validate(workflow_from_dict(document), registry)
    except (WorkflowFormatError, RecursionError) as error:
        return None, [GraphError(ErrorCode.INVALID_DOCUMENT, str(error))]


def accept(
    registry: Registry,
    prompt: Any,
    targets: Iterable[str] | None = None,
    editor: Callable[[dict, list[str]], dict] | None = None,
    converted: Converted | None = None,
) -> Accepted:
    """Check a prompt as ComfyUI's ``POST /prompt`` does (raises :class:`PromptRefused`).

    ``editor(coerced_prompt, outputs)`` gives the document's editor data (what nodes read
    as ``ctx.workflow["editor"]``, e.g. the prompt for SaveImage's PNG chunks).
    ``converted``: this very prompt's earlier :attr:`Accepted.converted` (it is not
    converted again; validation always runs, as the files behind choices may change)."""
    with gc_paused():  # converting allocates many small, cycle-free objects
        return _accept(registry, prompt, targets, editor, converted)


def _convert(registry: Registry, prompt: Any) -> Converted:
    check_shape(prompt)
    unknown, specs = _class_problems(registry, prompt)
    if unknown:
        first = next(iter(unknown.values()))
        raise PromptRefused(
            "invalid_prompt",
            first["message"],
            "; ".join(f"#{node_id}: {err['message']}" for node_id, err in unknown.items()),
            {
                node_id: {
                    "errors": [err],
                    "dependent_outputs": [],
                    "class_type": (prompt[node_id] or {}).get("class_type")
                    if isinstance(prompt[node_id], dict)
                    else None,
                }
                for node_id, err in unknown.items()
            },
        )
    return convert_prompt(prompt, specs)


def _accept(
    registry: Registry,
    prompt: Any,
    targets: Iterable[str] | None,
    editor: Callable[[dict, list[str]], dict] | None,
    converted: Converted | None,
) -> Accepted:
    if converted is None:
        converted = _convert(registry, prompt)
    shared, coerced, found, seen = converted
    # This job's own document and problem lists: the conversion may serve later prompts.
    document = {"format": "graphflow/1", "nodes": shared["nodes"]}
    problems = {node_id: list(errs) for node_id, errs in found.items()}
    outputs = output_nodes(registry, document)
    if targets is not None:
        wanted = {str(t) for t in targets}
        outputs = [node_id for node_id in outputs if node_id in wanted]
    if not outputs:
        raise PromptRefused("prompt_no_outputs", "Prompt has no outputs")
    validated, errors = _validate(document, registry)
    whole = [e for e in errors if e.node is None and e.code is ErrorCode.INVALID_DOCUMENT]
    if whole:
        raise PromptRefused("invalid_prompt", whole[0].message)
    cycles = _cycles(document) if any(e.code is ErrorCode.CYCLE for e in errors) else {}
    for error in errors:
        if error.code is ErrorCode.CYCLE:
            for node_id in dict.fromkeys(cycles.get(error.node or "", [error.node])):
                problems.setdefault(node_id, []).append(
                    render_graph_error(
                        error, document, registry, {node_id: cycles.get(node_id, [])}
                    )
                )
            continue
        node_id = error.node or ""
        if (node_id, error.input) in seen or node_id not in document["nodes"]:
            continue  # a bad link already reported; the missing input is the same problem
        problems.setdefault(node_id, []).append(render_graph_error(error, document, registry, {}))
    accepted = _accept_valid_outputs(
        registry, document, coerced, outputs, problems, validated, targets
    )
    if editor is not None:  # editor data never changes validity: set it on both forms
        data = editor(coerced, accepted.outputs)
        accepted.document["editor"] = data
        accepted.validated.workflow.editor = data
    accepted.converted = converted
    return accepted


def _accept_valid_outputs(
    registry: Registry,
    document: dict,
    coerced: dict,
    outputs: list[str],
    problems: dict[str, list[dict]],
    validated: ValidatedGraph | None,
    targets: Iterable[str] | None,
) -> Accepted:
    if not problems and validated is not None:  # the common case: everything runs
        return Accepted(document, coerced, outputs, validated, {}, targets is not None)
    ancestry = {out: _ancestors(document, out) for out in outputs}
    good = [out for out in outputs if not ancestry[out] & problems.keys()]
    node_errors = {
        node_id: {
            "errors": errs,
            "dependent_outputs": [out for out in outputs if node_id in ancestry[out]],
            "class_type": coerced[node_id]["class_type"],
        }
        for node_id, errs in problems.items()
    }
    if not good:
        own = [
            f"{err['message']}: {err['details']}"
            for out in outputs
            for err in problems.get(out, [])
        ]
        raise PromptRefused(
            "prompt_outputs_failed_validation",
            "Prompt outputs failed validation",
            "\n".join(own),
            node_errors,
        )
    if problems or validated is None:
        keep = set().union(*(ancestry[out] for out in good))
        document = {
            "format": "graphflow/1",
            "nodes": {k: v for k, v in document["nodes"].items() if k in keep},
        }
        validated, errors = _validate(document, registry)
        if validated is None:  # cannot happen when the pruned part was clean; say so plainly
            raise PromptRefused(
                "prompt_outputs_failed_validation",
                "Prompt outputs failed validation",
                "\n".join(str(e) for e in errors),
                node_errors,
            )
    partial = bool(problems) or targets is not None
    return Accepted(document, coerced, good, validated, node_errors, partial)
