"""ComfyUI's UI format (a litegraph "workflow") → its API prompt, in Python.

ComfyUI can only do this in its browser frontend (``graphToPrompt``); this is the same
conversion on the server side, rule by rule as COMFY_COMPAT.md §4.3 describes it:

1. subgraph instances are expanded into their inner nodes, ids ``"<instance>:<inner>"``
   (``ui_subgraphs.py``);
2. virtual nodes (Reroute, PrimitiveNode, Note, MarkdownNote) and muted (mode 2) and
   bypassed (mode 4) nodes are not emitted;
3. ``widgets_values`` are read positionally over the node's widgets, built from its class
   type's inputs in order (number, text, boolean and combo inputs that are not
   ``force_input``), with the hidden ``control_after_generate`` slot after ``seed`` /
   ``noise_seed`` INTs and flagged inputs, and the hidden ``upload`` slot after
   ``image_upload`` inputs; a control slot holding no control value (old files) is not
   consumed, ``true`` (old files' "randomize") is; missing values take the spec default;
4. text widgets with dynamic prompts are sent with comments removed and ``{a|b}`` chosen;
5. list values are wrapped as ``{"__value__": [...]}``;
6. a PrimitiveNode's value is written into the widget it feeds;
7. links are resolved through Reroutes, through bypassed nodes (same slot if its type fits,
   else the first input of the wanted type, else the first compatible one), and across
   subgraph boundaries; a link to a muted or missing node, or through a bypass with no
   match, removes the input;
8. ``_meta.title`` is the node's title, else its class type's display name.

Groups, positions, colours and native link reroutes are geometry only and ignored.
The control_after_generate setting is not applied: the stored seed is run.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from graphflow.errors import ErrorCode, GraphError, ValidationFailed, WorkflowFormatError
from graphflow.node import REQUIRED, NodeSpec
from graphflow.registry import Registry
from graphflow.types import ANY_TYPE

from . import names
from .api_format import api_to_graphflow, spec_for
from .dynprompt import expand_dynamic_prompt
from .ui_subgraphs import BYPASSED, MUTED, WIDGET_TYPES, FlatNode, Flattener, Source

VIRTUAL_TYPES = frozenset({"Reroute", "PrimitiveNode", "Note", "MarkdownNote"})
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize", "increment-wrap"})
SEED_NAMES = frozenset({"seed", "noise_seed"})
LEGACY_GROUP_PREFIXES = ("workflow>", "workflow/")


def is_ui_workflow(doc: Any) -> bool:
    """True for a litegraph UI workflow (``nodes`` as a list, plus ``links``)."""
    return (
        isinstance(doc, dict)
        and "format" not in doc
        and isinstance(doc.get("nodes"), list)
        and ("links" in doc or "version" in doc or "last_node_id" in doc)
    )


def count_nodes(doc: Any) -> int:
    """The number of top-level nodes of a UI workflow."""
    return len(doc.get("nodes") or []) if isinstance(doc, dict) else 0


# -- links ----------------------------------------------------------------------------------


def types_match(a: str, b: str) -> bool:
    """ComfyUI's link type rule: equal, ``*`` (or empty), or comma-separated sets meeting."""
    if a in ("*", "") or b in ("*", "") or a == b:
        return True
    return bool(set(a.split(",")) & set(b.split(",")))


def _through_bypass(node: FlatNode, slot: int, wanted: str) -> Source | None:
    """The source a bypassed node passes on for its output ``slot`` of type ``wanted``."""
    out_type = node.output_types[slot] if slot < len(node.output_types) else "*"
    if slot < len(node.inputs):
        same = node.inputs[slot]
        if types_match(same.type, out_type) and types_match(same.type, wanted):
            return same.source
    for item in node.inputs:
        if item.type == wanted:
            return item.source
    for item in node.inputs:
        if types_match(item.type, wanted):
            return item.source
    return None


