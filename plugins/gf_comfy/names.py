"""ComfyUI class types declared on graphflow nodes: the one table every part of the pack reads.

A ComfyUI class type (``KSampler``) is a graphflow node whose id is the class name in
lower_snake words under ``comfy.`` (``comfy.k_sampler``), whose inputs carry ComfyUI's exact
names, order, defaults and ranges, and whose outputs are in ComfyUI's order. What graphflow's
node declaration has no room for (a widget's step and rounding, the hidden
``control_after_generate`` slot, ComfyUI's display name and output names) is recorded here,
beside the spec, by :func:`comfy_node`. The importers (API and UI format), ``/object_info``
and the protocol all look class types up in :data:`CLASSES`.

Lists follow ComfyUI's rules on every class type: ``input_is_list=True`` is ComfyUI's
``INPUT_IS_LIST`` (every input arrives as a list, the node runs once), ``output_is_list`` its
``OUTPUT_IS_LIST`` (one bool per output), and a class type mapped over lists of different
lengths repeats the last element of the shorter ones, as ComfyUI does (graphflow's own nodes
refuse unequal lengths instead; see graphflow.mapping).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphflow import node
from graphflow.node import NodeSpec, UnequalLists

_WORD_START = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


@dataclass(frozen=True)
class ComfyInput:
    """ComfyUI's facts about one input that graphflow's declaration does not hold.

    ``control_after_generate`` and ``image_upload`` add a hidden widget slot after this
    input in a UI-format file's ``widgets_values`` (never sent in API format).
    """

    step: float | None = None
    round: float | bool | None = None
    multiline: bool = False
    dynamic_prompts: bool = False
    control_after_generate: bool = False
    image_upload: bool = False
    tooltip: str | None = None
    force_input: bool = False
    display: str | None = None
    comfy_type: str | None = None  # ComfyUI's type name where it is not graphflow's


@dataclass(frozen=True)
class ComfyClass:
    """One ComfyUI class type and the graphflow node that implements it."""

    class_type: str
    display_name: str | None
    category: str
    spec: NodeSpec
    inputs: Mapping[str, ComfyInput] = field(default_factory=dict)
    output_names: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()  # ComfyUI's hidden inputs (PROMPT, EXTRA_PNGINFO, ...)
    deprecated: bool = False
    experimental: bool = False

    @property
    def input_is_list(self) -> bool:
        """ComfyUI's ``INPUT_IS_LIST``: every input of the class type collects a list."""
        return bool(self.spec.inputs) and all(i.is_list for i in self.spec.inputs)

    @property
    def output_is_list(self) -> tuple[bool, ...]:
        """ComfyUI's ``OUTPUT_IS_LIST``: one bool per output, in output order."""
        return tuple(o.is_list for o in self.spec.outputs)

    def input(self, name: str) -> ComfyInput:
        """The ComfyUI facts of input ``name`` (defaults when none were declared)."""
        return self.inputs.get(name, _PLAIN)


_PLAIN = ComfyInput()
CLASSES: dict[str, ComfyClass] = {}
BY_NODE_ID: dict[str, ComfyClass] = {}


def node_id_for(class_type: str) -> str:
    """The graphflow node id of a ComfyUI class type: ``KSamplerAdvanced`` →
    ``comfy.k_sampler_advanced``, ``CLIPTextEncodeSDXL`` → ``comfy.clip_text_encode_sdxl``."""
    words = _WORD_START.sub("_", class_type).lower()
    return "comfy." + re.sub(r"[^a-z0-9_]", "_", words)


def comfy_node(
    class_type: str,
    *,
    display_name: str | None,
    category: str,
    inputs: Mapping[str, ComfyInput] | None = None,
    output_names: tuple[str, ...] = (),
    hidden: tuple[str, ...] = (),
    deprecated: bool = False,
    experimental: bool = False,
    input_is_list: bool = False,
    output_is_list: tuple[bool, ...] = (),
    **node_options: Any,
) -> Callable[[Callable[..., Any]], NodeSpec]:
    """Declare a graphflow node implementing ComfyUI class type ``class_type``.

    ``node_options`` go to :func:`graphflow.node` (``output=True``, ``version``,
    ``idempotent``, ``outputs``); the graphflow category is ``comfy/<category>``.
    ``output_names`` are ComfyUI's ``output_name`` list (default: the output type names).
    ``input_is_list`` and ``output_is_list`` are ComfyUI's ``INPUT_IS_LIST`` and
    ``OUTPUT_IS_LIST``; lists of unequal lengths repeat their last element (ComfyUI's rule).
    """

    def declare(function: Callable[..., Any]) -> NodeSpec:
        spec = node(
            node_id_for(class_type),
            display_name=display_name or class_type,
            category=f"comfy/{category}",
            input_is_list=input_is_list,
            output_is_list=output_is_list or False,
            unequal_lists=UnequalLists.REPEAT_LAST,
            **node_options,
        )(function)
        unknown = set(inputs or {}) - {i.name for i in spec.inputs}
        if unknown:
            raise TypeError(f"{class_type}: ComfyUI facts for unknown inputs {sorted(unknown)}")
        entry = ComfyClass(
            class_type,
            display_name,
            category,
            spec,
            dict(inputs or {}),
            tuple(output_names),
            tuple(hidden),
            deprecated,
            experimental,
        )
        if class_type in CLASSES and CLASSES[class_type].spec.function is not function:
            raise TypeError(f"ComfyUI class type {class_type} is declared twice")
        CLASSES[class_type] = entry
        BY_NODE_ID[spec.id] = entry
        return spec

    return declare
