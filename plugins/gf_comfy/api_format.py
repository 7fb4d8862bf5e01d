"""ComfyUI's API format (a "prompt") ⇄ graphflow/1 documents.

A prompt is ``{node id: {"class_type": "KSampler", "inputs": {...}, "_meta": {"title": ...}}}``.
It maps 1:1 onto graphflow: node ids are kept (any string, ``"55:52"`` too), the class type
becomes the graphflow node declared for it in :data:`gf_comfy.names.CLASSES` (a graphflow
node id such as ``core.add`` is accepted too), a link ``["4", 0]`` becomes ``{"link": ["4",
<name of output 0>]}``, and literal values are coerced as ComfyUI's validation does
(``int()``, ``float()``, ``str()``, ``bool()`` for number, text and boolean widgets; ints
stay exact, so seeds up to 2^64 − 1 survive). Inputs the class type does not have are
dropped, as ComfyUI ignores them. Every class type graphflow lacks is listed in one error
with its node ids; other problems (bad links, nodes without class_type) are listed too.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from graphflow.errors import ErrorCode, GraphError, ValidationFailed, WorkflowFormatError
from graphflow.node import NodeSpec
from graphflow.registry import Registry

from . import names

PLAIN_TYPES = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}
"""A widget type's Python type: what ComfyUI's validation converts its values with."""
_SUBMIT_KEYS = {"prompt", "client_id", "extra_data", "prompt_id", "number", "front"}


def spec_for(registry: Registry, class_type: Any) -> NodeSpec | None:
    """The graphflow spec of a ComfyUI class type (or of a graphflow node id), or None."""
    if not isinstance(class_type, str):
        return None
    entry = names.CLASSES.get(class_type)
    if entry is not None:
        return registry.get(entry.spec.id)
    return registry.get(class_type)


def class_type_of(node_type: str) -> str:
    """The ComfyUI class type of a graphflow node id (the id itself when it has none)."""
    entry = names.BY_NODE_ID.get(node_type)
    return entry.class_type if entry is not None else node_type


def _unwrap(doc: Any) -> Any:
    """A saved ``POST /prompt`` body (``{"prompt": {...}, "client_id": ...}``) → its prompt."""
    if (
        isinstance(doc, dict)
        and "prompt" in doc
        and set(doc) <= _SUBMIT_KEYS | {"partial_execution_targets"}
    ):
        inner = doc["prompt"]
        if isinstance(inner, dict) and _looks_like_nodes(inner):
            return inner
    return doc


def _looks_like_nodes(doc: dict) -> bool:
    return (
        bool(doc)
        and all(
            isinstance(node, dict) and ("class_type" in node or "inputs" in node)
            for node in doc.values()
        )
        and any(isinstance(node, dict) and "class_type" in node for node in doc.values())
    )


def is_api_prompt(doc: Any) -> bool:
    """True for a ComfyUI API-format prompt (or a saved ``POST /prompt`` body holding one)."""
    doc = _unwrap(doc)
    return isinstance(doc, dict) and "format" not in doc and _looks_like_nodes(doc)


def count_nodes(doc: Any) -> int:
    """The number of nodes of a prompt."""
    doc = _unwrap(doc)
    return len(doc) if isinstance(doc, dict) else 0


def is_link(value: Any) -> bool:
    """A ComfyUI link: ``[source node id, output index]``."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], (str, int))
        and not isinstance(value[0], bool)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def coerce(spec: NodeSpec, name: str, value: Any) -> Any:
    """A literal as ComfyUI stores it after validation (``8.7`` → 8 for an INT, ``"9"`` → 9).

    ``{"__value__": [...]}`` is unwrapped; values that do not convert are kept as they are,
    for graphflow's validation to report.
    """
    if isinstance(value, dict) and set(value) == {"__value__"}:
        value = value["__value__"]
    item = spec.inputs_by_name[name]
    convert = PLAIN_TYPES.get(item.type)
    if convert is None or item.choices is not None or isinstance(value, (list, dict)):
        return value
    if type(value) is convert or value is None:
        return value  # an int stays the very int (seeds up to 2^64 − 1)
    try:
        converted = convert(value)
    except (TypeError, ValueError, OverflowError):
        return value
    return converted