def resolve(
    nodes: Mapping[str, FlatNode], aliases: Mapping, source: Source | None, wanted: str
) -> Source | None:
    """Follow a link to the node that really produces it (None: nothing does)."""
    seen: set[tuple[str, int]] = set()
    while source is not None and source[0] == "node":
        key = (source[1], source[2])
        if key in seen:
            return None
        seen.add(key)
        if key in aliases:
            source = aliases[key]
            continue
        origin = nodes.get(source[1])
        if origin is None or origin.mode == MUTED:
            return None
        if origin.type == "Reroute":
            source = origin.inputs[0].source if origin.inputs else None
        elif origin.type == "PrimitiveNode":
            values = origin.widgets_values
            return ("value", values[0]) if isinstance(values, list) and values else None
        elif origin.mode == BYPASSED:
            source = _through_bypass(origin, source[2], wanted)
        elif origin.type in VIRTUAL_TYPES:
            return None
        else:
            return source
    return source


# -- widgets --------------------------------------------------------------------------------


def widget_slots(spec: NodeSpec, comfy: names.ComfyClass | None) -> list[tuple[str, str]]:
    """The node's frontend widgets in ``widgets_values`` order: (input name, kind), kind
    being ``widget``, ``control`` (hidden control_after_generate) or ``upload`` (hidden)."""
    slots: list[tuple[str, str]] = []
    for item in spec.inputs:
        facts = comfy.input(item.name) if comfy else names.ComfyInput()
        is_combo = item.choices is not None
        # graphflow's own nodes (no ComfyUI class): ANY inputs take literals too
        widget_types = WIDGET_TYPES if comfy else WIDGET_TYPES | {ANY_TYPE}
        if facts.force_input or not (item.type in widget_types or is_combo):
            continue
        slots.append((item.name, "widget"))
        seedlike = item.type == "INT" and item.name in SEED_NAMES
        if seedlike or (facts.control_after_generate and (item.type == "INT" or is_combo)):
            slots.append((item.name, "control"))
        if facts.image_upload:
            slots.append((item.name, "upload"))
    return slots


def default_value(spec: NodeSpec, name: str) -> Any:
    """A widget's value when the file has none: the default, else the first choice, else
    0 / 0.0 / "" / false by type."""
    item = spec.inputs_by_name[name]
    if item.default is not REQUIRED:
        return item.default
    choices = item.allowed_choices()
    if choices:
        return choices[0]
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(item.type)


def widget_values(node: FlatNode, spec: NodeSpec, comfy) -> dict[str, Any]:
    """Input name → value read from ``widgets_values`` (named values first when present)."""
    named = node.named_values if isinstance(node.named_values, dict) else None
    values = node.widgets_values
    if named is None and isinstance(values, dict):
        named = values
    positional = values if isinstance(values, list) else []
    result: dict[str, Any] = {}
    index = 0
    for name, kind in widget_slots(spec, comfy):
        if kind == "control":
            value = positional[index] if index < len(positional) else None
            if isinstance(value, bool) or (isinstance(value, str) and value in CONTROL_VALUES):
                index += 1  # a legacy file without the slot keeps its next value
            continue
        if kind == "upload":
            index += 1
            continue
        if named is not None and name in named:
            value = named[name]
        elif named is None and index < len(positional):
            value = positional[index]
        else:
            value = default_value(spec, name)
        index += 1
        if value is not None or not spec.inputs_by_name[name].required:
            result[name] = value  # a null for a required input stays missing
    return result


def _sent(value: Any, dynamic: bool, rng: random.Random) -> Any:
    if dynamic and isinstance(value, str):
        return expand_dynamic_prompt(value, rng)
    if isinstance(value, list):
        return {"__value__": value}
    return value


# -- the conversion -------------------------------------------------------------------------


def _prompt_node(node, spec, comfy, nodes, aliases, rng) -> dict:
    def dynamic(name: str) -> bool:
        return bool(comfy and comfy.input(name).dynamic_prompts)

    inputs = {
        name: _sent(v, dynamic(name), rng) for name, v in widget_values(node, spec, comfy).items()
    }
    for item in node.inputs:
        name = item.widget or item.name
        if item.source is None:
            continue
        resolved = resolve(nodes, aliases, item.source, item.type)
        if resolved is None:
            inputs.pop(name, None)  # a link to nothing removes the input (mute, bypass)
        elif resolved[0] == "value":
            inputs[name] = _sent(resolved[1], dynamic(name), rng)
        else:
            inputs[name] = [resolved[1], resolved[2]]
    title = node.title or (comfy.display_name if comfy else None) or spec.display_name
    return {"inputs": inputs, "class_type": node.type, "_meta": {"title": title}}


