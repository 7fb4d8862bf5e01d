"""graphflow's validation findings in ComfyUI's shapes: ``{type, message, details,
extra_info}`` per problem (COMFY_COMPAT §2.3 and §7's mapping table)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphflow.errors import ErrorCode, GraphError
from graphflow.node import InputSpec, NodeSpec
from graphflow.registry import Registry

MAX_LISTED_CHOICES = 20
"""Longer choice lists are shown as ``(list of length N)``, as ComfyUI does."""


def err(kind: str, message: str, details: str, **extra: Any) -> dict:
    """One ComfyUI error record."""
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


def input_config(spec: NodeSpec, name: str) -> list | None:
    """``[TYPE, {options}]`` of an input as /object_info shows it (None past 20 choices)."""
    item = spec.inputs_by_name.get(name)
    if item is None:
        return None
    choices = item.allowed_choices()
    if choices is not None:
        return None if len(choices) > MAX_LISTED_CHOICES else [choices, {}]
    options = {k: getattr(item, k) for k in ("min", "max", "step") if getattr(item, k) is not None}
    if not item.required:
        options["default"] = item.default
    return [item.type, options]


@dataclass
class _Finding:
    """A graphflow error with what its rendering needs."""

    error: GraphError
    name: str
    item: InputSpec | None
    config: list | None
    value: Any
    cycle: list[str]


def _missing(f: _Finding) -> dict:
    return err("required_input_missing", "Required input is missing", f.name, input_name=f.name)


def _mismatch(f: _Finding) -> dict:
    link = f.value.get("link") if isinstance(f.value, dict) else None
    return err("return_type_mismatch", "Return type mismatch between linked nodes",
               f"{f.name}, {f.error.message}", input_name=f.name, input_config=f.config,
               linked_node=link)  # fmt: skip


def _range(f: _Finding) -> dict:
    item = f.item
    low = item is not None and item.min is not None and _below(f.value, item.min)
    kind, word, bound = (
        ("value_smaller_than_min", "smaller than min", item.min)
        if low
        else ("value_bigger_than_max", "bigger than max", item.max if item else None)
    )
    return err(kind, f"Value {f.value} {word} of {bound}", f.name, input_name=f.name,
               input_config=f.config, received_value=f.value)  # fmt: skip


def _choices(f: _Finding) -> dict:
    choices = f.item.allowed_choices() if f.item is not None else None
    shown = (
        f"(list of length {len(choices)})"
        if choices is not None and len(choices) > MAX_LISTED_CHOICES
        else repr(choices)
    )
    return err("value_not_in_list", "Value not in list", f"{f.name}: {f.value!r} not in {shown}",
               input_name=f.name, input_config=f.config, received_value=f.value)  # fmt: skip


def _literal(f: _Finding) -> dict:
    kind = f.item.type if f.item is not None else ""
    return err("invalid_input_type", f"Failed to convert an input value to a {kind} value",
               f"{f.name}, {f.value}, {f.error.message}", input_name=f.name,
               input_config=f.config, received_value=f.value,
               exception_message=f.error.message)  # fmt: skip


def _custom(f: _Finding) -> dict:
    details = f"{f.name} - {f.error.message}" if f.name else f.error.message
    return err("custom_validation_failed", "Custom validation failed for node", details,
               input_name=f.name)  # fmt: skip


def _cycle(f: _Finding) -> dict:
    details = " → ".join(f.cycle) if f.cycle else f.error.message
    return err("dependency_cycle", "Dependency cycle: links form a loop", details, nodes=f.cycle)


_RENDERERS: dict[ErrorCode, Callable[[_Finding], dict]] = {
    ErrorCode.MISSING_INPUT: _missing,
    ErrorCode.TYPE_MISMATCH: _mismatch,
    ErrorCode.OUT_OF_RANGE: _range,
    ErrorCode.NOT_IN_CHOICES: _choices,
    ErrorCode.INVALID_LITERAL: _literal,
    ErrorCode.INVALID_INPUT: _custom,
    ErrorCode.CYCLE: _cycle,
}


def render_graph_error(
    error: GraphError, document: dict, registry: Registry, cycles: dict[str, list[str]]
) -> dict:
    """One graphflow finding as a ComfyUI ``err`` (anything unmapped: an exception during
    validation, with graphflow's message)."""
    name = error.input or ""
    node = document["nodes"].get(error.node or "")
    spec = registry.get(node["type"]) if node is not None else None
    item = spec.inputs_by_name.get(name) if spec is not None else None
    config = input_config(spec, name) if spec is not None and name else None
    value = node.get("inputs", {}).get(name) if node is not None else None
    render = _RENDERERS.get(error.code)
    if render is None:
        return err("exception_during_validation", "Exception when validating node", error.message)
    return render(_Finding(error, name, item, config, value, cycles.get(error.node or "", [])))


def _below(value: Any, bound: float) -> bool:
    try:
        return value < bound
    except TypeError:
        return False
