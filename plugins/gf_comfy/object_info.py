"""ComfyUI's ``/object_info`` generated from graphflow's registry (COMFY_COMPAT §2.8).

Every ComfyUI class type declared in :data:`gf_comfy.names.CLASSES` whose node is in the
registry is described in ComfyUI's V1 grammar, from the same spec that validates and runs it:
``input`` (``required`` / ``optional`` / ``hidden``, keys in the function's parameter order =
ComfyUI's INPUT_TYPES order), ``input_order``, ``output``, ``output_is_list``,
``output_name``, ``name``, ``display_name``, ``description``, ``python_module``,
``category``, ``output_node`` (then ``deprecated`` / ``experimental`` when set). Each input
is ``[TYPE]`` or ``[TYPE, {options}]``, a combo ``[[choices...], {options}]`` with the
choices listed now (model folders, the input folder). Clients that map positional
arguments or ``widgets_values`` from the key order get ComfyUI's order.

graphflow's own nodes are described too, under their graphflow ids (``diffusion.sampler``)
with graphflow's type names and output names, so a ComfyUI client can drive them.

An input is ``optional`` when its default is None (a link that may be left out, like
ControlNetApplyAdvanced's ``vae``); every other input is ``required``, as in ComfyUI, where
widgets with defaults are required inputs too.
"""

from __future__ import annotations

import logging
from typing import Any

from graphflow.node import InputSpec, NodeSpec
from graphflow.registry import Registry
from graphflow.types import ANY_TYPE

from .names import BY_NODE_ID, CLASSES, ComfyClass, ComfyInput

log = logging.getLogger("graphflow.comfy")

MASK_CLASSES = (
    "SolidMask", "InvertMask", "MaskToImage", "ImageToMask", "ImageColorToMask", "ThresholdMask",
    "GrowMask", "FeatherMask", "CropMask", "MaskComposite", "ImageCompositeMasked",
)  # fmt: skip
# Where ComfyUI defines the class types that are not in its nodes.py (``python_module``).
PYTHON_MODULES = {
    "CLIPTextEncodeSDXL": "comfy_extras.nodes_clip_sdxl",
    "CLIPTextEncodeSDXLRefiner": "comfy_extras.nodes_clip_sdxl",
    "UpscaleModelLoader": "comfy_extras.nodes_upscale_model",
    "ImageUpscaleWithModel": "comfy_extras.nodes_upscale_model",
    "ImageScaleToTotalPixels": "comfy_extras.nodes_post_processing",
    "Canny": "comfy_extras.nodes_canny",
    "InstructPixToPixConditioning": "comfy_extras.nodes_ip2p",
    **dict.fromkeys(MASK_CLASSES, "comfy_extras.nodes_mask"),
}
NUMBER_TYPES = {"INT": int, "FLOAT": float}
_PLAIN = ComfyInput()


def _type_name(name: str) -> str:
    """ComfyUI's spelling of a graphflow type name (ANY is ComfyUI's ``*``)."""
    return "*" if name == ANY_TYPE else name


def _number(value: Any, type_name: str) -> Any:
    convert = NUMBER_TYPES.get(type_name)
    if convert is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if convert is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _choices(spec: NodeSpec, item: InputSpec) -> list[Any]:
    """The combo's choices now; a listing that fails is logged and listed empty (one node's
    broken folder must not take the whole /object_info down)."""
    try:
        return list(item.allowed_choices() or [])
    except Exception as error:  # a plugin's choice function may raise anything
        log.warning("%s.%s: listing its choices failed: %s", spec.id, item.name, error)
        return []


def input_options(item: InputSpec, facts: ComfyInput = _PLAIN) -> dict[str, Any]:
    """The options dict of one input (``default``, ``min``, ``max``, ``step``, ``round``,
    ``multiline``, ``dynamicPrompts``, ...), only the keys that apply."""
    options: dict[str, Any] = {}
    if not item.required and item.default is not None:
        options["default"] = _number(item.default, item.type)
    for key in ("min", "max"):
        if getattr(item, key) is not None:
            options[key] = _number(getattr(item, key), item.type)
    step = facts.step if facts.step is not None else item.step
    if step is not None:
        options["step"] = _number(step, item.type)
    if facts.round is not None:
        options["round"] = facts.round
    if facts.multiline or item.multiline:
        options["multiline"] = True
    if facts.dynamic_prompts:
        options["dynamicPrompts"] = True
    flags = {
        "control_after_generate": facts.control_after_generate,
        "image_upload": facts.image_upload,
        "forceInput": facts.force_input,
        "lazy": item.lazy,
    }
    options.update({key: True for key, on in flags.items() if on})
    if facts.display:
        options["display"] = facts.display
    tooltip = facts.tooltip or item.description
    if tooltip:
        options["tooltip"] = tooltip
    return options