def ui_to_api(workflow: Any, registry: Registry, rng: random.Random | None = None) -> dict:
    """A UI workflow → the API prompt ComfyUI's frontend would queue for it.

    A node of a class type graphflow lacks is emitted with its class type and linked
    inputs only, so that :func:`api_to_graphflow` reports every missing type at once.
    """
    if not is_ui_workflow(workflow):
        raise WorkflowFormatError("not a ComfyUI UI workflow (no 'nodes' list and 'links')")
    rng = rng or random.Random()
    problems: list[GraphError] = []
    flat = Flattener(workflow, problems)
    flat.run(workflow)
    if problems:
        raise ValidationFailed(problems)
    prompt: dict[str, dict] = {}
    for node in sorted(flat.nodes.values(), key=lambda n: n.order):
        if node.type in VIRTUAL_TYPES or node.mode in (MUTED, BYPASSED):
            continue
        if node.type.startswith(LEGACY_GROUP_PREFIXES):
            problems.append(
                GraphError(
                    ErrorCode.UNKNOWN_NODE_TYPE,
                    f"{node.type!r} is a legacy group node (extra.groupNodes), which graphflow "
                    "does not expand: convert it to a subgraph or ungroup it in ComfyUI",
                    node.id,
                )
            )
            continue
        spec = spec_for(registry, node.type)
        if spec is None:
            links = {}
            for item in node.inputs:
                resolved = resolve(flat.nodes, flat.aliases, item.source, item.type)
                if resolved is not None and resolved[0] == "node":
                    links[item.widget or item.name] = [resolved[1], resolved[2]]
            prompt[node.id] = {"inputs": links, "class_type": node.type}
            continue
        comfy = names.CLASSES.get(node.type)
        prompt[node.id] = _prompt_node(node, spec, comfy, flat.nodes, flat.aliases, rng)
    if problems:
        raise ValidationFailed(problems)
    return prompt


def _positions(workflow: dict) -> dict[str, list]:
    positions = {}
    for raw in workflow.get("nodes") or ():
        pos = raw.get("pos") if isinstance(raw, dict) else None
        if isinstance(pos, dict):  # some old files: {"0": x, "1": y}
            pos = [pos.get("0"), pos.get("1")]
        if (
            isinstance(pos, list)
            and len(pos) >= 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pos[:2])
        ):
            positions[str(raw["id"])] = [pos[0], pos[1]]
    return positions


def _graphflow_ids(prompt: dict, workflow: dict) -> tuple[dict, dict[str, str]]:
    """Give nodes back the graphflow ids a graphflow export renumbered (``extra.graphflow``):
    (the prompt, number → id)."""
    extra = workflow.get("extra")
    names_by_number = (
        (extra.get("graphflow") or {}).get("node_ids")
        if isinstance(extra, dict) and isinstance(extra.get("graphflow"), dict)
        else None
    )
    if not isinstance(names_by_number, dict):
        return prompt, {}
    renamed = {k: v for k, v in names_by_number.items() if k in prompt and isinstance(v, str)}
    targets = [renamed.get(k, k) for k in prompt]
    if len(set(targets)) != len(targets):
        return prompt, {}  # edited in ComfyUI so that names would clash: keep the numbers
    result = {}
    for node_id, node in prompt.items():
        inputs = {
            name: [renamed.get(v[0], v[0]), v[1]] if _is_prompt_link(v) else v
            for name, v in node["inputs"].items()
        }
        result[renamed.get(node_id, node_id)] = {**node, "inputs": inputs}
    return result, renamed


def _is_prompt_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def ui_to_graphflow(
    workflow: Any,
    registry: Registry,
    *,
    png_texts: Mapping[str, str] | None = None,
    rng: random.Random | None = None,
) -> dict:
    """A UI workflow → a graphflow/1 document; the original stays in ``editor.comfy``."""
    prompt, renamed = _graphflow_ids(ui_to_api(workflow, registry, rng), workflow)
    editor: dict[str, Any] = {
        "comfy": {"prompt": prompt, "workflow": workflow, "extra_pnginfo": {"workflow": workflow}}
    }
    positions = {renamed.get(k, k): v for k, v in _positions(workflow).items()}
    positions = {k: v for k, v in positions.items() if k in prompt}
    if positions:
        editor["positions"] = positions
    return api_to_graphflow(prompt, registry, png_texts=png_texts, editor=editor)
