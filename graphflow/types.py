"""Port types: their names, which literals they take, and the one compatibility rule set.

A port type is a name (``IMAGE``, ``INT``, ...) registered in a :class:`TypeRegistry`.
Plugins add their own through the ``graphflow_port_types`` hook. Node signatures refer to
types through :class:`TypeRef` objects such as ``Float`` or ``Float(0.0, 1.0)``, which carry
the widget constraints of one input.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any as _AnyValue

from .errors import DuplicateTypeError

log = logging.getLogger("graphflow.types")

ANY_TYPE = "ANY"


@dataclass(frozen=True)
class PortType:
    """A named kind of value that flows along links.

    ``literal`` lists the Python types a value typed in by the user may have (``None``: the
    port only takes links). ``accepts`` names other types whose outputs may feed this type
    (``FLOAT`` accepts ``INT``). ``model`` marks values that are loaded models (weights held
    in memory): a node that makes one from non-model inputs is a loader, and the Ray backend
    sends jobs that load the same models to the worker that already holds them.
    """

    name: str
    description: str = ""
    color: str = "#9e9e9e"
    literal: tuple[type, ...] | None = None
    accepts: frozenset[str] = frozenset()
    model: bool = False

    def to_dict(self) -> dict:
        """JSON-ready form for the editor and ``/api/nodes``."""
        return {
            "name": self.name,
            "description": self.description,
            "color": self.color,
            "literal": self.literal is not None,
            "accepts": sorted(self.accepts),
        }


BUILTIN_TYPES: tuple[PortType, ...] = (
    PortType("INT", "Whole number", "#6fa8dc", (int,)),
    PortType("FLOAT", "Real number", "#76a5af", (int, float), frozenset({"INT"})),
    PortType("STRING", "Text", "#93c47d", (str,)),
    PortType("BOOLEAN", "True or false", "#e06666", (bool,)),
    PortType("IMAGE", "Batch of images, float (B, H, W, C) in 0..1", "#64b5f6"),
    PortType("MASK", "Batch of masks, float (B, H, W) in 0..1", "#81c784"),
    PortType(ANY_TYPE, "Any value", "#cccccc", (object,)),
)
"""The engine's own types: generic values only. Diffusion types (LATENT, MODEL, VAE...)
belong to the diffusion pack (gf_diffusion.types), UPSCALE_MODEL to the image pack."""


def _is_literal_of(value: object, kinds: tuple[type, ...]) -> bool:
    # bool is an int in Python, but a checkbox value is not a number here.
    if isinstance(value, bool) and bool not in kinds and object not in kinds:
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return isinstance(value, kinds)


class TypeRegistry:
    """All known port types, and the rules for linking and literals."""

    def __init__(self, types: Iterable[PortType] = BUILTIN_TYPES):
        self._types: dict[str, PortType] = {}
        self._owners: dict[str, str] = {}
        for port_type in types:
            self.register(port_type, owner="graphflow")

    def register(self, port_type: PortType, owner: str = "?") -> None:
        """Add a type; re-registering an identical definition is allowed, a different one is not."""
        known = self._types.get(port_type.name)
        if known is not None and known != port_type:
            raise DuplicateTypeError(
                f"port type {port_type.name!r} from plugin {owner!r} conflicts with the one "
                f"registered by {self._owners[port_type.name]!r}"
            )
        self._types[port_type.name] = port_type
        self._owners.setdefault(port_type.name, owner)

    def __contains__(self, name: str) -> bool:
        return name in self._types

    def __getitem__(self, name: str) -> PortType:
        return self._types[name]

    def __iter__(self):
        return iter(self._types.values())

    def can_connect(self, output_type: str, input_type: str) -> bool:
        """True when an output of ``output_type`` may feed an input of ``input_type``."""
        if output_type == input_type or ANY_TYPE in (output_type, input_type):
            return True
        target = self._types.get(input_type)
        return target is not None and output_type in target.accepts

    def accepts_literal(self, type_name: str, value: object) -> bool:
        """True when ``value`` may be typed in directly for a port of this type."""
        port_type = self._types.get(type_name)
        if port_type is None or port_type.literal is None:
            return False
        return _is_literal_of(value, port_type.literal)

    def model_types(self) -> frozenset[str]:
        """Names of the types whose values are loaded models (``PortType.model``)."""
        return frozenset(name for name, port_type in self._types.items() if port_type.model)

    def takes_literals(self, type_name: str) -> bool:
        """True for types that have a widget (numbers, text, booleans, ANY)."""
        port_type = self._types.get(type_name)
        return port_type is not None and port_type.literal is not None


ChoiceSource = Sequence[object] | Callable[[], Sequence[object]]
ChoiceLabels = Mapping[object, str] | Callable[[object], str | None]
"""Labels shown beside choices: a mapping value → label, or a function of one value that
returns its label (None or "" for none)."""


@dataclass(frozen=True)
class TypeRef:
    """A port type as written in a node signature, with the constraints of one input.

    Use the ready-made references (``Int``, ``Float``, ``Image``...) bare or called to refine:
    ``Float(0.0, 1.0, step=0.05)``, ``String(multiline=True)``, ``Int(min=0)``.
    """

    type_name: str
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: ChoiceSource | None = field(default=None, compare=False)
    multiline: bool = False
    lazy: bool = False
    description: str = ""
    choice_labels: ChoiceLabels | None = field(default=None, compare=False)

    def __call__(
        self,
        min: float | None = None,
        max: float | None = None,
        step: float | None = None,
        *,
        choices: ChoiceSource | None = None,
        multiline: bool | None = None,
        description: str | None = None,
    ) -> TypeRef:
        """Return a copy of this reference with the given constraints."""
        changes: dict[str, _AnyValue] = {}
        for name, value in (
            ("min", min),
            ("max", max),
            ("step", step),
            ("choices", choices),
            ("multiline", multiline),
            ("description", description),
        ):
            if value is not None:
                changes[name] = value
        return replace(self, **changes)

    def resolved_choices(self) -> list[object] | None:
        """The allowed values now (choice lists may be computed, e.g. files on disk)."""
        if self.choices is None:
            return None
        return list(self.choices() if callable(self.choices) else self.choices)


def Lazy(ref: TypeRef) -> TypeRef:
    """Mark an input lazy: its upstream runs only if the node asks for it (see ``needs``)."""
    return replace(ref, lazy=True)


def Choice(
    values: ChoiceSource, type_name: str = "STRING", *, labels: ChoiceLabels | None = None
) -> TypeRef:
    """A dropdown input; ``values`` is a list or a function returning the list.

    ``labels`` adds a short text the editor shows beside each value (the value itself is
    what the workflow stores): a mapping value → label, or a function of one value
    returning its label or None. A function is called for every value each time the node
    catalog is built, so it must be cheap (cache what it reads).
    """
    return TypeRef(type_name, choices=values, choice_labels=labels)


def resolve_choice_labels(labels: ChoiceLabels | None, values: Iterable[object]) -> dict[str, str]:
    """``{str(value): label}`` for the values that have a label (JSON object keys are text).

    A label function that fails for one value gives that value no label: labels are help
    for the reader, never a reason for the node catalog to fail.
    """
    if labels is None:
        return {}
    found: dict[str, str] = {}
    for value in values:
        try:
            label = labels.get(value) if isinstance(labels, Mapping) else labels(value)
        except Exception:  # a plugin's label function must not break /api/nodes
            log.debug("no label for choice %r", value, exc_info=True)
            continue
        if label:
            found[str(value)] = str(label)
    return found


def port_type(
    name: str, description: str = "", color: str = "#9e9e9e", *, model: bool = False
) -> tuple[PortType, TypeRef]:
    """Declare a plugin-defined, link-only port type; returns (type to register, reference).

    ``model=True`` for values that are loaded models (see ``PortType.model``).
    """
    return PortType(name, description, color, model=model), TypeRef(name)


Int = TypeRef("INT")
Float = TypeRef("FLOAT")
String = TypeRef("STRING")
Boolean = TypeRef("BOOLEAN")
Any = TypeRef(ANY_TYPE)
Image = TypeRef("IMAGE")
Mask = TypeRef("MASK")

# Moved to the packs that own them; the old names keep working for one release.
MOVED_REFS = {
    "Latent": ("LATENT", "gf_diffusion.types"),
    "Conditioning": ("CONDITIONING", "gf_diffusion.types"),
    "Tokens": ("TOKENS", "gf_diffusion.types"),
    "Model": ("MODEL", "gf_diffusion.types"),
    "Vae": ("VAE", "gf_diffusion.types"),
    "TextEncoder": ("TEXT_ENCODER", "gf_diffusion.types"),
    "Tokenizer": ("TOKENIZER", "gf_diffusion.types"),
    "Scheduler": ("SCHEDULER", "gf_diffusion.types"),
    "UpscaleModel": ("UPSCALE_MODEL", "gf_image.types"),
}


def moved_ref(module: str, name: str) -> TypeRef:
    """The reference for a name that moved to a node pack, with a DeprecationWarning."""
    type_name, home = MOVED_REFS[name]
    warnings.warn(
        f"{module}.{name} is deprecated and will be removed in graphflow 0.3: import {name} "
        f"from {home} (the {type_name} port type is registered by that pack)",
        DeprecationWarning,
        stacklevel=3,
    )
    return TypeRef(type_name)


def __getattr__(name: str) -> TypeRef:
    if name in MOVED_REFS:
        return moved_ref(__name__, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