def input_entry(spec: NodeSpec, item: InputSpec, facts: ComfyInput = _PLAIN) -> list[Any]:
    """``[TYPE]``, ``[TYPE, {options}]`` or, for a combo, ``[[choices...], {options}]``."""
    options = input_options(item, facts)
    if item.choices is not None:
        return [_choices(spec, item), options]
    type_name = facts.comfy_type or _type_name(item.type)
    return [type_name, options] if options else [type_name]


def _inputs(spec: NodeSpec, entry: ComfyClass | None) -> tuple[dict, dict]:
    """(``input``, ``input_order``) in ComfyUI's grammar."""
    sections: dict[str, dict[str, Any]] = {"required": {}, "optional": {}}
    for item in spec.inputs:
        facts = entry.input(item.name) if entry is not None else _PLAIN
        section = "optional" if not item.required and item.default is None else "required"
        sections[section][item.name] = input_entry(spec, item, facts)
    if entry is not None and entry.hidden:
        sections["hidden"] = {name.lower(): name for name in entry.hidden}
    inputs = {k: v for k, v in sections.items() if v or k == "required"}
    return inputs, {key: list(value) for key, value in inputs.items()}


def _info(
    spec: NodeSpec,
    entry: ComfyClass | None,
    name: str,
    display_name: str | None,
    category: str,
    python_module: str,
    output_names: list[str],
) -> dict[str, Any]:
    inputs, order = _inputs(spec, entry)
    outputs = [_type_name(o.type) for o in spec.outputs]
    info: dict[str, Any] = {
        "input": inputs,
        "input_order": order,
        "output": outputs,
        "output_is_list": [o.is_list for o in spec.outputs],
        "output_name": output_names or outputs,
        "name": name,
        "display_name": display_name,
        "description": spec.description,
        "python_module": python_module,
        "category": category,
        "output_node": spec.output_node,
    }
    if entry is not None and entry.deprecated:
        info["deprecated"] = True
    if entry is not None and entry.experimental:
        info["experimental"] = True
    return info


def class_info(entry: ComfyClass) -> dict[str, Any]:
    """The ``/object_info`` entry of one ComfyUI class type."""
    return _info(
        entry.spec,
        entry,
        entry.class_type,
        entry.display_name,
        entry.category,
        PYTHON_MODULES.get(entry.class_type, "nodes"),
        list(entry.output_names),
    )


def node_info(spec: NodeSpec) -> dict[str, Any]:
    """The ``/object_info`` entry of one of graphflow's own nodes (under its id)."""
    module = getattr(spec.function, "__module__", None) or spec.id.rsplit(".", 1)[0]
    return _info(
        spec,
        None,
        spec.id,
        spec.display_name,
        spec.category,
        module,
        [o.name for o in spec.outputs],
    )


def _registered(registry: Registry, entry: ComfyClass) -> bool:
    return registry.get(entry.spec.id) is entry.spec


def object_info(registry: Registry) -> dict[str, dict[str, Any]]:
    """``GET /object_info``: every ComfyUI class type in ``registry`` (in declaration order),
    then graphflow's own nodes under their ids."""
    info = {
        class_type: class_info(entry)
        for class_type, entry in CLASSES.items()
        if _registered(registry, entry)
    }
    for spec in registry:
        if spec.id not in BY_NODE_ID and spec.id not in info:
            info[spec.id] = node_info(spec)
    return info


def object_info_for(registry: Registry, class_type: str) -> dict[str, dict[str, Any]]:
    """``GET /object_info/{class_type}``: ``{class_type: info}``, or ``{}`` when ``registry``
    has no such ComfyUI class type or graphflow node (as ComfyUI answers)."""
    entry = CLASSES.get(class_type)
    if entry is not None and _registered(registry, entry):
        return {class_type: class_info(entry)}
    spec = registry.get(class_type)
    if spec is not None and class_type not in BY_NODE_ID:
        return {class_type: node_info(spec)}
    return {}