def missing_class_error(missing: Mapping[str, list[str]]) -> GraphError:
    """One error listing every unknown class type with the ids of the nodes using it (and
    the known class type it is closest to, for a typo)."""
    parts = []
    for class_type, node_ids in missing.items():
        ids = ", ".join(node_ids)
        close = difflib.get_close_matches(class_type, names.CLASSES, n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else ""
        parts.append(f"{class_type} (node{'s' if len(node_ids) > 1 else ''} {ids}{hint})")
    return GraphError(
        ErrorCode.UNKNOWN_NODE_TYPE,
        f"{len(missing)} ComfyUI class type{'s' if len(missing) > 1 else ''} graphflow does "
        f"not have: {'; '.join(parts)}",
    )


def _link(prompt: dict, registry: Registry, node_id: str, name: str, value: list):
    """(``{"link": [...]}`` or None, problem or None) for a link ``[source, index]``."""
    source = str(value[0])
    if source not in prompt:
        return None, GraphError(
            ErrorCode.LINK_MISSING_NODE,
            f"links to node {source!r}, which is not in the prompt",
            node_id,
            name,
        )
    source_node = prompt[source]
    spec = spec_for(
        registry, source_node.get("class_type") if isinstance(source_node, dict) else None
    )
    if spec is None:
        return None, None  # the unknown source is reported once, with the class types
    index = value[1]
    if not 0 <= index < len(spec.outputs):
        return None, GraphError(
            ErrorCode.LINK_MISSING_OUTPUT,
            f"links to output {index} of node {source!r}, which has {len(spec.outputs)} "
            f"output{'s' if len(spec.outputs) != 1 else ''}",
            node_id,
            name,
        )
    return {"link": [source, spec.outputs[index].name]}, None


def _entry(prompt: dict, registry: Registry, node_id: str, node: dict, spec: NodeSpec, problems):
    inputs: dict[str, Any] = {}
    given = node.get("inputs") or {}
    if not isinstance(given, dict):
        problems.append(GraphError(ErrorCode.INVALID_DOCUMENT, "inputs is not an object", node_id))
        given = {}
    for name, value in given.items():
        if name not in spec.inputs_by_name:
            continue  # ComfyUI keeps and ignores inputs its class type lacks
        if is_link(value):
            link, problem = _link(prompt, registry, node_id, name, value)
            if problem is not None:
                problems.append(problem)
            if link is not None:
                inputs[name] = link
        else:
            inputs[name] = coerce(spec, name, value)
    return {"type": spec.id, "inputs": inputs, **title_entry(node, spec)}


def title_entry(node: dict, spec: NodeSpec) -> dict:
    """``{"title": ...}`` when a prompt node's ``_meta.title`` is not its display name, else
    ``{}`` (the frontend always writes a title; the default one is not kept)."""
    meta = node.get("_meta")
    title = meta.get("title") if isinstance(meta, dict) else None
    comfy = names.BY_NODE_ID.get(spec.id)
    display = (comfy.display_name if comfy else None) or spec.display_name
    return {"title": title} if isinstance(title, str) and title != display else {}


def api_to_graphflow(
    prompt: Any,
    registry: Registry,
    *,
    png_texts: Mapping[str, str] | None = None,
    editor: dict | None = None,
) -> dict:
    """A ComfyUI API prompt → a graphflow/1 document (raises ValidationFailed listing all).

    The original prompt is kept in ``editor.comfy.prompt``; ``png_texts`` (the PNG's other
    text chunks, e.g. ComfyUI's ``workflow``) become ``editor.comfy.extra_pnginfo``.
    """
    prompt = _unwrap(prompt)
    if not isinstance(prompt, dict):
        raise WorkflowFormatError("a ComfyUI prompt must be an object of node id → node")
    missing: dict[str, list[str]] = {}
    problems: list[GraphError] = []
    nodes: dict[str, dict] = {}
    for node_id, node in prompt.items():
        if not isinstance(node, dict):
            problems.append(GraphError(ErrorCode.INVALID_DOCUMENT, "is not an object", node_id))
            continue
        class_type = node.get("class_type")
        if not isinstance(class_type, str) or not class_type:
            problems.append(
                GraphError(ErrorCode.UNKNOWN_NODE_TYPE, "has no class_type property", node_id)
            )
            continue
        spec = spec_for(registry, class_type)
        if spec is None:
            missing.setdefault(class_type, []).append(node_id)
            continue
        nodes[node_id] = _entry(prompt, registry, node_id, node, spec, problems)
    if missing:
        problems.insert(0, missing_class_error(missing))
    elif problems:  # the links that failed are reported: say what else is wrong as well
        problems.extend(_other_problems(nodes, registry, problems))
    if problems:
        raise ValidationFailed(problems)
    comfy: dict[str, Any] = {"prompt": prompt}
    extra = _extra_pnginfo(png_texts)
    if "workflow" in extra:
        comfy["workflow"] = extra["workflow"]
    if extra:
        comfy["extra_pnginfo"] = extra
    document_editor = dict(editor or {})
    document_editor["comfy"] = {**comfy, **document_editor.get("comfy", {})}
    return {"format": "graphflow/1", "nodes": nodes, "editor": document_editor}


def _other_problems(nodes: dict, registry: Registry, known: list[GraphError]) -> list:
    """graphflow's findings on the mapped nodes, less those that restate a known problem
    (an input whose link was refused is missing, by the same cause; so are the inputs of a
    node whose ``inputs`` was not an object)."""
    from graphflow.graph import validate
    from graphflow.workflow import workflow_from_dict

    reported = {(problem.node, problem.input) for problem in known}
    whole = {problem.node for problem in known if problem.input is None}
    try:
        _, errors = validate(
            workflow_from_dict({"format": "graphflow/1", "nodes": nodes}), registry
        )
    except (WorkflowFormatError, RecursionError):
        return []  # the known problems stand alone
    return [
        error
        for error in errors
        if (error.node, error.input) not in reported and error.node not in whole
    ]


def _extra_pnginfo(png_texts: Mapping[str, str] | None) -> dict:
    """ComfyUI writes one PNG chunk per ``extra_pnginfo`` key (JSON); read them back."""
    import json

    extra: dict[str, Any] = {}
    for key, text in (png_texts or {}).items():
        if key == "prompt" or key.startswith("graphflow_"):
            continue
        try:
            extra[key] = json.loads(text)
        except ValueError:
            continue  # another tool's plain-text chunk (e.g. A1111 "parameters")
    return extra


def graphflow_to_api(doc: dict, registry: Registry) -> dict:
    """A graphflow/1 document (JSON data) → a ComfyUI API prompt.

    ComfyUI-named nodes get their class type; graphflow's own nodes keep their node id as
    the class type. Links become ``[source, output index]``; list values are wrapped as
    ``{"__value__": [...]}``; ``_meta.title`` is the node's title, else its display name.
    """
    from graphflow.subgraphs import flat_document

    doc = flat_document(doc, registry)  # ComfyUI's API format has no subgraphs: "12:3" ids
    prompt: dict[str, dict] = {}
    nodes = doc.get("nodes") or {}
    for node_id, entry in nodes.items():
        spec = registry.get(entry["type"])
        inputs: dict[str, Any] = {}
        for name, value in (entry.get("inputs") or {}).items():
            if isinstance(value, dict) and set(value) == {"link"}:
                inputs[name] = _api_link(nodes, registry, node_id, value["link"])
            elif isinstance(value, list):
                inputs[name] = {"__value__": value}
            else:
                inputs[name] = value
        title = entry.get("title") or (spec.display_name if spec else entry["type"])
        prompt[node_id] = {
            "inputs": inputs,
            "class_type": class_type_of(entry["type"]),
            "_meta": {"title": title},
        }
    return prompt


def _api_link(nodes: dict, registry: Registry, node_id: str, link: list) -> list:
    source, output = link
    source_entry = nodes.get(source)
    spec = registry.get(source_entry["type"]) if source_entry else None
    if spec is None or output not in spec.outputs_by_name:
        raise WorkflowFormatError(
            f"node {node_id!r} links to {source}.{output}, which no registered node has"
        )
    return [source, [o.name for o in spec.outputs].index(output)]
